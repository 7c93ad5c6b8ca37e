"""Reads of customers' personal data through the agent and call controls are audited, with
ids and counts only in the audit row (no number, no name); a supervisor reads CDRs of a
campaign they supervise only, and is told which field to give otherwise."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hitcall_pbx.api.deps import Cdr
from hitcall_pbx.auth import Actor, Role
from hitcall_pbx.core.transfer import Target, Transfer, TransferKind, TransferState
from hitcall_pbx.dialer.control import EngineControl
from tests.integration.test_api_support import Api, api  # noqa: F401  (fixture)
from tests.security.test_supervisor_scope import _scene

NAME = "Customer 1"  # the seeded contacts' names
NUMBERS = ("+358401110101", "+358401110102")


async def _audit_text(api: Api) -> str:
    return await api.pool.fetchval(
        "SELECT coalesce(string_agg(concat_ws('|', actor, object_type, object_id, details::text), E'\\n'), '')"
        " FROM audit_log"
    )


def _no_personal_data(text: str) -> None:
    assert NAME not in text
    for number in NUMBERS:
        assert number not in text and number.lstrip("+") not in text


async def test_reading_a_preview_offer_is_audited(api: Api) -> None:
    s = await _scene(api)
    agent_id, contact_id = s.mine["agent_id"], s.mine["contact_id"]
    await api.pool.execute("DELETE FROM live_attempts")  # the contact waits as an offer, not on a call
    await api.pool.execute(
        "INSERT INTO preview_offers (agent_id, campaign_id, contact_id, expires_at) VALUES ($1, $2, $3, $4)",
        agent_id,
        s.mine["campaign_id"],
        contact_id,
        datetime.now(UTC) + timedelta(minutes=1),
    )
    resp = await api.client.get(f"/api/v1/agents/{agent_id}/offer", headers=s.supervisor)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["phone"] == NUMBERS[0]
    (row,) = await api.audit_rows("contact.view")
    assert (row["actor"], row["object_type"], row["object_id"]) == ("sini", "contact", str(contact_id))
    assert row["details"] == {"agent_id": agent_id, "card": "offer"}
    _no_personal_data(await _audit_text(api))


async def test_live_calls_and_cdrs_read_are_audited_without_numbers(api: Api) -> None:
    s = await _scene(api)
    resp = await api.client.get("/api/v1/calls", headers=s.admin)
    assert resp.status == 200 and len((await resp.json())["items"]) == 2
    (row,) = await api.audit_rows("call.list")
    assert row["details"] == {"calls": 2}

    api.cdrs.rows = [
        Cdr.model_validate(
            {
                "id": str(uuid.uuid4()),
                "campaign_id": s.mine["campaign_id"],
                "agent_id": s.mine["agent_id"],
                "dialled_number": NUMBERS[0],
                "state": "ended",
                "created_at": datetime.now(UTC).isoformat(),
                "abandoned": False,
                "retention_until": (datetime.now(UTC) + timedelta(days=365)).isoformat(),
            }
        )
    ]
    resp = await api.client.get(f"/api/v1/cdrs?campaign_id={s.mine['campaign_id']}", headers=s.supervisor)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["items"][0]["dialled_number"] == NUMBERS[0]
    (row,) = await api.audit_rows("cdr.query")
    assert row["actor"] == "sini"
    assert row["details"] == {"campaign_id": s.mine["campaign_id"], "cdrs": 1}
    _no_personal_data(await _audit_text(api))


async def test_a_supervisor_reads_cdrs_of_a_supervised_campaign_only(api: Api) -> None:
    s = await _scene(api)
    for query, status, error in (
        ("", 422, "validation_error"),
        (f"?campaign_id={s.other['campaign_id']}", 403, "campaign_not_supervised"),
    ):
        for path in ("/api/v1/cdrs", "/api/v1/cdrs.csv"):
            resp = await api.client.get(path + query, headers=s.supervisor)
            assert resp.status == status, (path, query)
            body = await resp.json()
            assert (body["error"], body["details"]["field"]) == (error, "campaign_id")
    assert api.cdrs.filters == [], "a refused query reaches no CDR"
    resp = await api.client.get(f"/api/v1/cdrs.csv?campaign_id={s.mine['campaign_id']}", headers=s.supervisor)
    assert resp.status == 200
    resp = await api.client.get("/api/v1/cdrs", headers=await api.as_role(Role.COMPLIANCE))
    assert resp.status == 200


async def test_reading_contacts_is_audited_without_numbers(api: Api) -> None:
    s = await _scene(api)
    contact_id, list_id = s.mine["contact_id"], s.mine["list_id"]
    resp = await api.client.get(f"/api/v1/contacts/{contact_id}", headers=s.supervisor)
    assert resp.status == 200
    (row,) = await api.audit_rows("contact.view")
    assert (row["actor"], row["object_id"]) == ("sini", str(contact_id))
    # a number is searched for in a request body, never in the address (which ends up in logs)
    resp = await api.client.get(f"/api/v1/lists/{list_id}/contacts?phone=%2B358401110101", headers=s.supervisor)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "phone"
    resp = await api.client.post(
        f"/api/v1/lists/{list_id}/contacts/search", json={"phone": "040 1110101"}, headers=s.supervisor
    )
    assert resp.status == 200 and [c["id"] for c in (await resp.json())["items"]] == [contact_id]
    (row,) = await api.audit_rows("contact.list")
    assert (row["object_type"], row["object_id"], row["details"]) == ("contact_list", str(list_id), {"contacts": 1})
    resp = await api.client.post(
        f"/api/v1/lists/{s.other['list_id']}/contacts/search", json={"phone": NUMBERS[1]}, headers=s.supervisor
    )
    assert resp.status == 403 and (await resp.json())["details"]["field"] == "list_id"
    _no_personal_data(await _audit_text(api))


async def test_do_not_call_numbers_are_searched_in_the_body_and_audited(api: Api) -> None:
    s = await _scene(api)
    await api.pool.execute("INSERT INTO dnc_entries (phone_e164, source) VALUES ($1, 'manual')", NUMBERS[0])
    resp = await api.client.get("/api/v1/dnc?phone=%2B358401110101", headers=s.admin)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "phone"
    resp = await api.client.post("/api/v1/dnc/search", json={"phone": NUMBERS[0]}, headers=s.admin)
    assert resp.status == 200 and [e["phone"] for e in (await resp.json())["items"]] == [NUMBERS[0]]
    resp = await api.client.post("/api/v1/dnc/search", json={"phone": NUMBERS[1]}, headers=s.admin)
    assert resp.status == 200 and (await resp.json())["items"] == []
    resp = await api.client.post("/api/v1/dnc/search", json={"scope": "campaign"}, headers=s.admin)
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "campaign_id"
    (row,) = await api.audit_rows("dnc.list")
    assert row["details"] == {"entries": 1}
    _no_personal_data(await _audit_text(api))


class _Transfers:
    async def start(self, agent_id: int, kind: TransferKind, target: Target) -> Transfer:
        return Transfer(
            attempt_id=str(uuid.uuid4()),
            kind=kind,
            target=target,
            from_agent_id=agent_id,
            to_agent_id=None,
            state=TransferState.DIALING,
            started_at=datetime.now(UTC),
        )


class _Engine:
    """The dialing engine's parts a transfer's control uses."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.transfers = _Transfers()


async def test_a_transfer_to_a_number_audits_no_number(db: Any) -> None:
    control = EngineControl(_Engine(db), sessions=None)  # type: ignore[arg-type]  # only transfer is used
    actor = Actor("agent1", "agent", "192.0.2.7")
    status = await control.transfer(7, "blind", {"number": NUMBERS[1]}, actor=actor)
    assert status.number == NUMBERS[1], "the caller is told the number it gave"
    await control.transfer(7, "attended", {"agent_id": 12}, actor=actor)
    rows = await db.fetch("SELECT details FROM audit_log WHERE action = 'call.transfer' ORDER BY id")
    assert [(r["details"]["kind"], r["details"]["target"]) for r in rows] == [
        ("blind", "number"),
        ("attended", "agent:12"),
    ]
    _no_personal_data(
        await db.fetchval("SELECT string_agg(concat_ws('|', actor, object_id, details::text), E'\\n') FROM audit_log")
    )
