"""Disposition lists, dispositions with rules and callbacks through the REST API, on
PostgreSQL: what is stored, the events and audit rows, and bad input that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hitcall_pbx.auth import Actor, Role
from hitcall_pbx.core.callbacks import CallbackKind, default_time
from hitcall_pbx.core.compliance import CallingWindow, in_window
from hitcall_pbx.core.dispositions import DEFAULT_DISPOSITIONS
from hitcall_pbx.dialer.control import ApiOnlyControl
from hitcall_pbx.report.query import load_campaign_day
from hitcall_pbx.store import callbacks

from .test_api_support import Api, api, make_world  # noqa: F401  (fixture)

HEL = ZoneInfo("Europe/Helsinki")


def _next_weekday_local(hour: int, minute: int = 0, days_ahead: int = 1) -> datetime:
    """A naive Helsinki wall-clock time on a weekday at least `days_ahead` days from now."""
    day = datetime.now(HEL).date() + timedelta(days=days_ahead)
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    return datetime.combine(day, time(hour, minute))


async def _snapshot(api: Api, contact_id: int) -> tuple:
    contact = await api.pool.fetchrow(
        "SELECT status, callback_at, callback_agent_id, next_attempt_at, attempts FROM contacts WHERE id = $1",
        contact_id,
    )
    return (
        tuple(contact),
        await api.pool.fetchval("SELECT count(*) FROM callbacks"),
        await api.pool.fetchval("SELECT count(*) FROM dnc_entries"),
        await api.pool.fetchval("SELECT count(*) FROM webhook_outbox"),
        await api.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action LIKE 'callback.%' OR action LIKE 'call.%'"
        ),
        await api.pool.fetchval("SELECT disposition FROM live_attempts WHERE contact_id = $1", contact_id),
    )


async def test_campaign_disposition_list_defaults_replace_and_bad_input(api: Api) -> None:
    world = await make_world(api)
    cid = world.ids["campaign_id"]
    url = f"/api/v1/campaigns/{cid}/dispositions"
    resp = await api.client.get(url, headers=world.credentials[Role.AGENT])
    assert resp.status == 200
    body = await resp.json()
    assert [d["code"] for d in body["dispositions"]] == [d.code for d in DEFAULT_DISPOSITIONS]
    assert body["dispositions"] == [d.as_dict() for d in DEFAULT_DISPOSITIONS], "the SQL defaults are the core's"

    bad = [
        {"code": "sale", "label_fi": "Kauppa", "label_en": "Sale", "phone_key": "3", "rule": "final"},
        {"code": "later", "label_fi": "Myöhemmin", "label_en": "Later", "phone_key": "3", "rule": "final"},
    ]
    resp = await api.client.put(url, json={"dispositions": bad}, headers=world.credentials[Role.SUPERVISOR])
    assert resp.status == 422
    assert (await resp.json())["details"]["field"] == "dispositions[1].phone_key"
    resp = await api.client.put(
        url,
        json={"dispositions": [{"code": "x", "label_fi": "X", "label_en": "X", "rule": "retry"}]},
        headers=world.credentials[Role.SUPERVISOR],
    )
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "dispositions[0].retry_delay_s"
    resp = await api.client.put(url, json={"dispositions": bad[:1]}, headers=world.credentials[Role.AGENT])
    assert resp.status == 403
    assert await api.pool.fetchval("SELECT count(*) FROM campaign_dispositions WHERE campaign_id = $1", cid) == 7
    assert await api.audit_rows("campaign.dispositions") == []

    good = [
        bad[0],
        {"code": "recycle", "label_fi": "Kierrätä", "label_en": "Recycle", "phone_key": "5", "rule": "recycle",
         "recycle_days": 30},
    ]  # fmt: skip
    resp = await api.client.put(url, json={"dispositions": good}, headers=world.credentials[Role.SUPERVISOR])
    assert resp.status == 200
    assert [(d["code"], d["recycle_days"]) for d in (await resp.json())["dispositions"]] == [
        ("sale", None),
        ("recycle", 30),
    ]
    (row,) = await api.audit_rows("campaign.dispositions")
    assert row["details"]["before"] == [d.code for d in DEFAULT_DISPOSITIONS]
    assert [d["code"] for d in row["details"]["after"]] == ["sale", "recycle"]


async def test_disposition_rules_through_the_api(api: Api) -> None:
    world = await make_world(api)
    api.deps.dialer = ApiOnlyControl(api.pool)  # the stored path: no dialing engine in this process
    agent_id, attempt, contact = world.ids["agent_id"], world.ids["attempt_id"], world.ids["contact_id"]
    agent = world.credentials[Role.AGENT]
    url = f"/api/v1/agents/{agent_id}/disposition"
    # the call has ended: its contact was closed (retry after no decision is the test's baseline)
    await api.pool.execute("UPDATE contacts SET status = 'retry', attempts = 1 WHERE id = $1", contact)

    before = await _snapshot(api, contact)
    resp = await api.client.post(url, json={"disposition": "lottery_win", "attempt_id": str(attempt)}, headers=agent)
    assert resp.status == 422
    err = await resp.json()
    assert err["details"]["field"] == "disposition" and "lottery_win" in err["message"]
    # a callback code needs a time, and the time must be callable
    resp = await api.client.post(url, json={"disposition": "callback", "attempt_id": str(attempt)}, headers=agent)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "callback_at"
    past = (datetime.now(HEL) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    resp = await api.client.post(
        url, json={"disposition": "callback", "attempt_id": str(attempt), "callback_at": past}, headers=agent
    )
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "callback_at"
    night = _next_weekday_local(23).isoformat()
    resp = await api.client.post(
        url, json={"disposition": "callback", "attempt_id": str(attempt), "callback_at": night}, headers=agent
    )
    body = await resp.json()
    assert resp.status == 422 and body["details"]["field"] == "callback_at" and "window" in body["message"]
    assert await _snapshot(api, contact) == before, "refused dispositions change nothing"

    # retry: no decision, back in a day
    resp = await api.client.post(url, json={"disposition": "no_decision", "attempt_id": str(attempt)}, headers=agent)
    assert resp.status == 204
    row = await api.pool.fetchrow("SELECT status, next_attempt_at FROM contacts WHERE id = $1", contact)
    assert row["status"] == "retry"
    assert abs((row["next_attempt_at"] - datetime.now(UTC)) - timedelta(days=1)) < timedelta(minutes=1)

    # do not call: the number is on the global list, with agent, attempt and time as its source
    resp = await api.client.post(url, json={"disposition": "do_not_call", "attempt_id": str(attempt)}, headers=agent)
    assert resp.status == 204
    entry = await api.pool.fetchrow("SELECT * FROM dnc_entries WHERE phone_e164 = '+358401234567'")
    assert (entry["campaign_id"], entry["source"], entry["agent_id"], entry["attempt_id"]) == (
        None,
        "agent",
        agent_id,
        attempt,
    )
    assert await api.pool.fetchval("SELECT status FROM contacts WHERE id = $1", contact) == "dnc"
    assert await api.pool.fetchval("SELECT disposition FROM live_attempts WHERE id = $1", attempt) == "do_not_call"
    events = await api.pool.fetch("SELECT payload FROM webhook_outbox WHERE event_type = 'disposition.set' ORDER BY id")
    assert [e["payload"]["disposition"] for e in events] == ["no_decision", "do_not_call"]
    assert events[1]["payload"]["rule"] == "do_not_call" and events[1]["payload"]["do_not_call"] is True
    assert events[1]["payload"]["label_fi"] == "Älä soita"
    audits = await api.audit_rows("call.disposition")
    assert [a["details"]["disposition"] for a in audits] == ["no_decision", "do_not_call"]
    assert audits[-1]["actor_role"] == "agent"
    # a callback for a do-not-call number is refused
    resp = await api.client.post(
        url,
        json={
            "disposition": "callback",
            "attempt_id": str(attempt),
            "callback_at": _next_weekday_local(12).isoformat(),
        },
        headers=agent,
    )
    assert resp.status == 409


async def test_callbacks_schedule_move_cancel_and_bad_input(api: Api) -> None:
    world = await make_world(api)
    crm = world.credentials[Role.INTEGRATION]
    contact, agent_id, cid = world.ids["contact_id"], world.ids["agent_id"], world.ids["campaign_id"]
    # the world's personal callback is cancelled first, so the contact starts without one
    resp = await api.client.post(f"/api/v1/callbacks/{world.ids['callback_id']}/cancel", headers=crm)
    assert resp.status == 200 and (await resp.json())["state"] == "cancelled"

    before = await _snapshot(api, contact)
    for at in (
        (datetime.now(HEL) - timedelta(minutes=5)).replace(tzinfo=None).isoformat(),  # in the past
        _next_weekday_local(7).isoformat(),  # before the window opens
        (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),  # an aware time in the past
    ):
        resp = await api.client.post("/api/v1/callbacks", json={"contact_id": contact, "at": at}, headers=crm)
        body = await resp.json()
        assert resp.status == 422 and body["details"]["field"] == "at", body
    resp = await api.client.post(
        "/api/v1/callbacks",
        json={"contact_id": contact, "at": _next_weekday_local(12).isoformat(), "kind": "personal", "agent_id": 999},
        headers=crm,
    )
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "agent_id"
    assert await _snapshot(api, contact) == before, "refused callbacks store nothing"

    local = _next_weekday_local(14, 30)
    resp = await api.client.post(
        "/api/v1/callbacks",
        json={"contact_id": contact, "at": local.isoformat(), "kind": "personal", "agent_id": agent_id},
        headers=crm,
    )
    assert resp.status == 201, await resp.text()
    cb = await resp.json()
    due = local.replace(tzinfo=HEL).astimezone(UTC)
    assert cb["local_due_at"] == local.isoformat() and cb["timezone"] == "Europe/Helsinki"
    assert datetime.fromisoformat(cb["due_at"]) == due and cb["kind"] == "personal" and cb["state"] == "scheduled"
    row = await api.pool.fetchrow("SELECT status, callback_at, callback_agent_id FROM contacts WHERE id = $1", contact)
    assert tuple(row) == ("callback", due, agent_id), "the hopper's view of it"

    # the agent sees its own callbacks only; another agent's cannot be moved
    agent = world.credentials[Role.AGENT]
    resp = await api.client.get("/api/v1/callbacks?state=scheduled", headers=agent)
    assert [c["id"] for c in (await resp.json())["items"]] == [cb["id"]]
    other = await api.pool.fetchval("INSERT INTO agents (number, name) VALUES ('303', 'Other') RETURNING id")
    await api.pool.execute("INSERT INTO agent_campaigns VALUES ($1, $2)", other, cid)
    resp = await api.client.post(
        f"/api/v1/callbacks/{cb['id']}/move",
        json={"at": _next_weekday_local(10).isoformat(), "kind": "personal", "agent_id": other},
        headers=crm,
    )
    assert resp.status == 200 and (await resp.json())["agent_id"] == other
    resp = await api.client.get("/api/v1/callbacks?state=scheduled", headers=agent)
    assert (await resp.json())["items"] == []
    resp = await api.client.post(f"/api/v1/callbacks/{cb['id']}/cancel", headers=agent)
    assert resp.status == 403 and (await resp.json())["error"] == "not_own_agent"

    # moving into the past is refused and changes nothing
    resp = await api.client.post(f"/api/v1/callbacks/{cb['id']}/move", json={"at": "2020-01-01T12:00:00"}, headers=crm)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "at"
    moved_to = _next_weekday_local(10).replace(tzinfo=HEL).astimezone(UTC)
    assert await api.pool.fetchval("SELECT callback_at FROM contacts WHERE id = $1", contact) == moved_to

    resp = await api.client.post(f"/api/v1/callbacks/{cb['id']}/cancel", headers=crm)
    assert resp.status == 200
    row = await api.pool.fetchrow("SELECT status, callback_at, callback_agent_id FROM contacts WHERE id = $1", contact)
    assert tuple(row) == ("new", None, None)
    resp = await api.client.post(f"/api/v1/callbacks/{cb['id']}/cancel", headers=crm)
    assert resp.status == 409

    events = [
        (r["event_type"], r["payload"]["callback_id"])
        for r in await api.pool.fetch(
            "SELECT event_type, payload FROM webhook_outbox WHERE event_type LIKE 'callback.%' ORDER BY id"
        )
    ]
    assert events == [
        ("callback.cancelled", world.ids["callback_id"]),
        ("callback.scheduled", cb["id"]),
        ("callback.moved", cb["id"]),
        ("callback.cancelled", cb["id"]),
    ]
    actions = [r["action"] for r in await api.pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert [a for a in actions if a.startswith("callback.")] == [
        "callback.cancel",
        "callback.schedule",
        "callback.move",
        "callback.cancel",
    ]

    # the day's report counts them: two scheduled today (the world's and this one), both cancelled
    report = await load_campaign_day(api.pool, cid, datetime.now(UTC).date())
    counts = report.callbacks
    assert (counts.scheduled, counts.cancelled, counts.done, counts.missed, counts.overdue) == (2, 2, 0, 0, 0)


@pytest.mark.parametrize("role", [Role.COMPLIANCE])
async def test_callbacks_are_not_for_compliance_users(api: Api, role: Role) -> None:
    world = await make_world(api)
    resp = await api.client.get("/api/v1/callbacks", headers=world.credentials[role])
    assert resp.status == 403


async def test_an_agent_schedules_for_itself_only(api: Api) -> None:
    world = await make_world(api)
    agent, contact = world.credentials[Role.AGENT], world.ids["contact_id"]
    other = await api.pool.fetchval("INSERT INTO agents (number, name) VALUES ('404', 'Other') RETURNING id")
    at = _next_weekday_local(11).isoformat()
    resp = await api.client.post(
        "/api/v1/callbacks",
        json={"contact_id": contact, "at": at, "kind": "personal", "agent_id": other},
        headers=agent,
    )
    assert resp.status == 403
    resp = await api.client.post(
        "/api/v1/callbacks", json={"contact_id": contact, "at": at, "kind": "personal"}, headers=agent
    )
    assert resp.status == 201 and (await resp.json())["agent_id"] == world.ids["agent_id"]
    # the world's earlier callback for the contact was replaced (cancelled, not yet due)
    states = await api.pool.fetch("SELECT state FROM callbacks WHERE contact_id = $1 ORDER BY id", contact)
    assert [r["state"] for r in states] == ["cancelled", "scheduled"]


async def test_the_phone_key_callback_time_is_the_campaign_delay_moved_into_the_window(api: Api) -> None:
    world = await make_world(api)
    cid, contact, agent_id = world.ids["campaign_id"], world.ids["contact_id"], world.ids["agent_id"]
    await api.pool.execute("UPDATE campaigns SET callback_delay_s = 7200 WHERE id = $1", cid)
    now = datetime.now(UTC)
    async with api.pool.acquire() as conn, conn.transaction():
        row = await callbacks.schedule(
            conn,
            contact_id=contact,
            at=None,
            kind=CallbackKind.PERSONAL,
            agent_id=agent_id,
            actor=Actor(f"agent:{agent_id}", "agent"),
            now=now,
        )
    window = CallingWindow()  # the world's campaign: 09-20 on weekdays
    expected = default_time(now=now, tz="Europe/Helsinki", window=window, delay=timedelta(hours=2))
    assert row["due_at"] == expected and row["kind"] == "personal" and row["agent_id"] == agent_id
    assert in_window(row["due_at"], "Europe/Helsinki", window) and row["due_at"] >= now + timedelta(hours=2)


async def test_the_openapi_document_describes_dispositions_and_callbacks(api: Api) -> None:
    resp = await api.client.get("/api/v1/openapi.json")
    doc = await resp.json()
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/campaigns/{campaign_id}/dispositions", "put"),
        ("/api/v1/callbacks", "post"),
        ("/api/v1/callbacks/{callback_id}/move", "post"),
        ("/api/v1/callbacks/{callback_id}/cancel", "post"),
    ]:
        assert method in paths[path], path
    schemas = doc["components"]["schemas"]
    assert {"callback_at", "callback_kind"} <= set(schemas["DispositionIn"]["properties"])
    assert {"disposition_required", "callback_grace_s", "callback_delay_s"} <= set(schemas["Campaign"]["properties"])


async def test_the_last_disposition_wins_over_a_callback_it_replaces(api: Api) -> None:
    world = await make_world(api)
    api.deps.dialer = ApiOnlyControl(api.pool)
    agent_id, attempt, contact = world.ids["agent_id"], world.ids["attempt_id"], world.ids["contact_id"]
    agent = world.credentials[Role.AGENT]
    url = f"/api/v1/agents/{agent_id}/disposition"
    await api.pool.execute("UPDATE contacts SET status = 'done', attempts = 1 WHERE id = $1", contact)
    local = _next_weekday_local(15)
    resp = await api.client.post(
        url,
        json={"disposition": "callback", "attempt_id": str(attempt), "callback_at": local.isoformat()},
        headers=agent,
    )
    assert resp.status == 204
    row = await api.pool.fetchrow("SELECT status, callback_at, callback_agent_id FROM contacts WHERE id = $1", contact)
    assert tuple(row) == ("callback", local.replace(tzinfo=HEL).astimezone(UTC), agent_id), "personal by default"
    cb = await api.pool.fetchrow("SELECT * FROM callbacks WHERE source_attempt_id = $1", attempt)
    assert (cb["state"], cb["kind"], cb["created_by"]) == ("scheduled", "personal", (await api.pool.fetchval(
        "SELECT username FROM users u JOIN agents a ON a.user_id = u.id WHERE a.id = $1", agent_id)))  # fmt: skip

    resp = await api.client.post(url, json={"disposition": "sale", "attempt_id": str(attempt)}, headers=agent)
    assert resp.status == 204
    row = await api.pool.fetchrow("SELECT status, callback_at FROM contacts WHERE id = $1", contact)
    assert tuple(row) == ("done", None)
    assert await api.pool.fetchval("SELECT state FROM callbacks WHERE id = $1", cb["id"]) == "cancelled"
    assert await api.pool.fetchval("SELECT disposition FROM live_attempts WHERE id = $1", attempt) == "sale"
    kinds = [r["event_type"] for r in await api.pool.fetch("SELECT event_type FROM webhook_outbox ORDER BY id")]
    assert kinds[-4:] == ["callback.scheduled", "disposition.set", "callback.cancelled", "disposition.set"]
