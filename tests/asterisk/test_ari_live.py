"""The ARI client against the real sandboxed Asterisk 22."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from hitcall_pbx.ari import AriNotFound
from hitcall_pbx.ari.client import NOT_HANDLED, AriClient
from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER
from tests.live import ARI_URL

pytestmark = pytest.mark.asterisk


def _cid() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_originate_answer_enters_stasis_with_our_channel_id(ari):
    cid = _cid()
    ch = await ari.rest.originate("Local/answer@sim-customer", cid, app=ari.app, app_args="customer,42", timeout=20)
    assert ch.id == cid
    ev = await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    assert ev.args == ["customer", "42"]
    assert ev.channel.state == "Up"
    got = await ari.rest.get_channel(cid)
    assert got.id == cid and got.state == "Up"
    await ari.rest.hangup(cid)
    destroyed = await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid)
    assert destroyed.cause == 16


async def test_busy_customer_gives_cause_17(ari):
    cid = _cid()
    await ari.rest.originate("Local/busy@sim-customer", cid, app=ari.app, timeout=20)
    ev = await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid)
    assert ev.cause == 17
    assert not ari.events_log.of_type("StasisStart") or all(
        e.channel.id != cid for e in ari.events_log.of_type("StasisStart")
    )


async def test_no_answer_times_out_with_cause_19(ari):
    cid = _cid()
    t0 = time.monotonic()
    await ari.rest.originate("Local/noanswer@sim-customer", cid, app=ari.app, timeout=2)
    ev = await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid, timeout=10)
    assert ev.cause == 19
    assert 1.5 <= time.monotonic() - t0 < 6


async def test_product_outbound_context_reaches_customer_through_trunk(ari):
    """Local/<E.164>@hitcall-outbound dials the (sandbox) trunk; busy propagates as 17."""
    ok, busy = _cid(), _cid()
    await ari.rest.originate("Local/+358401000001@hitcall-outbound", ok, app=ari.app, timeout=20)
    await ari.rest.originate("Local/+358402000001@hitcall-outbound", busy, app=ari.app, timeout=20)
    start = await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == ok)
    assert start.channel.state == "Up"
    gone = await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == busy)
    assert gone.cause == 17


async def test_slow_pickup_customer_answers_after_ringing(ari):
    """Behaviour 6 (+358406...) rings 1-6 s, then answers: the call enters Stasis answered."""
    cid = _cid()
    t0 = time.monotonic()
    await ari.rest.originate("Local/+358406000001@hitcall-outbound", cid, app=ari.app, timeout=20)
    start = await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid, timeout=15)
    assert start.channel.state == "Up"
    assert 0.8 <= time.monotonic() - t0 < 8
    await ari.rest.hangup(cid)
    await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid)


async def test_dtmf_from_the_far_end_is_received(ari):
    cid = _cid()
    await ari.rest.originate("Local/dtmf@sim-customer", cid, app=ari.app, timeout=20)
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    d1 = await ari.events_log.wait_for("ChannelDtmfReceived", lambda e: e.channel.id == cid and e.digit == "1")
    d2 = await ari.events_log.wait_for("ChannelDtmfReceived", lambda e: e.channel.id == cid and e.digit == "#")
    assert d1.digit == "1" and d2.digit == "#"


async def test_bridge_add_and_hangup_race_maps_to_not_found(ari):
    cid = _cid()
    await ari.rest.originate("Local/answer@sim-customer", cid, app=ari.app, timeout=20)
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    bridge = await ari.rest.create_bridge(bridge_id=f"t-b-{cid}", type="mixing")
    await ari.rest.add_channel(bridge.id, cid)
    entered = await ari.events_log.wait_for("ChannelEnteredBridge", lambda e: e.channel and e.channel.id == cid)
    assert entered.bridge.id == bridge.id
    await ari.rest.hangup(cid)
    await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid)
    with pytest.raises(AriNotFound):
        await ari.rest.hangup(cid)
    await ari.rest.destroy_bridge(bridge.id)
    # Asterisk answers the DELETE before the bridge leaves its container: wait for it to be gone.
    await ari.events_log.wait_for("BridgeDestroyed", lambda e: e.bridge.id == bridge.id)
    with pytest.raises(AriNotFound):
        await ari.rest.get_bridge(bridge.id)


async def test_resync_after_socket_cut_sees_live_channels(ari):
    """The events socket drops while Asterisk stays up: the client reconnects and the
    resync snapshot contains the call that is still up."""
    snapshots = []
    ari.on_resync(snapshots.append)
    cid = _cid()
    await ari.rest.originate("Local/answer@sim-customer", cid, app=ari.app, timeout=20)
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    before = ari.stats.reconnects
    await ari.drop_connection()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(ari.connected.wait(), 5)
    assert ari.stats.reconnects == before + 1
    assert snapshots and snapshots[-1].reconnect
    assert cid in {c.id for c in snapshots[-1].channels}
    # And events flow again on the new socket.
    await ari.rest.hangup(cid)
    await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid)


async def test_asterisk_does_not_send_the_event_types_no_handler_uses(ari):
    """The client sets the app's event filter in Asterisk at every connect: a call through the
    product's outbound context reaches the app without a single variable-set, dialplan, dial or
    caller-id event, while an app that asked for everything gets them for the same kind of call."""
    everything = AriClient(ARI_URL, SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD, "hitcall-all", ignore_events=frozenset())
    seen: list[str] = []
    everything.on_event(lambda e: seen.append(getattr(e, "type", "")))
    await everything.start(wait=15)
    try:
        app = await ari.rest.get_application(ari.app)
        assert {f["type"] for f in app.events_disallowed} == NOT_HANDLED
        for client in (ari, everything):
            cid = _cid()
            await client.rest.originate("Local/+358401000001@hitcall-outbound", cid, app=client.app, timeout=20)
            await asyncio.sleep(0.5)
            await client.rest.hangup(cid)
        await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id.startswith("t-"))
        deadline = time.monotonic() + 10
        while "ChannelDestroyed" not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert NOT_HANDLED & set(seen), seen  # the call does produce them ...
        assert ari.stats.ignored_events == 0  # ... and none reached the filtered app
        assert ari.events_log.of_type("StasisStart")
        # The filter is set again on a new socket (Asterisk keeps it per app; a restarted Asterisk does not).
        await ari.rest.filter_events(ari.app, disallowed=[])
        await ari.drop_connection()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(ari.connected.wait(), 5)
        app = await ari.rest.get_application(ari.app)
        assert {f["type"] for f in app.events_disallowed} == NOT_HANDLED
    finally:
        await everything.close()
