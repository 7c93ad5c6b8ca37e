"""Dispositions with rules and callbacks on the real Asterisk with SIPp agent phones.

* A campaign that requires a disposition keeps the agent in wrap-up (key 2 and the API
  refused) until the agent presses key 7 (do not call); the number then goes on the
  global do-not-call list and a second campaign's contact with that number is blocked
  before it is dialled. A code the campaign lacks, and a callback in the past or outside
  the calling window, are refused and change nothing.
* Callbacks: a personal callback is offered to its agent as a preview offer in a
  predictive campaign; a callback for anyone is dialled first by any agent; a personal
  callback whose agent is not logged in goes to anyone once the campaign's grace has
  passed. Each callback's row ends done. The callback key (4) schedules a personal
  callback at the campaign's delay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor
from hitcall_pbx.core.callbacks import CallbackKind
from hitcall_pbx.demo.seed import ALL_DAY, add_contacts, create_agent, create_campaign
from hitcall_pbx.dialer.control import EngineControl
from hitcall_pbx.errors import Conflict, ValidationFailed
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.store import callbacks

from .conftest import wait_until

pytestmark = pytest.mark.asterisk

CRM = Actor("token:1", "integration")


def _numbers(start: int, n: int) -> list[str]:
    """Customers who answer at once and hang up after 1 s of talk."""
    return [f"+3584101{i:05d}" for i in range(start, start + n)]


async def _schedule(pool, contact_id: int, *, in_s: float, kind: CallbackKind, agent_id: int | None) -> int:
    async with pool.acquire() as conn, conn.transaction():
        row = await callbacks.schedule(
            conn,
            contact_id=contact_id,
            at=datetime.now(UTC) + timedelta(seconds=in_s),
            kind=kind,
            agent_id=agent_id,
            actor=CRM,
            now=datetime.now(UTC),
        )
    return row["id"]


async def _contact(pool, list_id: int, number: str) -> int:
    return await pool.fetchval("SELECT id FROM contacts WHERE list_id = $1 AND phone_e164 = $2", list_id, number)


async def test_required_disposition_and_do_not_call_key_block_another_campaign(
    service_settings, sandbox, hangup_agents
):
    number = _numbers(71000, 1)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        control = EngineControl(app.dialer, app.sessions)
        first, _ = await create_campaign(
            pool, "dispose-first", wrap_up_s=60, disposition_required=True, numbers=number, **ALL_DAY
        )
        second, second_list = await create_campaign(pool, "dispose-second", wrap_up_s=0, numbers=number, **ALL_DAY)
        agent = await create_agent(pool, "1171", "agent171", [first, second])
        with SippAgents(sandbox, ["agent171"], port=5371, scenario="agent_dispose.xml") as phone:
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", first)
            await wait_until(lambda: app.sessions.get(agent).state.value == "wrap_up", timeout=6)
            attempt = app.sessions.get(agent).attempt_id

            async def snapshot():
                return (
                    await pool.fetchval("SELECT count(*) FROM dnc_entries"),
                    await pool.fetchval("SELECT count(*) FROM callbacks"),
                    await pool.fetchval("SELECT count(*) FROM webhook_outbox WHERE event_type = 'disposition.set'"),
                    tuple(await pool.fetchrow("SELECT status, callback_at FROM contacts WHERE phone_e164 = $1 "
                                              "AND list_id <> $2", number[0], second_list)),
                )  # fmt: skip

            # The ended call's contact is closed through the journal: written before the snapshot.
            await app.journal.flush()
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT status <> 'in_progress' FROM contacts WHERE phone_e164 = $1 AND list_id <> $2",
                    number[0],
                    second_list,
                ),
                timeout=5,
            )
            before = await snapshot()
            # bad input: a code the campaign lacks; callbacks in the past and outside the window
            with pytest.raises(ValidationFailed) as err:
                await control.set_disposition(agent, "lottery_win", attempt_id=None, actor=CRM)
            assert err.value.details == {"field": "disposition"}
            for at in (datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC) + timedelta(days=400)):
                with pytest.raises(ValidationFailed) as err:
                    await control.set_disposition(agent, "callback", attempt_id=None, actor=CRM, callback_at=at)
                assert err.value.details["field"] == "callback_at"
            # the API's end of wrap-up is refused while the disposition is missing
            with pytest.raises(Conflict) as refused:
                await control.end_wrap_up(agent, actor=CRM)
            assert refused.value.code == "disposition_required"
            await app.journal.flush()
            assert await snapshot() == before, "refused requests change nothing"

            # the phone presses key 2 at 5 s (refused), then key 7 (do not call) at 7 s
            await wait_until(
                lambda: pool.fetchval("SELECT count(*) FROM dnc_entries WHERE phone_e164 = $1", number[0]),
                timeout=10,
            )
            assert app.sessions.get(agent).state.value == "wrap_up", "key 2 before the disposition was refused"
            entry = await pool.fetchrow("SELECT * FROM dnc_entries WHERE phone_e164 = $1", number[0])
            assert (entry["campaign_id"], entry["source"], entry["agent_id"], str(entry["attempt_id"])) == (
                None,
                "agent",
                agent,
                attempt,
            )
            # the second campaign runs while the agent is ready after key 2: its contact is blocked
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", second)
            await wait_until(lambda: app.sessions.get(agent).state.value == "ready", timeout=6)
            blocked = await _contact(pool, second_list, number[0])
            await wait_until(
                lambda: pool.fetchval("SELECT status = 'dnc' FROM contacts WHERE id = $1", blocked), timeout=5
            )
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id IN ($1, $2)", first, second)
            await app.dialer.idle()
            await app.cdr.flush()
        assert phone.errors() == ""
        cdrs = await pool.fetch("SELECT * FROM all_attempts WHERE dialled_number = $1", number[0])
        assert [(r["campaign_id"], r["disposition"]) for r in cdrs] == [(first, "do_not_call")], "never dialled twice"
        assert await pool.fetchval("SELECT status FROM contacts WHERE id <> $1 AND phone_e164 = $2", blocked,
                                   number[0]) == "dnc"  # fmt: skip
        assert (
            await pool.fetchval(
                "SELECT blocked FROM dial_blocks WHERE campaign_id = $1 AND reason = 'dnc_global'", second
            )
            == 1
        )
        (event,) = await pool.fetch("SELECT payload FROM webhook_outbox WHERE event_type = 'disposition.set'")
        assert event["payload"]["disposition"] == "do_not_call" and event["payload"]["agent_id"] == agent
        # the ready came only after the disposition
        log = await pool.fetch(
            "SELECT state, started_at FROM agent_state_log WHERE agent_id = $1 ORDER BY started_at", agent
        )
        wrap = [r["started_at"] for r in log if r["state"] == "wrap_up"]
        ready_after = [r["started_at"] for r in log if r["state"] == "ready" and r["started_at"] > wrap[0]]
        assert ready_after and ready_after[0] > entry["created_at"]


async def test_personal_callback_is_offered_to_its_agent_in_a_predictive_campaign(
    service_settings, sandbox, hangup_agents
):
    numbers = _numbers(72000, 3)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(pool, "cb-personal", mode="predictive", wrap_up_s=0, **ALL_DAY)
        a1 = await create_agent(pool, "1172", "agent172", [cid])
        a2 = await create_agent(pool, "1173", "agent173", [cid])
        with SippAgents(sandbox, ["agent172", "agent173"], port=5373):
            await wait_until(lambda: len(app.sessions.by_agent) == 2, timeout=15)
            await add_contacts(pool, list_id, numbers)
            named = await _contact(pool, list_id, numbers[0])
            cb = await _schedule(pool, named, in_s=1.0, kind=CallbackKind.PERSONAL, agent_id=a2)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            offer = await wait_until(lambda: app.dialer.offers.get(a2), timeout=8)
            assert offer.contact_id == named and a1 not in app.dialer.offers
            event = await pool.fetchrow(
                "SELECT payload FROM webhook_outbox WHERE event_type = 'preview.offered' ORDER BY id DESC LIMIT 1"
            )
            assert event["payload"]["callback"] is True and event["payload"]["agent_id"] == a2
            attempt = await app.dialer.accept_offer(a2)
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT count(*) = 3 FROM contacts WHERE list_id = $1 AND status = 'done'", list_id
                ),
                timeout=20,
            )
            await app.dialer.idle()
            await app.cdr.flush()
        row = await pool.fetchrow("SELECT * FROM all_attempts WHERE id = $1", attempt.id)
        assert (row["contact_id"], row["agent_id"], row["outcome"]) == (named, a2, "answered_human")
        assert row["mode"] == "predictive" and row["answer_to_bridge_ms"] < 2000
        assert await pool.fetchval("SELECT state FROM callbacks WHERE id = $1", cb) == "done"


async def test_callback_for_anyone_and_fallback_after_grace(service_settings, sandbox, hangup_agents):
    numbers = _numbers(73000, 3)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "cb-anyone", mode="progressive", wrap_up_s=0, callback_grace_s=3, numbers=numbers, **ALL_DAY
        )
        a1 = await create_agent(pool, "1174", "agent174", [cid])
        away = await create_agent(pool, "1175", "agent175", [cid])  # never logs in
        anyone = await _contact(pool, list_id, numbers[0])
        personal = await _contact(pool, list_id, numbers[1])
        cb_anyone = await _schedule(pool, anyone, in_s=0.5, kind=CallbackKind.ANYONE, agent_id=None)
        cb_personal = await _schedule(pool, personal, in_s=0.5, kind=CallbackKind.PERSONAL, agent_id=away)
        # the remaining contact waits, so that the callbacks' order shows
        await pool.execute(
            "UPDATE contacts SET next_attempt_at = now() + interval '1 hour' WHERE list_id = $1 AND id NOT IN ($2, $3)",
            list_id,
            anyone,
            personal,
        )
        due = await pool.fetchval("SELECT callback_at FROM contacts WHERE id = $1", personal)
        with SippAgents(sandbox, ["agent174"], port=5375):
            await wait_until(lambda: a1 in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(
                lambda: pool.fetchval("SELECT count(*) = 2 FROM all_attempts WHERE campaign_id = $1", cid), timeout=15
            )
            await app.dialer.idle()
            await app.cdr.flush()
        rows = {r["contact_id"]: r for r in await pool.fetch("SELECT * FROM all_attempts WHERE campaign_id = $1", cid)}
        assert set(rows) == {anyone, personal}
        assert rows[anyone]["agent_id"] == a1 and rows[anyone]["outcome"] == "answered_human"
        # the personal callback waited for its agent (not logged in) until the grace had passed
        assert rows[personal]["agent_id"] == a1 and rows[personal]["outcome"] == "answered_human"
        assert rows[personal]["created_at"] >= due + timedelta(seconds=3)
        assert rows[anyone]["created_at"] < due + timedelta(seconds=3)
        states = await pool.fetch(
            "SELECT id, state FROM callbacks WHERE id = ANY($1::bigint[]) ORDER BY id", [cb_anyone, cb_personal]
        )
        assert [s["state"] for s in states] == ["done", "done"]


async def test_the_callback_key_schedules_a_personal_callback_at_the_campaigns_delay(
    service_settings, sandbox, hangup_agents
):
    number = _numbers(74000, 1)
    async with HitCall(service_settings, Options(dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "cb-key", wrap_up_s=30, callback_delay_s=3600, numbers=number, **ALL_DAY
        )
        agent = await create_agent(pool, "1176", "agent176", [cid])
        contact = await _contact(pool, list_id, number[0])
        with SippAgents(sandbox, ["agent176"], port=5377, scenario="agent_callback_key.xml") as phone:
            await wait_until(lambda: agent in app.sessions.by_agent, timeout=15)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            await wait_until(lambda: app.sessions.get(agent).state.value == "wrap_up", timeout=6)
            attempt = app.sessions.get(agent).attempt_id
            # key 4 at 4 s after login, in wrap-up
            cb = await wait_until(
                lambda: pool.fetchrow("SELECT * FROM callbacks WHERE contact_id = $1", contact), timeout=8
            )
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)
            await app.dialer.idle()
            await app.cdr.flush()
        assert phone.errors() == ""
        assert (cb["kind"], cb["agent_id"], cb["state"], str(cb["source_attempt_id"])) == (
            "personal",
            agent,
            "scheduled",
            attempt,
        )
        # the campaign's delay from the key press (the window is open all day)
        assert timedelta(minutes=59) < cb["due_at"] - cb["created_at"] <= timedelta(hours=1, seconds=1)
        row = await pool.fetchrow("SELECT status, callback_at, callback_agent_id FROM contacts WHERE id = $1", contact)
        assert tuple(row) == ("callback", cb["due_at"], agent)
        (cdr,) = await pool.fetch("SELECT disposition, outcome FROM all_attempts WHERE contact_id = $1", contact)
        assert tuple(cdr) == ("callback", "answered_human")
        kinds = [r["event_type"] for r in await pool.fetch(
            "SELECT event_type FROM webhook_outbox WHERE event_type IN ('callback.scheduled', 'disposition.set') "
            "ORDER BY id")]  # fmt: skip
        assert kinds == ["callback.scheduled", "disposition.set"]
