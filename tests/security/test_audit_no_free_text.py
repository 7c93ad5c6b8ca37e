"""The append-only audit log holds no free text that could name a person: complaint case ids
are identifiers (checked by the API, the domain and the schema), hold and skip reasons and
names stay in rows that can be erased, and the audit rows carry ids and codes only."""

from __future__ import annotations

import asyncpg
import pytest

from hitcall_pbx.auth import Actor, Role
from hitcall_pbx.dialer.control import EngineControl
from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.records.retention_ops import RetentionOps
from tests.security.service_api import ServiceApi, seed_recorded_call, service_api  # noqa: F401

NAME = "Matti Virtanen"
SURNAME = "Virtanen"


async def audit_text(pool: asyncpg.Pool) -> str:
    return await pool.fetchval(
        "SELECT coalesce(string_agg(concat_ws('|', actor, object_type, object_id, details::text), E'\\n'), '')"
        " FROM audit_log"
    )


async def test_case_id_must_be_an_identifier_and_bad_input_writes_nothing(service_api: ServiceApi, tmp_path) -> None:
    api = service_api
    seeded = await seed_recorded_call(api.pool, api.store, tmp_path, number="+358401234567", name=NAME)
    rec = seeded["recording"].id
    headers = await api.login_as(Role.COMPLIANCE)
    audit_before = await api.pool.fetchval("SELECT count(*) FROM audit_log")
    for bad in (NAME, "case 17", "C" * 65, "", "ä-1", "C-1\n"):
        resp = await api.client.post(
            f"/api/v1/recordings/{rec}/hold", json={"reason": "complaint", "case_id": bad}, headers=headers
        )
        assert resp.status == 422, bad
        body = await resp.json()
        assert [f["field"] for f in body["details"]["fields"]] == ["case_id"], bad
    assert await api.pool.fetchval("SELECT count(*) FROM audit_log") == audit_before
    assert await api.pool.fetchval("SELECT held_until FROM recordings WHERE id = $1", rec) is None

    # the domain refuses it too (CLI and other callers), and so does the schema
    with pytest.raises(ValidationFailed) as err:
        await RetentionOps(api.pool, api.store).hold(
            rec, until=None, reason="complaint", case_id=NAME, actor=Actor("dpo", "compliance")
        )
    assert err.value.details == {"field": "case_id"}
    with pytest.raises(asyncpg.CheckViolationError):
        await api.pool.execute("UPDATE recordings SET hold_case_id = $2 WHERE id = $1", rec, NAME)

    # a reason naming the person is kept on the recording (released or erased with it), not audited
    resp = await api.client.post(
        f"/api/v1/recordings/{rec}/hold",
        json={"reason": f"complaint by {NAME} about the sale", "case_id": "CASE-2025/17"},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["hold_case_id"] == "CASE-2025/17"
    assert (await api.client.post(f"/api/v1/recordings/{rec}/release", headers=headers)).status == 200
    rows = await api.pool.fetch(
        "SELECT action, details FROM audit_log WHERE object_type = 'recording' AND object_id = $1 ORDER BY id",
        str(rec),
    )
    assert [r["action"] for r in rows][-2:] == ["recording.hold", "recording.release"]
    assert rows[-2]["details"]["case_id"] == "CASE-2025/17"
    assert SURNAME not in await audit_text(api.pool)
    assert await api.pool.fetchval("SELECT hold_reason FROM recordings WHERE id = $1", rec) is None


async def test_free_text_fields_through_the_api_stay_out_of_the_audit_log(service_api: ServiceApi) -> None:
    api = service_api
    admin = await api.login_as(Role.ADMIN)

    async def ok(method: str, path: str, body: dict, status: int = 201) -> dict:
        resp = await api.client.request(method, path, json=body, headers=admin)
        assert resp.status == status, (path, await resp.text())
        return await resp.json() if resp.status != 204 else {}

    campaign = await ok(
        "POST", "/api/v1/campaigns", {"name": f"Callback {NAME}", "mode": "progressive", "caller_id": "+358201234567"}
    )
    await ok("PATCH", f"/api/v1/campaigns/{campaign['id']}", {"name": f"Again {NAME}"}, 200)
    lst = await ok("POST", "/api/v1/lists", {"name": f"List of {NAME}"})
    await ok("PATCH", f"/api/v1/lists/{lst['id']}", {"name": f"{NAME} list"}, 200)
    contact = await ok("POST", f"/api/v1/lists/{lst['id']}/contacts", {"phone": "040 7654321", "name": NAME})
    await ok("PATCH", f"/api/v1/contacts/{contact['id']}", {"name": f"{NAME} Jr"}, 200)
    await ok("POST", "/api/v1/dnc", {"phone": "040 7654322", "reason": f"{NAME} asked"})
    agent = await ok("POST", "/api/v1/agents", {"number": "555", "name": NAME})
    await ok("PATCH", f"/api/v1/agents/{agent['id']}", {"name": f"{NAME} 2"}, 200)
    crm = await ok("POST", "/api/v1/users", {"username": "crm1", "role": "integration"})
    await ok("POST", "/api/v1/tokens", {"user_id": crm["id"], "name": f"token of {NAME}", "scopes": ["campaigns:read"]})

    actions = [r["action"] for r in await api.pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    for expected in ("campaign.create", "contact_list.create", "contact.create", "dnc.add", "agent.create"):
        assert expected in actions
    assert SURNAME not in await audit_text(api.pool)


class _Engine:
    """The dialing engine's one method this adapter calls; the offer row holds the reason."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.skipped: list[tuple[int, str]] = []

    async def skip_offer(self, agent_id: int, reason: str) -> int:
        self.skipped.append((agent_id, reason))
        return 4242


async def test_preview_skip_reason_is_not_audited(db: asyncpg.Pool) -> None:
    engine = _Engine(db)
    control = EngineControl(engine, sessions=None)  # type: ignore[arg-type]  # only skip_offer is used
    actor = Actor("agent1", "agent", "192.0.2.7")
    await control.skip_offer(7, f"{NAME} asked to call next week", actor=actor)
    assert engine.skipped == [(7, f"{NAME} asked to call next week")]
    row = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'preview.skip'")
    assert row["object_type"] == "agent" and row["object_id"] == "7"
    assert row["details"] == {"offer_id": "4242"}
    assert SURNAME not in await audit_text(db)
