"""Supervisor monitoring on real Asterisk through the REST API: a supervisor logged in on
their own SIP phone listens to, whispers to the agent on, and barges into a live call,
and stops; the call's end ends a second session. What each party receives is checked
in the audio itself: the supervisor's phone talks a steady 1400 Hz tone (SIPp streams
it), the customer talks 1000 Hz and records what it hears (sim-customer +35847…), the
agent's phone sends its incoming RTP to a UDP port this test reads.

Expected: the customer never hears 1400 Hz while the supervisor listens or whispers, and
hears it in barge; the agent hears it in whisper and barge, not in listen. Refusals
change nothing: a campaign the supervisor does not supervise (403), an agent (403), a
supervisor whose phone is not logged in (409)."""

from __future__ import annotations

import asyncio
import math
import struct
import time
import uuid
import wave
from pathlib import Path

import aiohttp
import pytest

from hitcall_pbx.api import build_registry
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role
from hitcall_pbx.core.monitoring import MonitorMode
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.sandbox import SippAgents
from tests.audio import ulaw_decode, ulaw_encode
from tests.live import free_port

from .conftest import wait_until

pytestmark = pytest.mark.asterisk
SYSTEM = Actor("test", "system")
SUPERVISOR_TONE = 1400.0
CUSTOMER_TONE = 1000.0
EAR_PORT = 37131  # tests/sipp/agent_ear.xml names this port in its SDP
TONE_FILE = "tmp/hitcall-monitor-tone.wav"  # tests/sipp/supervisor_tone.xml streams it
MODE_S = 4.0


# ----------------------------------------------------------------- audio ---
_ULAW = [ulaw_decode(b) for b in range(256)]


def write_tone_wav(path: Path, freq: float, seconds: float = 2.0, amplitude: int = 8000) -> None:
    """A mu-law (format 7) 8 kHz mono WAV of a sine tone: what SIPp's rtp_stream sends."""
    n = int(8000 * seconds)
    data = bytes(ulaw_encode(int(amplitude * math.sin(2 * math.pi * freq * i / 8000))) for i in range(n))
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def goertzel(samples: list[int], freq: float, rate: int = 8000) -> float:
    """Amplitude of `freq` in `samples` (normalised to the window length)."""
    n = len(samples)
    if n == 0:
        return 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * round(n * freq / rate) / n)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return math.sqrt(max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0.0)) / n


def level(samples: list[int], freq: float) -> float:
    """The median tone amplitude over 100 ms windows (robust against a window at an edge)."""
    step = 800
    values = sorted(goertzel(samples[i : i + step], freq) for i in range(0, len(samples) - step + 1, step))
    return values[len(values) // 2] if values else 0.0


class Ear(asyncio.DatagramProtocol):
    """The agent's phone's media: the RTP (PCMU) packets it receives, with their arrival
    time, and, like any phone, a steady stream of its own (silence) back to Asterisk."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.mouth: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def talk(self, to: tuple[str, int]) -> None:
        async def send() -> None:
            seq = 0
            while True:
                header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x1234)
                assert self.transport is not None
                self.transport.sendto(header + b"\xff" * 160, to)
                seq += 1
                await asyncio.sleep(0.02)

        self.mouth = asyncio.ensure_future(send())

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) > 12 and data[1] & 0x7F == 0:
            self.packets.append((time.monotonic(), data[12:]))

    def between(self, start: float, end: float) -> list[int]:
        return [_ULAW[b] for at, payload in self.packets if start <= at < end for b in payload]


def wav_samples(path: Path) -> list[int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 8000
        raw = w.readframes(w.getnframes())
    return list(struct.unpack(f"<{len(raw) // 2}h", raw))


# ----------------------------------------------------------------- API ---
async def _token(auth: AuthService, role: Role) -> tuple[int, dict[str, str]]:
    user = await auth.create_user(
        username=f"{role.value}-{uuid.uuid4().hex[:6]}", role=role, password=None, actor=SYSTEM
    )
    grant = await auth.create_token(
        user_id=user["id"], name="t", scopes=sorted(auth.scopes_for(role)), expires_at=None, actor=SYSTEM
    )
    return user["id"], {"Authorization": f"Bearer {grant.token}"}


async def supervisor_phone(pool, number: str, endpoint: str, campaigns: list[int], username: str) -> tuple[int, int]:
    """A supervisor's phone: an agent row on `campaigns` linked to a new supervisor user: (phone, user)."""
    phone = await create_agent(pool, number, endpoint, campaigns)
    user = await pool.fetchval("INSERT INTO users (username, role) VALUES ($1, 'supervisor') RETURNING id", username)
    await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", phone, user)
    return phone, user


async def first_bridged_call(app: HitCall, cid: int) -> str:
    """The campaign starts dialling: the attempt id of the first customer bridged to an agent."""
    await app.db.pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
    await wait_until(lambda: any(c["bridged_at"] for c in app.dialer.live_calls()), timeout=10)
    return app.dialer.live_calls()[0]["attempt_id"]


async def monitor(app: HitCall, user: int, username: str, attempt: str, mode: MonitorMode) -> dict:
    """The supervisor `username` (user id `user`) starts monitoring the call, as the API does."""
    return await app.monitor.start_session(
        user_id=user,
        username=username,
        role="supervisor",
        attempt_id=attempt,
        mode=mode,
        actor=Actor(username, "supervisor"),
    )


async def test_listen_whisper_barge_heard_only_where_they_should_be(service_settings, sandbox, hangup_agents):
    write_tone_wav(sandbox.root / TONE_FILE, SUPERVISOR_TONE)
    number = f"+35847{uuid.uuid4().int % 10**7:07d}"
    heard = sandbox.root / "var/spool/asterisk/recording" / f"heard-{number[1:]}.wav"
    settings = service_settings.model_copy(update={"http_port": free_port()})
    loop = asyncio.get_running_loop()
    transport, ear = await loop.create_datagram_endpoint(Ear, local_addr=("127.0.0.1", EAR_PORT))
    try:
        async with HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app, aiohttp.ClientSession() as http:
            pool = app.db.pool

            async def no_snoop() -> bool:
                return not [c for c in await app.ari.rest.list_channels() if c.id.startswith("hitcall-snoop-")]

            base = f"http://127.0.0.1:{app.http_port}/api/v1"
            auth = AuthService(
                pool,
                passwords=Passwords(time_cost=1, memory_cost=1024, parallelism=1),
                role_scopes=build_registry().role_scopes(),
            )
            sup_user, sup = await _token(auth, Role.SUPERVISOR)
            agent_user, as_agent = await _token(auth, Role.AGENT)
            cid, _ = await create_campaign(
                pool, "monitored", mode="progressive", numbers=[number], record_calls=True, **ALL_DAY
            )
            agent = await create_agent(pool, "1071", "agent71", [cid])
            await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", agent, agent_user)
            # The supervisor's phone: an agent row linked to the supervisor's user, no campaigns yet.
            phone = await create_agent(pool, "1072", "agent72", [])
            await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", phone, sup_user)

            with SippAgents(sandbox, ["agent71"], port=5271, scenario="agent_ear.xml"):
                await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
                rtp = await app.ari.rest.get_variable(app.sessions.by_agent[agent].channel_id, "CHANNEL(rtp,src)")
                ear.talk(("127.0.0.1", int(rtp.rsplit(":", 1)[1])))
                attempt = await first_bridged_call(app, cid)
                monitor_url = f"{base}/calls/{attempt}/monitor"

                # Refusals: nothing starts.
                async with http.post(monitor_url, json={"mode": "listen"}, headers=sup) as r:
                    assert r.status == 403, await r.text()
                    assert (await r.json())["error"] == "campaign_not_supervised"
                await pool.execute("INSERT INTO agent_campaigns (agent_id, campaign_id) VALUES ($1, $2)", phone, cid)
                async with http.post(monitor_url, json={"mode": "listen"}, headers=sup) as r:
                    assert r.status == 409, await r.text()
                    body = await r.json()
                    assert body["error"] == "supervisor_phone_not_logged_in" and "login extension" in body["message"]
                async with http.post(monitor_url, json={"mode": "listen"}, headers=as_agent) as r:
                    assert r.status == 403 and (await r.json())["error"] == "forbidden_role"
                async with http.post(monitor_url, json={"mode": "spy"}, headers=sup) as r:
                    assert r.status == 422 and (await r.json())["details"]["fields"][0]["field"] == "mode"
                assert await pool.fetchval("SELECT count(*) FROM monitoring_sessions") == 0
                assert await no_snoop()

                with SippAgents(sandbox, ["agent72"], port=5272, scenario="supervisor_tone.xml") as sup_phone:
                    await wait_until(lambda: app.sessions.supervisor_of_user(sup_user) is not None, timeout=15)
                    assert phone not in app.sessions.by_agent  # never offered a call
                    sup_session = app.sessions.supervisor_of_user(sup_user)
                    assert sup_session.bridge_id == f"hitcall-supervisor-{phone}"
                    await asyncio.sleep(1.0)

                    marks: dict[str, tuple[float, float]] = {}
                    t0 = time.monotonic()
                    async with http.post(monitor_url, json={"mode": "listen"}, headers=sup) as r:
                        assert r.status == 201, await r.text()
                        session = await r.json()
                    monitor_id = session["id"]
                    assert session["mode"] == "listen" and session["agent_id"] == agent
                    async with http.post(monitor_url, json={"mode": "listen"}, headers=sup) as r:
                        assert r.status == 409 and (await r.json())["error"] == "supervisor_already_monitoring"
                    await asyncio.sleep(MODE_S)
                    marks["listen"] = (t0, time.monotonic())
                    for mode in ("whisper", "barge"):
                        t0 = time.monotonic()
                        async with http.patch(f"{monitor_url}/{monitor_id}", json={"mode": mode}, headers=sup) as r:
                            assert r.status == 200, await r.text()
                            assert (await r.json())["mode"] == mode
                        if mode == "barge":  # the phone in the call's bridge, no snoop left
                            await wait_until(no_snoop, timeout=2)
                            call_bridge = await app.ari.rest.get_bridge(f"hitcall-agent-{agent}")
                            assert sup_session.channel_id in call_bridge.channels
                        await asyncio.sleep(MODE_S)
                        marks[mode] = (t0, time.monotonic())
                    async with http.get(f"{base}/monitoring", headers=sup) as r:
                        assert [s["id"] for s in (await r.json())["items"]] == [monitor_id]
                    t0 = time.monotonic()
                    async with http.delete(f"{monitor_url}/{monitor_id}", headers=sup) as r:
                        assert r.status == 200, await r.text()
                        ended = await r.json()
                    assert ended["end_reason"] == "stopped"
                    assert [m["mode"] for m in ended["modes"]] == ["listen", "whisper", "barge"]
                    await asyncio.sleep(MODE_S)
                    marks["after"] = (t0, time.monotonic())
                    bridge = await app.ari.rest.get_bridge(sup_session.bridge_id)
                    assert bridge.channels == [sup_session.channel_id]  # back home, no snoop left

                    # A second session ends with the call (the customer is hung up).
                    async with http.post(monitor_url, json={"mode": "whisper"}, headers=sup) as r:
                        assert r.status == 201, await r.text()
                        second = (await r.json())["id"]
                    async with http.post(f"{base}/calls/{attempt}/hangup", headers=sup) as r:
                        assert r.status == 204, await r.text()
                    hung_up = time.monotonic()
                    await wait_until(lambda: not app.monitor.live, timeout=5)
                    await wait_until(no_snoop, timeout=3)  # a hung-up channel is destroyed just after
                    bridge = await app.ari.rest.get_bridge(sup_session.bridge_id)
                    assert bridge.channels == [sup_session.channel_id]
                    assert sup_phone.errors() == ""

            await app.dialer.idle(timeout=10)
            await app.recorder.drain()
            stored = await pool.fetchval("SELECT path FROM recordings WHERE attempt_id = $1::uuid", attempt)
            recording = wav_samples(app.store.absolute(stored))

            # Stored: both sessions, their audit rows and webhook events.
            rows = await pool.fetch("SELECT * FROM monitoring_sessions ORDER BY id")
            assert [(r["id"], r["end_reason"]) for r in rows] == [(monitor_id, "stopped"), (second, "call_ended")]
            assert all(r["ended_at"] >= r["started_at"] and str(r["attempt_id"]) == attempt for r in rows)
            assert rows[0]["supervisor_user_id"] == sup_user and rows[0]["phone_agent_id"] == phone
            assert [m["mode"] for m in rows[0]["modes"]] == ["listen", "whisper", "barge"]
            audit = await pool.fetch(
                "SELECT action, actor, object_id FROM audit_log WHERE object_type = 'monitoring_session' ORDER BY id"
            )
            assert [a["action"] for a in audit] == [
                "monitoring.started",
                "monitoring.changed",
                "monitoring.changed",
                "monitoring.ended",
                "monitoring.started",
                "monitoring.ended",
            ]
            assert audit[-1]["actor"] == "monitoring"  # ended by the call's end, not by a person
            events = await pool.fetch(
                "SELECT event_type, payload FROM webhook_outbox WHERE event_type LIKE 'monitoring.%' ORDER BY id"
            )
            assert [e["event_type"] for e in events] == [a["action"] for a in audit]
            assert events[1]["payload"]["previous_mode"] == "listen"
    finally:
        if ear.mouth is not None:
            ear.mouth.cancel()
        transport.close()

    # The agent's ear: the supervisor's tone in whisper and barge only; the customer throughout.
    def agent_hears(mode: str, freq: float) -> float:
        start, end = marks[mode]
        return level(ear.between(start + 0.7, end - 0.3), freq)

    customer_at_agent = agent_hears("listen", CUSTOMER_TONE)
    assert customer_at_agent > 500, customer_at_agent
    levels = {m: round(agent_hears(m, SUPERVISOR_TONE)) for m in ("listen", "whisper", "barge", "after")}
    assert levels["whisper"] > 300 and levels["barge"] > 300, levels
    assert levels["listen"] < 30 and levels["after"] < 30, levels

    # The customer's recording of what it heard, aligned on its end (the hangup).
    await wait_until(lambda: heard.exists() and heard.stat().st_size > 44, timeout=5)
    samples = wav_samples(heard)

    def customer_hears(mode: str) -> float:
        start, end = marks[mode]
        a = len(samples) - int((hung_up - start - 0.7) * 8000)
        b = len(samples) - int((hung_up - end + 0.3) * 8000)
        return level(samples[max(a, 0) : max(b, 0)], SUPERVISOR_TONE)

    heard_levels = {m: round(customer_hears(m)) for m in ("listen", "whisper", "barge", "after")}
    assert heard_levels["barge"] > 300, heard_levels
    assert heard_levels["listen"] < 30 and heard_levels["whisper"] < 30 and heard_levels["after"] < 30, heard_levels

    # The call's recording (the agent's bridge, ended at the hangup): the barge is in it, the
    # whisper is not (it goes only to the agent's phone).
    def recorded(mode: str) -> float:
        start, end = marks[mode]
        a = len(recording) - int((hung_up - start - 0.7) * 8000)
        b = len(recording) - int((hung_up - end + 0.3) * 8000)
        return level(recording[max(a, 0) : max(b, 0)], SUPERVISOR_TONE)

    recorded_levels = {m: round(recorded(m)) for m in ("listen", "whisper", "barge", "after")}
    assert recorded_levels["barge"] > 300, recorded_levels
    assert max(recorded_levels[m] for m in ("listen", "whisper", "after")) < 30, recorded_levels


async def test_supervisor_phone_keys_switch_and_stop(service_settings, sandbox, hangup_agents):
    """Keys on the supervisor's phone during a session (tests/sipp/supervisor_keys.xml):
    2 whisper, 3 barge, 0 stop; then the phone hangs up and is logged out."""
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool, "monitored-keys", mode="progressive", numbers=sim_numbers(1, 1, start=730), **ALL_DAY
        )
        agent = await create_agent(pool, "1073", "agent73", [cid])
        _, user = await supervisor_phone(pool, "1074", "agent74", [cid], "sup-keys")
        with SippAgents(sandbox, ["agent73"], port=5273):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            attempt = await first_bridged_call(app, cid)
            with SippAgents(sandbox, ["agent74"], port=5274, scenario="supervisor_keys.xml") as sup_phone:
                await wait_until(lambda: app.sessions.supervisor_of_user(user) is not None, timeout=15)
                session = await monitor(app, user, "sup-keys", attempt, MonitorMode.LISTEN)
                await wait_until(lambda: not app.monitor.live, timeout=12)
                await wait_until(lambda: app.sessions.supervisor_of_user(user) is None, timeout=8)
                assert sup_phone.errors() == ""
            assert attempt in app.dialer.calls  # the call goes on without the supervisor
            await app.dialer.hangup_call(attempt)
        row = await pool.fetchrow("SELECT * FROM monitoring_sessions WHERE id = $1", session["id"])
        assert [m["mode"] for m in row["modes"]] == ["listen", "whisper", "barge"]
        assert row["end_reason"] == "stopped"
        actors = await pool.fetch(
            "SELECT action, actor FROM audit_log WHERE object_type = 'monitoring_session' ORDER BY id"
        )
        assert [(a["action"], a["actor"]) for a in actors] == [
            ("monitoring.started", "sup-keys"),
            ("monitoring.changed", "sup-keys"),
            ("monitoring.changed", "sup-keys"),
            ("monitoring.ended", "sup-keys"),
        ]


async def test_a_transfer_ends_the_monitoring_session(service_settings, sandbox, hangup_agents):
    """A blind transfer takes the customer to another agent: the supervisor who barged into
    the first agent's call is back in their own bridge, the session ended as transferred,
    the call goes on with the second agent."""
    from hitcall_pbx.core.transfer import Target, TargetKind, TransferKind

    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool, "monitored-xfer", mode="progressive", numbers=sim_numbers(1, 1, start=740), **ALL_DAY
        )
        other, _ = await create_campaign(pool, "monitored-xfer-2", mode="progressive", **ALL_DAY)
        first = await create_agent(pool, "1075", "agent75", [cid])
        second = await create_agent(pool, "1076", "agent76", [other])
        _, user = await supervisor_phone(pool, "1077", "agent77", [cid], "sup-xfer")
        with SippAgents(sandbox, ["agent75", "agent76", "agent77"], port=5275):
            await wait_until(
                lambda: {first, second} <= set(app.sessions.by_agent) and app.sessions.supervisor_of_user(user),
                timeout=15,
            )
            sup = app.sessions.supervisor_of_user(user)
            attempt = await first_bridged_call(app, cid)
            session = await monitor(app, user, "sup-xfer", attempt, MonitorMode.BARGE)
            await app.dialer.transfers.start(first, TransferKind.BLIND, Target(TargetKind.AGENT, agent_id=second))
            await wait_until(lambda: not app.monitor.live, timeout=5)
            assert attempt in app.dialer.calls  # the call goes on
            second_bridge = await app.ari.rest.get_bridge(f"hitcall-agent-{second}")
            assert attempt in second_bridge.channels and sup.channel_id not in second_bridge.channels
            first_bridge = await app.ari.rest.get_bridge(f"hitcall-agent-{first}")
            assert sup.channel_id not in first_bridge.channels
            assert (await app.ari.rest.get_bridge(sup.bridge_id)).channels == [sup.channel_id]
            await app.dialer.hangup_call(attempt)
            await wait_until(lambda: attempt not in app.dialer.calls, timeout=5)
        row = await pool.fetchrow("SELECT * FROM monitoring_sessions WHERE id = $1", session["id"])
        assert row["end_reason"] == "transferred" and row["ended_at"] is not None


async def test_the_agent_hanging_up_during_a_barge_ends_it_cleanly(service_settings, sandbox, hangup_agents):
    """The agent's phone call ends while the supervisor is in the agent's bridge: the call
    ends, the agent is logged out, the session ends as call_ended and the supervisor's
    phone is back in its own bridge, still logged in."""
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(
            pool, "monitored-agent-gone", mode="progressive", numbers=sim_numbers(1, 1, start=750), **ALL_DAY
        )
        agent = await create_agent(pool, "1078", "agent78", [cid])
        _, user = await supervisor_phone(pool, "1079", "agent79", [cid], "sup-gone")
        with SippAgents(sandbox, ["agent78", "agent79"], port=5278):
            await wait_until(
                lambda: agent in app.sessions.by_agent and app.sessions.supervisor_of_user(user), timeout=15
            )
            sup = app.sessions.supervisor_of_user(user)
            attempt = await first_bridged_call(app, cid)
            session = await monitor(app, user, "sup-gone", attempt, MonitorMode.BARGE)
            await app.ari.rest.hangup(app.sessions.by_agent[agent].channel_id)
            await wait_until(lambda: not app.monitor.live and attempt not in app.dialer.calls, timeout=5)
            await wait_until(lambda: agent not in app.sessions.by_agent, timeout=5)
            assert app.sessions.supervisor_of_user(user) is sup
            await wait_until(
                lambda: _channels_of(app, sup.bridge_id, [sup.channel_id]), timeout=3
            )  # home again, nothing else in it
        row = await pool.fetchrow("SELECT * FROM monitoring_sessions WHERE id = $1", session["id"])
        assert row["end_reason"] == "call_ended" and row["ended_at"] is not None


async def _channels_of(app: HitCall, bridge_id: str, expected: list[str]) -> bool:
    return (await app.ari.rest.get_bridge(bridge_id)).channels == expected
