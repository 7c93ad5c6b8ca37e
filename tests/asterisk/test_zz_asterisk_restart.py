"""Asterisk restarted under a connected client: it reconnects, resyncs and goes on.

Named to run last in this folder: it restarts the shared sandbox.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from hitcall_pbx.logs import get_logger

pytestmark = pytest.mark.asterisk
log = get_logger("tests.restart")


async def test_client_survives_asterisk_restart(ari, sandbox):
    snapshots = []
    ari.on_resync(snapshots.append)
    cid = f"t-{uuid.uuid4().hex[:12]}"
    await ari.rest.originate("Local/answer@sim-customer", cid, app=ari.app, timeout=20)
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)

    await asyncio.to_thread(sandbox.stop, unmount=False)
    await asyncio.sleep(0.3)
    assert not ari.connected.is_set()
    await asyncio.to_thread(sandbox.start)
    back_at = time.monotonic()
    await asyncio.wait_for(ari.connected.wait(), 10)
    reconnect_s = time.monotonic() - back_at
    log.info(
        "ari.reconnect_measured", seconds_after_ari_ready=round(reconnect_s, 3), downtime_s=ari.stats.last_reconnect_s
    )
    print(
        f"\nreconnect after Asterisk ready: {reconnect_s * 1000:.0f} ms; "
        f"total downtime seen by client: {ari.stats.last_reconnect_s:.2f} s"
    )
    assert reconnect_s < 2.0
    assert snapshots[-1].reconnect
    # The call died with Asterisk: the resync shows it gone.
    assert cid not in {c.id for c in snapshots[-1].channels}

    # And the client goes on: a new call works on the new Asterisk.
    cid2 = f"t-{uuid.uuid4().hex[:12]}"
    await ari.rest.originate("Local/answer@sim-customer", cid2, app=ari.app, timeout=20)
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid2)
    await ari.rest.hangup(cid2)
