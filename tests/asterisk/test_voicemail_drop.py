"""Voicemail drop on real Asterisk: the sim customer is an answering machine (a spoken
greeting, a beep, then it records what it receives). A campaign with AMD and voicemail
drop leaves its message after the beep: the machine's recording holds the message (a
700 Hz test sound) and the CDR is answered_machine with voicemail_dropped. A campaign
with AMD but no voicemail drop still hangs up on the machine before its beep."""

from __future__ import annotations

import math
import struct
import wave

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents
from tests.audio import tone_levels

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

MESSAGE = "hitcall-test/vm-message"
MESSAGE_HZ = 700.0
MESSAGE_S = 2.0


@pytest.fixture
def message_sound(sandbox):
    """The campaign's message: 2 s of 700 Hz, in the sandbox's sounds (no language)."""
    path = sandbox.root / "usr/share/asterisk/sounds" / f"{MESSAGE}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * MESSAGE_HZ * i / rate)))
        for i in range(int(rate * MESSAGE_S))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    yield MESSAGE
    path.unlink(missing_ok=True)


def _machine_file(sandbox, number: str):
    return sandbox.recordings_dir / f"vm-{number.removeprefix('+')}.wav"


async def test_voicemail_drop_leaves_the_message_after_the_beep(
    service_settings, sandbox, hangup_agents, message_sound
):
    drop_number, plain_number = "+358420000101", "+358420000102"
    for number in (drop_number, plain_number):
        _machine_file(sandbox, number).unlink(missing_ok=True)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        drop, drop_list = await create_campaign(
            pool,
            "vm-drop",
            numbers=[drop_number],
            wrap_up_s=0,
            amd_enabled=True,
            voicemail_drop=True,
            voicemail_message=message_sound,
            **ALL_DAY,
        )
        plain, plain_list = await create_campaign(
            pool, "vm-plain", numbers=[plain_number], wrap_up_s=0, amd_enabled=True, **ALL_DAY
        )
        agent = await create_agent(pool, "1145", "agent145", [drop, plain])
        with SippAgents(sandbox, ["agent145"], port=5145):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = ANY($1::bigint[])", [drop, plain])
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT count(*) = 2 FROM contacts WHERE list_id = ANY($1::bigint[]) AND status <> 'in_progress'"
                    " AND attempts = 1",
                    [drop_list, plain_list],
                ),
                timeout=60,
            )
            await app.dialer.idle(10)
            await app.cdr.flush()

        rows = {
            r["campaign_id"]: r
            for r in await pool.fetch(
                "SELECT * FROM call_attempts WHERE campaign_id = ANY($1::bigint[])", [drop, plain]
            )
        }
        dropped, hung_up = rows[drop], rows[plain]
        for r in (dropped, hung_up):
            assert (r["outcome"], r["amd_status"], r["abandoned"], r["bridged_at"]) == (
                "answered_machine",
                "MACHINE",
                False,
                None,
            )
        assert dropped["voicemail_dropped"] is True
        assert hung_up["voicemail_dropped"] is False
        # The message waited for the greeting and the beep, then played to its end.
        assert (dropped["ended_at"] - dropped["answered_at"]).total_seconds() > MESSAGE_S + 1.0
        assert (hung_up["ended_at"] - hung_up["answered_at"]).total_seconds() < 4.0

        # What the machine recorded after its beep: the whole message.
        levels = tone_levels(_machine_file(sandbox, drop_number), MESSAGE_HZ, window_s=0.1)
        _machine_file(sandbox, drop_number).unlink()
        heard = sum(1 for level in levels if level > 1000) * 0.1
        assert MESSAGE_S - 0.3 <= heard <= MESSAGE_S + 0.2, (heard, [round(v) for v in levels])
        # The other machine was hung up during its greeting: it never got to record anything.
        assert not _machine_file(sandbox, plain_number).exists()

        events = await pool.fetch(
            "SELECT payload FROM webhook_outbox WHERE event_type = 'call.ended' AND payload->>'campaign_id' = $1",
            str(drop),
        )
        assert len(events) == 1 and events[0]["payload"]["voicemail_dropped"] is True
