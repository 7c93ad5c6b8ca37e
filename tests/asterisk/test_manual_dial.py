"""Manual dial on real Asterisk through the REST API: an agent's manual dial reaches that
agent and writes a CDR (mode manual) and the call's webhook events; a dial the pre-dial
rules refuse (do-not-call list, calling window) originates nothing and writes nothing; a
malformed number is 422 and an agent not logged in 409."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime, time
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from hitcall_pbx.api import build_registry
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.dialer.manual import ManualTarget
from hitcall_pbx.sandbox import SippAgents
from tests.live import OriginateCounter

from .conftest import wait_until

pytestmark = pytest.mark.asterisk
SYSTEM = Actor("test", "system")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _admin(pool) -> dict[str, str]:
    auth = AuthService(
        pool,
        passwords=Passwords(time_cost=1, memory_cost=1024, parallelism=1),
        role_scopes=build_registry().role_scopes(),
    )
    user = await auth.create_user(
        username=f"admin-{uuid.uuid4().hex[:6]}", role=Role.ADMIN, password=None, actor=SYSTEM
    )
    grant = await auth.create_token(
        user_id=user["id"], name="t", scopes=sorted(auth.scopes_for(Role.ADMIN)), expires_at=None, actor=SYSTEM
    )
    return {"Authorization": f"Bearer {grant.token}"}


def _closed_today() -> list[int]:
    """Every weekday but today's in Helsinki: the window is shut now for a Finnish number."""
    today = datetime.now(ZoneInfo("Europe/Helsinki")).isoweekday()
    return [d for d in range(1, 8) if d != today]


async def test_manual_dial_reaches_the_agent_and_writes_a_cdr(service_settings, sandbox, hangup_agents):
    counter = OriginateCounter()
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    options = Options(http=True, dialer_tick_s=0.05)
    async with HitCall(settings, options, ari_factory=counter.ari_factory) as app, aiohttp.ClientSession() as http:
        pool = app.db.pool
        # A paused campaign dials nothing by itself: every call here is the agent's manual dial.
        contact_number = sim_numbers(9, 1, start=611)[0]
        cid, _ = await create_campaign(
            pool, "manual-ok", state="paused", wrap_up_s=0, numbers=[contact_number], **ALL_DAY
        )
        contact = await pool.fetchval("SELECT id FROM contacts WHERE phone_e164 = $1", contact_number)
        other, _ = await create_campaign(pool, "manual-other", state="running", wrap_up_s=0, **ALL_DAY)
        agent = await create_agent(pool, "1061", "agent61", [cid])
        bystander = await create_agent(pool, "1062", "agent62", [cid, other])
        headers = await _admin(pool)
        base = f"http://127.0.0.1:{app.http_port}/api/v1"
        number = sim_numbers(9, 1, start=610)[0]  # answers after 0.5 s, hangs up after 1.5 s of talk
        with SippAgents(sandbox, ["agent61", "agent62"], port=5261):
            await wait_until(lambda: agent in app.sessions.by_agent and bystander in app.sessions.by_agent, timeout=15)
            await wait_until(lambda: app.sessions.get(agent).state.value == "ready", timeout=5)
            app.sessions.pause(agent, "coffee")  # a paused agent may dial: it is unpaused for the call
            async with http.post(
                f"{base}/agents/{agent}/dial", json={"campaign_id": cid, "number": "040 9000610"}, headers=headers
            ) as r:
                assert r.status == 202, await r.text()
                attempt_id = uuid.UUID((await r.json())["attempt_id"])
            assert app.sessions.get(agent).state.value == "reserved"
            call = app.dialer.calls[str(attempt_id)]
            assert call.attempt.number == number and call.attempt.manual and call.agent_id == agent
            await wait_until(lambda: app.sessions.get(agent).state.value == "on_call", timeout=10)
            assert app.sessions.get(bystander).state.value == "ready", "no other agent takes a manual call"
            await wait_until(lambda: str(attempt_id) not in app.dialer.calls, timeout=15)
            # Then a contact of the campaign: the contact's bookkeeping follows the call like any attempt.
            await wait_until(lambda: app.sessions.get(agent).state.value == "ready", timeout=5)
            async with http.post(f"{base}/agents/{agent}/dial", json={"contact_id": contact}, headers=headers) as r:
                assert r.status == 202, await r.text()
                contact_attempt = uuid.UUID((await r.json())["attempt_id"])
            assert await pool.fetchval("SELECT status FROM contacts WHERE id = $1", contact) == "in_progress"
            await wait_until(lambda: str(contact_attempt) not in app.dialer.calls, timeout=15)
            await app.cdr.flush()
            await app.dialer.idle(5)
            await app.sessions.drain()

        assert counter.sent == {str(attempt_id): 1, str(contact_attempt): 1}, "one attempt id, one originate"
        row = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt_id)
        assert row is not None, "the manual call wrote its CDR"
        assert (row["mode"], row["direction"], row["campaign_id"], row["agent_id"]) == (
            "manual",
            "outbound",
            cid,
            agent,
        )
        assert row["dialled_number"] == number and row["contact_id"] is None and row["outcome"] == "answered_human"
        assert row["bridged_at"] is not None and row["answer_to_bridge_ms"] < 2000 and not row["abandoned"]
        assert float(row["talk_s"]) > 0.5
        assert await pool.fetchval("SELECT count(*) FROM live_attempts") == 0
        second = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", contact_attempt)
        assert (second["mode"], second["contact_id"], second["agent_id"]) == ("manual", contact, agent)
        assert (second["dialled_number"], second["outcome"], second["attempt_no"]) == (
            contact_number,
            "answered_human",
            1,
        )
        person = await pool.fetchrow("SELECT status, attempts, last_outcome FROM contacts WHERE id = $1", contact)
        assert dict(person) == {"status": "done", "attempts": 1, "last_outcome": "answered_human"}
        events = [
            r["event_type"]
            for r in await pool.fetch(
                "SELECT event_type FROM webhook_outbox WHERE payload->>'attempt_id' = $1 OR payload->>'id' = $1"
                " ORDER BY id",
                str(attempt_id),
            )
        ]
        assert events == ["call.originated", "call.answered", "call.bridged", "call.ended"]
        states = [
            r["state"]
            for r in await pool.fetch("SELECT state FROM agent_state_log WHERE agent_id = $1 ORDER BY id", agent)
        ]
        assert states[:6] == ["ready", "paused", "ready", "reserved", "on_call", "wrap_up"]
        audit = await pool.fetchrow("SELECT * FROM audit_log WHERE action = 'call.manual_dial'")
        assert audit["object_id"] == str(agent) and audit["details"]["attempt_id"] == str(attempt_id)
        assert number not in str(audit["details"]), "the audit row names the attempt, not the number"


async def test_manual_dial_refusals_dial_nothing(service_settings, sandbox, hangup_agents):
    counter = OriginateCounter()
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    options = Options(http=True, dialer_tick_s=0.05)
    async with HitCall(settings, options, ari_factory=counter.ari_factory) as app, aiohttp.ClientSession() as http:
        pool = app.db.pool
        cid, list_id = await create_campaign(pool, "manual-refused", state="paused", **ALL_DAY)
        shut, _ = await create_campaign(
            pool,
            "manual-shut",
            state="paused",
            window_start=time(0, 0),
            window_end=time(23, 59, 59),
            window_days=_closed_today(),
        )
        agent = await create_agent(pool, "1063", "agent63", [cid, shut])
        absent = await create_agent(pool, "1064", "agent64", [cid])
        dnc_number, window_number, objector = sim_numbers(1, 3, start=630)
        await pool.execute("INSERT INTO dnc_entries (phone_e164, source) VALUES ($1, 'api')", dnc_number)
        contact = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164, marketing_prohibited) VALUES ($1, $2, true) RETURNING id",
            list_id,
            objector,
        )
        headers = await _admin(pool)
        base = f"http://127.0.0.1:{app.http_port}/api/v1"

        async def dial(agent_id: int, body: dict) -> tuple[int, dict]:
            async with http.post(f"{base}/agents/{agent_id}/dial", json=body, headers=headers) as r:
                return r.status, await r.json()

        with SippAgents(sandbox, ["agent63"], port=5263):
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await wait_until(lambda: app.sessions.get(agent).state.value == "ready", timeout=5)
            app.sessions.pause(agent, "training")
            await app.sessions.drain()
            log_before = await pool.fetchval("SELECT count(*) FROM agent_state_log WHERE agent_id = $1", agent)

            status, body = await dial(agent, {"campaign_id": cid, "number": dnc_number})
            assert status == 409 and body["error"] == "dial_refused", body
            assert body["details"] == {"field": "number", "reason": "dnc_global"}

            status, body = await dial(agent, {"campaign_id": shut, "number": window_number})
            assert status == 409 and body["error"] == "dial_refused", body
            assert body["details"]["reason"] == "outside_window" and body["details"]["field"] == "number"
            assert datetime.fromisoformat(body["details"]["retry_at"]) > datetime.now(ZoneInfo("UTC"))

            status, body = await dial(agent, {"contact_id": contact})
            assert status == 409 and body["details"] == {"field": "contact_id", "reason": "marketing_prohibited"}

            status, body = await dial(agent, {"campaign_id": cid, "number": "12ab"})
            assert status == 422 and [f["field"] for f in body["details"]["fields"]] == ["number"], body
            status, body = await dial(agent, {"number": window_number})
            assert status == 422 and body["details"]["field"] == "campaign_id", body

            status, body = await dial(absent, {"campaign_id": cid, "number": window_number})
            assert status == 409 and body["error"] == "agent_not_available", body

            # Nothing was dialled and nothing written; the agent is still paused with its code.
            assert app.sessions.get(agent).state.value == "paused"
            assert app.sessions.get(agent).fsm.pause_code == "training"
            await app.sessions.drain()
            assert await pool.fetchval("SELECT count(*) FROM agent_state_log WHERE agent_id = $1", agent) == log_before

        assert counter.sent == {}, "a refused manual dial originates nothing"
        assert await pool.fetchval("SELECT count(*) FROM all_attempts") == 0
        assert await pool.fetchval("SELECT count(*) FROM dial_blocks") == 0
        assert await pool.fetchval("SELECT status FROM contacts WHERE id = $1", contact) == "new"
        assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'call.manual_dial'") == 0


async def test_a_manual_call_whose_agent_left_is_taken_by_no_other_agent(service_settings, sandbox, hangup_agents):
    counter = OriginateCounter()
    async with HitCall(service_settings, Options(dialer_tick_s=0.05), ari_factory=counter.ari_factory) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(pool, "manual-left", state="paused", wrap_up_s=0, **ALL_DAY)
        agent = await create_agent(pool, "1065", "agent65", [cid])
        bystander = await create_agent(pool, "1066", "agent66", [cid])
        number = sim_numbers(7, 1, start=650)[0]  # rings 1-4 s, then answers
        with SippAgents(sandbox, ["agent65", "agent66"], port=5265):
            await wait_until(lambda: agent in app.sessions.by_agent and bystander in app.sessions.by_agent, timeout=15)
            await wait_until(lambda: app.sessions.get(bystander).state.value == "ready", timeout=5)
            attempt = await app.dialer.manual.dial(agent, ManualTarget(cid, number))
            # The agent's phone hangs up while the customer's phone rings.
            await wait_until(lambda: app.dialer.calls[str(attempt.id)].ringing_at is not None, timeout=5)
            await app.ari.rest.hangup(app.sessions.get(agent).channel_id)
            await wait_until(lambda: agent not in app.sessions.by_agent, timeout=5)
            await wait_until(lambda: str(attempt.id) not in app.dialer.calls, timeout=40)
            assert app.sessions.get(bystander).state.value == "ready", "the bystander never took the call"
            await app.dialer.idle(5)
            await app.cdr.flush()
        row = await pool.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt.id)
        assert (row["mode"], row["outcome"], row["abandoned"], row["bridged_at"]) == ("manual", "abandoned", True, None)
        assert row["answered_at"] is not None, "the customer answered and heard the information message"
        assert counter.sent == {str(attempt.id): 1}
        states = await pool.fetch("SELECT state FROM agent_state_log WHERE agent_id = $1", bystander)
        assert {r["state"] for r in states} == {"ready"}
