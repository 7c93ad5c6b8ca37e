"""Recording pause on real Asterisk: the customer plays a steady 1000 Hz tone for the whole
call; the agent pauses the recording with its phone key `*` (SIP INFO from SIPp), resumes,
and pauses again until the call ends. The stored file holds the tone outside the paused
spans and silence inside them; the spans are stored (who, when; the open one closed at
the call's end), audited and sent as webhook events. Through the REST API: pause/resume,
the 409s (already paused, not paused, no call, call not recorded) and an agent acting
on another agent's call (403)."""

from __future__ import annotations

import asyncio
import socket
import uuid

import aiohttp
import pytest

from hitcall_pbx.api import build_registry
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.records.api import ApiRecordings
from hitcall_pbx.sandbox import SippAgents
from tests.audio import tone_levels

from .conftest import wait_until

pytestmark = pytest.mark.asterisk
SYSTEM = Actor("test", "system")
TONE_NUMBERS = iter(f"+3584300{n:05d}" for n in range(1, 100))  # sim customer: answers, plays 1000 Hz
TONE = 1000.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _token(pool, role: Role, *, agent_id: int | None = None) -> dict[str, str]:
    auth = AuthService(
        pool,
        passwords=Passwords(time_cost=1, memory_cost=1024, parallelism=1),
        role_scopes=build_registry().role_scopes(),
    )
    user = await auth.create_user(
        username=f"{role.value}-{uuid.uuid4().hex[:6]}", role=role, password=None, actor=SYSTEM
    )
    if agent_id is not None:
        await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", agent_id, user["id"])
    grant = await auth.create_token(
        user_id=user["id"], name="t", scopes=sorted(auth.scopes_for(role)), expires_at=None, actor=SYSTEM
    )
    return {"Authorization": f"Bearer {grant.token}"}


async def test_phone_key_pauses_the_recording_and_the_paused_spans_hold_no_tone(
    service_settings, sandbox, hangup_agents
):
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        number = next(TONE_NUMBERS)
        cid, _ = await create_campaign(
            pool, "rec-pause-key", numbers=[number], wrap_up_s=0, record_calls=True, **ALL_DAY
        )
        agent = await create_agent(pool, "1141", "agent141", [cid])
        # The phone: * at 3 s (pause), 5.5 s (resume), 7 s (pause, left open), BYE at 14 s.
        with SippAgents(sandbox, ["agent141"], port=5141, scenario="agent_recording_pause.xml") as phone:
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=5)
            attempt_id = app.dialer.live_calls()[0]["attempt_id"]
            await app.journal.flush()

            async def spans():
                await app.journal.flush()
                return await pool.fetch(
                    "SELECT * FROM recording_pauses WHERE attempt_id = $1 ORDER BY seq", uuid.UUID(attempt_id)
                )

            # Second pause open: the call ends while paused (the customer is hung up).
            await wait_until(lambda: _second_open(spans), timeout=12)
            await asyncio.sleep(1.5)
            await app.dialer.hangup_call(attempt_id)
            await wait_until(lambda: not app.dialer.calls, timeout=5)
            await app.dialer.idle(5)
            await app.recorder.drain()
            await app.cdr.flush()
            await wait_until(lambda: not phone.running(), timeout=15)
            assert phone.errors() == ""

        cdr = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", uuid.UUID(attempt_id))
        rec = await pool.fetchrow("SELECT * FROM recordings WHERE attempt_id = $1", cdr["id"])
        assert rec is not None and cdr["recording_id"] == rec["id"]
        rows = await spans()
        assert [r["seq"] for r in rows] == [1, 2]
        first, second = rows
        assert first["recording_id"] == rec["id"] and second["recording_id"] == rec["id"]
        assert first["paused_by"] == first["resumed_by"] == second["paused_by"] == f"agent:{agent}"
        assert not first["ended_by_call"] and 2.0 <= (first["resumed_at"] - first["paused_at"]).total_seconds() <= 3.0
        assert second["ended_by_call"] and second["resumed_by"] == "system"
        assert second["resumed_at"] == cdr["ended_at"], "the open pause closed at the call's end"

        got = await ApiRecordings(pool, app.store).get(rec["id"])  # the API's recording lists its pauses
        assert [(p.seq, p.paused_by, p.ended_by_call) for p in got.pauses] == [
            (1, f"agent:{agent}", False),
            (2, f"agent:{agent}", True),
        ]

        # The file: the tone outside the spans, silence inside them. A span sits at its offset
        # from the recording's start (the bridge: the dialer records as the customer joins the
        # agent), within the fraction of a second Asterisk takes to start and mute a recording.
        levels = tone_levels(app.store.absolute(rec["path"]), TONE, window_s=0.1)
        start = cdr["bridged_at"]
        paused = [((r["paused_at"] - start).total_seconds(), (r["resumed_at"] - start).total_seconds()) for r in rows]
        runs = _silent_runs(levels, window_s=0.1)
        assert len(runs) == 2, (runs, paused)
        for (s0, s1), (p0, p1) in zip(runs, paused, strict=True):
            assert abs(s0 - p0) < 0.5 and abs(s1 - p1) < 0.6, (runs, paused)
            assert abs((s1 - s0) - (p1 - p0)) < 0.5, (runs, paused)
        assert runs[1][1] == pytest.approx(len(levels) * 0.1), "the open pause lasts to the end of the file"
        tone = [lv for i, lv in enumerate(levels) if not any(s0 - 0.1 <= i * 0.1 < s1 + 0.1 for s0, s1 in runs)]
        assert len(tone) >= 30 and min(tone[1:]) > 500, "the tone is in the file before, between and after the pauses"
        assert runs[0][0] >= 1.5 and runs[1][0] - runs[0][1] >= 1.0

        audit = await pool.fetch(
            "SELECT actor, actor_role, action, object_id, details FROM audit_log"
            " WHERE action IN ('recording.pause', 'recording.resume') ORDER BY id"
        )
        assert [(a["action"], a["actor"], a["actor_role"]) for a in audit] == [
            ("recording.pause", f"agent:{agent}", "agent"),
            ("recording.resume", f"agent:{agent}", "agent"),
            ("recording.pause", f"agent:{agent}", "agent"),
            ("recording.resume", "system", "system"),
        ]
        assert all(a["object_id"] == str(rec["id"]) for a in audit)
        events = await pool.fetch(
            "SELECT event_type, payload FROM webhook_outbox"
            " WHERE event_type IN ('recording.paused', 'recording.resumed') ORDER BY id"
        )
        assert [e["event_type"] for e in events] == [
            "recording.paused",
            "recording.resumed",
            "recording.paused",
            "recording.resumed",
        ]
        assert events[-1]["payload"]["ended_by_call"] is True
        assert all(e["payload"]["attempt_id"] == attempt_id for e in events)


def _silent_runs(levels: list[float], window_s: float, quiet: float = 20.0) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of windows without the tone."""
    runs: list[tuple[float, float]] = []
    start = None
    for i, level in enumerate([*levels, quiet * 1000]):
        if level < quiet and start is None:
            start = i
        elif level >= quiet and start is not None:
            runs.append((round(start * window_s, 3), round(i * window_s, 3)))
            start = None
    return runs


async def _second_open(spans) -> bool:
    rows = await spans()
    return len(rows) == 2 and rows[1]["resumed_at"] is None


async def test_recording_pause_api_and_its_conflicts(service_settings, sandbox, hangup_agents):
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    async with (
        HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app,
        aiohttp.ClientSession() as http,
    ):
        pool = app.db.pool
        plain, _ = await create_campaign(pool, "rec-pause-plain", numbers=[next(TONE_NUMBERS)], wrap_up_s=0, **ALL_DAY)
        recorded, _ = await create_campaign(
            pool, "rec-pause-api", numbers=[next(TONE_NUMBERS)], wrap_up_s=0, record_calls=True, **ALL_DAY
        )
        agent = await create_agent(pool, "1143", "agent143", [plain, recorded])
        other = await create_agent(pool, "1144", "agent144", [])
        admin = await _token(pool, Role.ADMIN)
        other_agent = await _token(pool, Role.AGENT, agent_id=other)
        own_agent = await _token(pool, Role.AGENT, agent_id=agent)
        base = f"http://127.0.0.1:{app.http_port}/api/v1/agents/{agent}/recording"

        async def post(action: str, headers: dict[str, str]) -> tuple[int, dict]:
            async with http.post(f"{base}/{action}", headers=headers) as r:
                return r.status, await r.json()

        with SippAgents(sandbox, ["agent143"], port=5143):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            status, body = await post("pause", admin)
            assert (status, body["error"]) == (409, "no_current_call"), body

            # A call of a campaign that does not record.
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", plain)
            await wait_until(lambda: app.sessions.get(agent).state.value == "on_call", timeout=10)
            status, body = await post("pause", own_agent)
            assert (status, body["error"]) == (409, "call_not_recorded"), body
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", plain)
            await app.dialer.hangup_call(app.sessions.get(agent).attempt_id)
            await wait_until(lambda: app.sessions.get(agent).state.value == "ready", timeout=10)

            # A recorded call.
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", recorded)
            await wait_until(lambda: app.sessions.get(agent).state.value == "on_call", timeout=10)
            call = app.dialer.calls[app.sessions.get(agent).attempt_id]
            await wait_until(lambda: call.recording_id is not None, timeout=5)
            status, body = await post("resume", own_agent)
            assert status == 409 and body["error"] == "recording_not_paused", body
            assert body["message"] == "the recording is not paused" and body["details"]["paused"] is False
            status, body = await post("pause", other_agent)
            assert (status, body["error"]) == (403, "not_own_agent"), body
            status, body = await post("pause", own_agent)
            assert status == 200 and body["paused"] is True, body
            assert body["recording_id"] == str(call.recording_id) and body["attempt_id"] == call.channel_id
            assert [s["seq"] for s in body["spans"]] == [1] and body["spans"][0]["resumed_at"] is None
            status, body = await post("pause", admin)
            assert (status, body["error"]) == (409, "recording_already_paused"), body
            status, body = await post("resume", admin)
            assert status == 200 and body["paused"] is False, body
            span = body["spans"][0]
            assert span["paused_by"] != span["resumed_by"] and span["resumed_by"].startswith("token:")
            await app.dialer.hangup_call(call.channel_id)
            await wait_until(lambda: not app.dialer.calls, timeout=5)
            await app.dialer.idle(5)

        rows = await pool.fetch("SELECT * FROM recording_pauses WHERE recording_id = $1", call.recording_id)
        assert len(rows) == 1 and rows[0]["resumed_at"] is not None and not rows[0]["ended_by_call"]
        roles = await pool.fetch(
            "SELECT action, actor_role FROM audit_log"
            " WHERE action IN ('recording.pause', 'recording.resume') ORDER BY id"
        )
        assert [(r["action"], r["actor_role"]) for r in roles] == [
            ("recording.pause", "agent"),
            ("recording.resume", "admin"),
        ], "refused requests changed nothing"
