"""Two sandboxed Asterisk servers side by side (`sandbox` and `sandbox2`) and the PJSIP
trunk `peer` between them: each has its own ARI, channels, registered phones and
cdr-csv; a channel on server 1 dialled through the trunk (Local/<endpoint>@hitcall-peer)
rings a SIPp phone registered on server 2, is answered at once, and carries audio both
ways once bridged on server 1. The trunk call's set-up time (originate on server 1 →
answered by the phone on server 2 and back as the channel's answer on server 1) is
measured over several calls. Local/hitcall-<token>@hitcall-peer reaches HitCall's Stasis
application on server 2 instead; the trunk reaches nothing else there. HitCall itself,
driving server 2, dials there for an agent logged in there.

Audio: the customer on server 1 (sim-customer +35847…) plays 1000 Hz and records what
it hears; the phone on server 2 sends 1400 Hz from the UDP port its SDP names, where
this test reads what the phone hears."""

from __future__ import annotations

import asyncio
import base64
import csv
import socket
import statistics
import struct
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents, SippPhone
from hitcall_pbx.sandbox.asterisk import AGI_PORT
from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER
from tests.asterisk_cdr import AsteriskCdrs, differences
from tests.audio import goertzel, read_wav, ulaw_decode, ulaw_tone
from tests.live import free_port, wait_until

pytestmark = pytest.mark.asterisk
CUSTOMER_TONE = 1000.0
PHONE_TONE = 1400.0
_ULAW = [ulaw_decode(b) for b in range(256)]


def _cid(tag: str) -> str:
    return f"t-{tag}-{uuid.uuid4().hex[:10]}"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _endpoint_state(ari_url: str, endpoint: str) -> str:
    """ARI's state of PJSIP/<endpoint> on one server: online while a phone is registered."""
    token = base64.b64encode(f"{SANDBOX_ARI_USER}:{SANDBOX_ARI_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    async with aiohttp.ClientSession(headers=headers) as http, http.get(f"{ari_url}/endpoints/PJSIP/{endpoint}") as r:
        assert r.status == 200, await r.text()
        return (await r.json())["state"]


class PhoneMedia(asyncio.DatagramProtocol):
    """The phone's audio: the RTP (PCMU) it receives, with arrival times, and its voice, a
    steady tone sent back to where Asterisk sends from (symmetric RTP, as a phone does)."""

    def __init__(self, freq: float) -> None:
        self.voice = ulaw_tone(freq, 1.0)
        self.packets: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.mouth: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[1] & 0x7F == 0:
            self.packets.append((time.monotonic(), data[12:]))
            if self.mouth is None:
                self.mouth = asyncio.ensure_future(self._talk(addr))

    async def _talk(self, to: tuple[str, int]) -> None:
        seq = 0
        while True:
            at = (seq * 160) % len(self.voice)
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x5EED)
            assert self.transport is not None
            self.transport.sendto(header + self.voice[at : at + 160], to)
            seq += 1
            await asyncio.sleep(0.02)

    def heard_since(self, start: float) -> list[int]:
        return [_ULAW[b] for at, payload in self.packets if at >= start for b in payload]

    def close(self) -> None:
        if self.mouth is not None:
            self.mouth.cancel()
        if self.transport is not None:
            self.transport.close()


def _median_level(samples: list[int], freq: float, rate: int = 8000) -> float:
    step = rate // 10
    values = sorted(goertzel(samples[i : i + step], rate, freq) for i in range(0, len(samples) - step + 1, step))
    return values[len(values) // 2] if values else 0.0


def _windows_with(samples: list[int], freq: float, over: float, rate: int = 8000) -> int:
    step = rate // 10
    return sum(goertzel(samples[i : i + step], rate, freq) > over for i in range(0, len(samples) - step + 1, step))


async def _hang_up_bridge(ari, bridge_id: str) -> None:
    """Hang up whatever is in the bridge (a Local channel may have optimised itself away)
    and destroy it."""
    try:
        bridge = await ari.rest.get_bridge(bridge_id)
    except Exception:
        return
    for channel in bridge.channels:
        try:
            await ari.rest.hangup(channel)
        except Exception:
            pass
    try:
        await ari.rest.destroy_bridge(bridge_id)
    except Exception:
        pass


async def test_two_servers_each_with_its_own_ari_and_channels(ari, ari2, sandbox, sandbox2):
    assert sandbox.ari_url == "http://127.0.0.1:8088/ari" and sandbox2.ari_url == "http://127.0.0.1:8089/ari"
    assert (sandbox.sip_port, sandbox2.sip_port) == (5060, 5062)
    info1, info2 = await ari.rest.get_info("config"), await ari2.rest.get_info("config")
    assert info1.config is not None and info2.config is not None
    assert info2.config.name == "ast2" and info1.config.name != "ast2"
    assert sandbox.pid() != sandbox2.pid()

    one, two = _cid("one"), _cid("two")
    await ari.rest.originate("Local/answer@sim-customer", one, app=ari.app, timeout=20)
    await ari2.rest.originate("Local/answer@sim-customer", two, app=ari2.app, timeout=20)
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == one)
    start2 = await ari2.events_log.wait_for("StasisStart", lambda e: e.channel.id == two)
    assert start2.channel.state == "Up"
    on1 = {c.id for c in await ari.rest.list_channels()}
    on2 = {c.id for c in await ari2.rest.list_channels()}
    assert one in on1 and one not in on2
    assert two in on2 and two not in on1
    # Server 2's channels have unique ids of its own (systemname ast2): never the same as server 1's.
    assert all(c.id.startswith("ast2-") for c in await ari2.rest.list_channels() if not c.id.startswith("t-"))
    assert not ari.events_log.of_type("StasisStart") or all(
        e.channel.id != two for e in ari.events_log.of_type("StasisStart")
    )
    await ari.rest.hangup(one)
    await ari2.rest.hangup(two)
    await ari2.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == two)


async def test_sipp_agent_registers_and_logs_in_on_the_second_server(ari, ari2, sandbox, sandbox2, hangup_agents2):
    with SippPhone(sandbox2, "agent82", port=5482) as phone:
        assert await _endpoint_state(sandbox2.ari_url, "agent82") == "online"
        assert await _endpoint_state(sandbox.ari_url, "agent82") != "online"  # registered on server 2 only
        assert "agent82/sip:agent82@127.0.0.1:5482" in sandbox2.cli("pjsip show contacts")
        assert phone.running()

    async def unregistered() -> bool:
        return await _endpoint_state(sandbox2.ari_url, "agent82") != "online"

    await wait_until(unregistered, timeout=5)  # the phone unregisters when stopped

    # An agent's login (*70) on server 2 enters server 2's Stasis application, not server 1's.
    with SippAgents(sandbox2, ["agent81"], port=5481) as agents:
        start = await ari2.events_log.wait_for(
            "StasisStart", lambda e: e.args[:2] == ["agent-login", "agent81"], timeout=15
        )
        assert start.channel.name.startswith("PJSIP/agent81-")
        assert start.channel.id not in {c.id for c in await ari.rest.list_channels()}
        await ari2.rest.hangup(start.channel.id)  # logged out: SIPp ends its call
        await wait_until(lambda: not agents.running(), timeout=10)
        assert agents.errors() == ""


async def test_originate_on_the_second_server_is_in_its_own_cdr_csv_only(ari2, sandbox, sandbox2, tmp_path):
    cdrs1 = AsteriskCdrs(sandbox, tmp_path / "1")
    cdrs2 = AsteriskCdrs(sandbox2, tmp_path / "2")
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    assert cdrs2.master == sandbox.root / "var/log/asterisk2/cdr-csv/Master.csv"
    attempt = str(uuid.uuid4())
    number = f"+358401{uuid.uuid4().int % 10**6:06d}"  # answers at once
    cid = _cid("cdr")
    await ari2.rest.originate(
        f"Local/{number}@hitcall-outbound",
        cid,
        app=ari2.app,
        timeout=20,
        variables={"HITCALL_ATTEMPT": attempt},
    )
    start = await ari2.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    assert start.channel.state == "Up"
    await asyncio.sleep(1.2)
    await ari2.rest.hangup(cid)

    def tagged(path: Path) -> list[list[str]]:
        with path.open(newline="") as fh:
            return [row for row in csv.reader(fh) if f"hitcall:{attempt}" in row]

    rows = await wait_until(lambda: tagged(cdrs2.written()), timeout=10)
    assert any("ANSWERED" in row for row in rows), rows
    assert any(number in row for row in rows), rows
    with cdrs2.written().open(newline="") as fh:
        linked = [row for row in csv.reader(fh) if cid in row]  # the call's records (linked id)
    assert any(f.startswith("ast2-") for row in linked for f in row), linked  # server 2's own unique ids
    assert tagged(cdrs1.written()) == []  # nothing of it in server 1's Master.csv


async def test_trunk_call_from_server_1_reaches_a_phone_on_server_2_with_audio_both_ways(ari, sandbox, sandbox2):
    loop = asyncio.get_running_loop()
    rtp_port = _free_udp_port()
    transport, media = await loop.create_datagram_endpoint(
        lambda: PhoneMedia(PHONE_TONE), local_addr=("127.0.0.1", rtp_port)
    )
    number = f"+35847{uuid.uuid4().int % 10**7:07d}"  # plays 1000 Hz, records what it hears
    heard = sandbox.recordings_dir / f"heard-{number[1:]}.wav"
    customer, agent, bridge_id = _cid("customer"), _cid("peer"), f"t-bridge-{uuid.uuid4().hex[:8]}"
    try:
        with SippPhone(sandbox2, "agent83", port=5483, rtp_port=rtp_port) as phone:
            await ari.rest.originate(f"Local/{number}@sim-customer", customer, app=ari.app, timeout=20)
            await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == customer)

            t0 = time.monotonic()
            await ari.rest.originate("Local/agent83@hitcall-peer", agent, app=ari.app, timeout=20)
            await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == agent, timeout=10)
            answered = next(at for at, e in ari.events_log.events if e.type == "StasisStart" and e.channel.id == agent)
            setup = answered - t0
            print(f"\ntrunk call set-up (originate on server 1 -> phone on server 2 answered): {setup * 1000:.0f} ms")
            assert setup < 1.0, setup

            await ari.rest.create_bridge(bridge_id, type="mixing")
            await ari.rest.add_channel(bridge_id, [customer, agent])
            bridged = time.monotonic()
            await asyncio.sleep(4.0)
            phone_heard = media.heard_since(bridged + 0.5)
            await _hang_up_bridge(ari, bridge_id)
            await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == customer)
            assert phone.errors() == ""
    finally:
        media.close()
        transport.close()
        await _hang_up_bridge(ari, bridge_id)

    # Server 1 → server 2: the customer's tone reached the phone.
    assert len(phone_heard) > 8000 * 3, len(phone_heard)  # over 3 s of RTP at the phone
    at_phone = _median_level(phone_heard, CUSTOMER_TONE)
    assert at_phone > 500, at_phone
    # Server 2 → server 1: the phone's tone reached the customer (what it heard, recorded on server 1).
    await wait_until(lambda: heard.exists() and heard.stat().st_size > 44, timeout=5)
    samples, rate = read_wav(heard)
    windows = _windows_with(samples, rate=rate, freq=PHONE_TONE, over=300)
    assert windows >= 25, windows  # at least 2.5 s of the phone's voice in the customer's ear
    print(f"levels: customer's tone at the phone {at_phone:.0f}; phone's tone at the customer in {windows} x 100 ms")


async def test_trunk_call_set_up_time_is_well_under_two_seconds(ari, sandbox, sandbox2):
    """Originate on server 1 → StasisStart (answered) there, the far phone on server 2
    having answered in between: over ten calls."""
    times: list[float] = []
    with SippPhone(sandbox2, "agent84", port=5484):
        for _ in range(10):
            cid = _cid("setup")
            t0 = time.monotonic()
            await ari.rest.originate("Local/agent84@hitcall-peer", cid, app=ari.app, timeout=20)
            await ari.events_log.wait_for("StasisStart", lambda e, cid=cid: e.channel.id == cid, timeout=10)
            answered = next(at for at, e in ari.events_log.events if e.type == "StasisStart" and e.channel.id == cid)
            times.append(answered - t0)
            await ari.rest.hangup(cid)
            await ari.events_log.wait_for("ChannelDestroyed", lambda e, cid=cid: e.channel.id == cid)
    times = [t * 1000 for t in times]
    ms = sorted(times)
    print(f"\ntrunk call set-up over {len(ms)} calls: median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")
    assert ms[-1] < 1000, [round(t) for t in times]


async def test_second_server_fastagi_goes_to_the_port_the_test_chose(ari, ari2, sandbox2):
    """A return call on server 2 ([hitcall-inbound]) asks FastAGI at the port set with
    `set_agi_port`; server 1's dialplan keeps its own address."""
    port = free_port()
    requests: asyncio.Queue[list[str]] = asyncio.Queue()

    async def agi(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = []
        while (line := await reader.readline()) not in (b"\n", b""):
            lines.append(line.decode().strip())
        await requests.put(lines)
        writer.close()  # no answer: the dialplan goes on and hangs up

    server = await asyncio.start_server(agi, "127.0.0.1", port)
    try:
        sandbox2.set_agi_port(port)
        assert await ari2.rest.get_global_var("HITCALL_AGI") == f"agi://127.0.0.1:{port}"
        assert await ari.rest.get_global_var("HITCALL_AGI") == f"agi://127.0.0.1:{AGI_PORT}"
        await ari2.rest.originate("Local/0201234567@hitcall-inbound", _cid("agi"), app=ari2.app, timeout=20)
        lines = await asyncio.wait_for(requests.get(), 10)
        assert any(line.startswith(f"agi_request: agi://127.0.0.1:{port}/optout") for line in lines), lines
    finally:
        sandbox2.set_agi_port(AGI_PORT)
        server.close()
    assert await ari2.rest.get_global_var("HITCALL_AGI") == f"agi://127.0.0.1:{AGI_PORT}"


async def test_hitcall_dials_on_the_second_server_to_an_agent_logged_in_there(
    service_settings, sandbox, sandbox2, hangup_agents2, tmp_path
):
    """The service driving server 2 (its ARI URL): an agent logs in there, three customers
    are dialled there and put through to the agent within 2 s, recorded there and fetched
    over its ARI, and server 2's own cdr-csv reconciles with HitCall's CDRs (server 1's has
    none of them)."""
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    cdrs1, cdrs2 = AsteriskCdrs(sandbox, tmp_path / "1"), AsteriskCdrs(sandbox2, tmp_path / "2")
    settings = service_settings.model_copy(update={"ari_url": sandbox2.ari_url})
    async with HitCall(settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool,
            "second-server",
            mode="progressive",
            numbers=sim_numbers(9, 3),
            wrap_up_s=0,
            record_calls=True,
            **ALL_DAY,
        )
        agent = await create_agent(pool, "1085", "agent85", [cid])
        with SippAgents(sandbox2, ["agent85"], port=5491):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            assert app.sessions.by_agent[agent].channel_id.startswith("ast2-")  # the phone's channel on server 2
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)

            async def all_done() -> bool:
                return await pool.fetchval(
                    "SELECT count(*) = 3 FROM contacts WHERE list_id = $1 AND status IN ('done', 'failed')", list_id
                )

            await wait_until(all_done, timeout=60, interval=0.25)
            await app.dialer.idle(timeout=30)
            await app.cdr.flush()
            await app.recorder.drain()
        rows = await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)
        # Recorded in server 2's spool, fetched over its ARI, and gone from its spool.
        stored = await pool.fetch("SELECT id, path, size_bytes FROM recordings")
        assert len(stored) == 3 and all(app.store.absolute(r["path"]).stat().st_size > 44 for r in stored)
        assert not any((sandbox2.recordings_dir / f"{r['id']}.wav").exists() for r in stored)
        assert [r["outcome"] for r in rows] == ["answered_human"] * 3
        assert {r["agent_id"] for r in rows} == {agent}
        assert max(r["answer_to_bridge_ms"] for r in rows) < 2000
        results = await cdrs2.reconcile_settled(pool)
        assert differences(results) == []
        [day] = [r.result for r in results if r.result.hitcall_attempts]
        assert (day.hitcall_attempts, day.asterisk_attempts, day.matched) == (3, 3, 3)
    on_server_1 = cdrs1.written().read_text()
    assert not any(str(r["id"]) in on_server_1 for r in rows)


async def test_trunk_call_from_server_1_into_hitcalls_application_on_server_2(ari, ari2, sandbox, sandbox2):
    """Local/hitcall-<token>@hitcall-peer on server 1 arrives in server 2's Stasis application
    (arguments peer,<token>) unanswered; answered there, it is answered on server 1; hung
    up on server 1, it ends on server 2."""
    token = uuid.uuid4().hex[:12]
    cid = _cid("stasis")
    t0 = time.monotonic()
    await ari.rest.originate(f"Local/hitcall-{token}@hitcall-peer", cid, app=ari.app, timeout=20)
    arrived = await ari2.events_log.wait_for("StasisStart", lambda e: e.args == ["peer", token], timeout=10)
    assert arrived.channel.name.startswith("PJSIP/peer-") and arrived.channel.state != "Up"
    await ari2.rest.answer(arrived.channel.id)
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid, timeout=10)
    answered = next(at for at, e in ari.events_log.events if e.type == "StasisStart" and e.channel.id == cid)
    print(f"\ntrunk call into server 2's application, answered there: {(answered - t0) * 1000:.0f} ms")
    assert answered - t0 < 1.0
    await ari.rest.hangup(cid)
    far = arrived.channel.id
    gone = await ari2.events_log.wait_for("ChannelHangupRequest", lambda e: e.channel.id == far, timeout=10)
    assert gone.cause == 16
    await ari2.events_log.wait_for("StasisEnd", lambda e: e.channel.id == far, timeout=10)

    async def ended() -> bool:
        return far not in {c.id for c in await ari2.rest.list_channels()}

    await wait_until(ended, timeout=5)


async def test_the_trunk_reaches_only_agent_phones_on_the_far_server(ari, sandbox, sandbox2):
    """Server 2's [hitcall-peer-in] refuses (cause 21) its carrier trunk, the trunk back and
    names that are no endpoint; an agent endpoint that is not registered is unavailable."""
    causes = {}
    for target in ("trunk", "peer", "nobody", "agent86"):
        cid = _cid("refused")
        await ari.rest.originate(f"Local/{target}@hitcall-peer", cid, app=ari.app, timeout=20)
        gone = await ari.events_log.wait_for("ChannelDestroyed", lambda e, cid=cid: e.channel.id == cid, timeout=10)
        causes[target] = gone.cause
    assert causes["trunk"] == causes["peer"] == causes["nobody"] == 21, causes
    assert causes["agent86"] not in (16, 21), causes  # let through, but no phone registered there
    assert not any(e.channel.id.startswith("t-refused") for e in ari.events_log.of_type("StasisStart"))
