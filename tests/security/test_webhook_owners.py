"""Webhook subscriptions have owners: an integration user lists, sees, changes, deletes and
replays only its own (someone else's answers 404, exactly like one that does not exist);
admins reach all and choose owners; URL and owner changes are audited with the old and
new value; subscriptions made before owners existed are admin-owned; the server's
`hitcall webhooks replay/stats` commands stay admin-level."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from hitcall_pbx.auth import Role
from hitcall_pbx.hooks import command as webhooks_command
from hitcall_pbx.settings import Settings
from hitcall_pbx.store import migrations
from hitcall_pbx.store.db import connect, dsn_with_database
from tests.integration.test_api_support import Api, api  # noqa: F401  (fixture)

SUBS = "/api/v1/webhooks/subscriptions"


async def _integration(api: Api, name: str) -> tuple[int, dict[str, str]]:
    uid = await api.user(name, Role.INTEGRATION, password=None)
    return uid, await api.token(uid)


async def _create(api: Api, headers: dict[str, str], url: str, **extra: object) -> dict:
    resp = await api.client.post(SUBS, json={"url": url, "event_types": ["*"], **extra}, headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _dead_delivery(api: Api, subscription_id: int) -> int:
    outbox = await api.pool.fetchval(
        "INSERT INTO webhook_outbox (event_type, subject, payload, dispatched_at)"
        " VALUES ('call.ended', $1, '{}', now()) RETURNING id",
        f"contact:{subscription_id}",
    )
    return await api.pool.fetchval(
        "INSERT INTO webhook_deliveries (outbox_id, subscription_id, state) VALUES ($1, $2, 'dead') RETURNING id",
        outbox,
        subscription_id,
    )


async def test_integration_users_reach_only_their_own_subscriptions(api: Api) -> None:
    a_id, a = await _integration(api, "crm-a")
    b_id, b = await _integration(api, "crm-b")
    admin = await api.as_role(Role.ADMIN)
    sub_a = await _create(api, a, "https://a.crm.example/hooks")
    sub_b = await _create(api, b, "https://b.crm.example/hooks")
    sub_admin = await _create(api, admin, "https://ops.example/hooks")
    assert (sub_a["owner_id"], sub_b["owner_id"], sub_admin["owner_id"]) == (a_id, b_id, None)

    async def ids(headers: dict[str, str]) -> list[int]:
        return [s["id"] for s in (await (await api.client.get(SUBS, headers=headers)).json())["items"]]

    assert await ids(a) == [sub_a["id"]]
    assert await ids(b) == [sub_b["id"]]
    assert await ids(admin) == [sub_a["id"], sub_b["id"], sub_admin["id"]]

    # someone else's subscription is not found, exactly like one that does not exist
    missing = 987654
    for foreign in (sub_b["id"], sub_admin["id"], missing):
        for method, body in (("GET", None), ("PATCH", {"active": False}), ("DELETE", None)):
            resp = await api.client.request(method, f"{SUBS}/{foreign}", json=body, headers=a)
            payload = await resp.json()
            assert resp.status == 404, (method, foreign)
            assert payload == {
                "error": "not_found",
                "message": f"webhook subscription {foreign} not found",
                "details": None,
            }
    rows = await api.pool.fetch("SELECT id, active FROM webhook_subscriptions ORDER BY id")
    assert [(r["id"], r["active"]) for r in rows] == [(sub_a["id"], True), (sub_b["id"], True), (sub_admin["id"], True)]
    assert (
        await api.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action LIKE 'webhook_subscription.%'"
            " AND action <> 'webhook_subscription.create'"
        )
        == 0
    )

    # deliveries: listed, filtered and replayed only for one's own subscriptions
    dead_a, dead_b = await _dead_delivery(api, sub_a["id"]), await _dead_delivery(api, sub_b["id"])
    listed = await (await api.client.get("/api/v1/webhooks/deliveries", headers=a)).json()
    assert [d["id"] for d in listed["items"]] == [dead_a]
    listed = await (
        await api.client.get(f"/api/v1/webhooks/deliveries?subscription_id={sub_b['id']}", headers=a)
    ).json()
    assert listed["items"] == []
    resp = await api.client.post("/api/v1/webhooks/deliveries/replay", json={"delivery_ids": [dead_b]}, headers=a)
    assert resp.status == 404 and (await resp.json())["details"]["missing"] == [dead_b]
    resp = await api.client.post(
        "/api/v1/webhooks/deliveries/replay", json={"delivery_ids": [dead_a, dead_b]}, headers=a
    )
    assert resp.status == 404 and (await resp.json())["details"]["missing"] == [dead_b]
    assert api.replay.replayed == []  # nothing replayed when any id is not the caller's
    resp = await api.client.post("/api/v1/webhooks/deliveries/replay", json={"delivery_ids": [dead_a]}, headers=a)
    assert resp.status == 200 and [r[0] for r in api.replay.replayed] == [[dead_a]]
    listed = await (await api.client.get("/api/v1/webhooks/deliveries", headers=admin)).json()
    assert [d["id"] for d in listed["items"]] == [dead_a, dead_b]
    resp = await api.client.post("/api/v1/webhooks/deliveries/replay", json={"delivery_ids": [dead_b]}, headers=admin)
    assert resp.status == 200

    # the owner may change and delete its own
    resp = await api.client.patch(f"{SUBS}/{sub_a['id']}", json={"active": False}, headers=a)
    assert resp.status == 200 and (await resp.json())["active"] is False
    assert (await api.client.delete(f"{SUBS}/{sub_a['id']}", headers=a)).status == 204


async def test_owners_are_chosen_by_admins_only_and_bad_input_writes_nothing(api: Api) -> None:
    a_id, a = await _integration(api, "crm-a")
    b_id, b = await _integration(api, "crm-b")
    admin = await api.as_role(Role.ADMIN)
    supervisor = await api.user("sup", Role.SUPERVISOR)

    for body in ({"owner_id": b_id}, {"owner_id": None}):
        resp = await api.client.post(
            SUBS, json={"url": "https://a.crm.example/", "event_types": ["*"], **body}, headers=a
        )
        assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "owner_id"
    own = await _create(api, a, "https://a.crm.example/", owner_id=a_id)  # naming oneself is fine
    assert own["owner_id"] == a_id
    for body in ({"owner_id": b_id}, {"owner_id": None}):
        resp = await api.client.patch(f"{SUBS}/{own['id']}", json=body, headers=a)
        assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "owner_id"
    for bad in (supervisor, 999999):  # not an integration user / no such user
        resp = await api.client.post(
            SUBS, json={"url": "https://x.example/", "event_types": ["*"], "owner_id": bad}, headers=admin
        )
        assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "owner_id"
    assert await api.pool.fetchval("SELECT count(*) FROM webhook_subscriptions") == 1
    assert await api.pool.fetchval("SELECT owner_id FROM webhook_subscriptions") == a_id

    # an admin creates one for B and hands A's over to B
    for_b = await _create(api, admin, "https://b.crm.example/", owner_id=b_id)
    assert for_b["owner_id"] == b_id
    resp = await api.client.patch(f"{SUBS}/{own['id']}", json={"owner_id": b_id}, headers=admin)
    assert resp.status == 200 and (await resp.json())["owner_id"] == b_id
    assert (await api.client.get(f"{SUBS}/{own['id']}", headers=a)).status == 404
    assert (await api.client.get(f"{SUBS}/{own['id']}", headers=b)).status == 200
    change = await api.pool.fetchrow(
        "SELECT * FROM audit_log WHERE action = 'webhook_subscription.update' ORDER BY id DESC LIMIT 1"
    )
    assert change["details"]["owner_id"] == {"old": a_id, "new": b_id}


async def test_url_changes_are_audited_with_old_and_new_value(api: Api) -> None:
    _, a = await _integration(api, "crm-a")
    sub = await _create(api, a, "https://crm.example/hooks?token=s3cret")
    resp = await api.client.patch(
        f"{SUBS}/{sub['id']}", json={"url": "https://user:pw@crm2.example/v2/hooks?token=n3w&x"}, headers=a
    )
    assert resp.status == 200
    rows = await api.pool.fetch(
        "SELECT action, details FROM audit_log WHERE object_type = 'webhook_subscription' ORDER BY id"
    )
    create, update = rows
    assert create["details"]["url"] == "https://crm.example/hooks?token=***"
    assert update["details"]["url"] == {
        "old": "https://crm.example/hooks?token=***",
        "new": "https://user:***@crm2.example/v2/hooks?token=***&x",
    }
    assert update["details"]["fields"] == ["url"]
    text = json.dumps([dict(r["details"]) for r in rows])
    assert "s3cret" not in text and "n3w" not in text and ":pw@" not in text
    # a change that leaves the URL as it was records no URL change
    await api.client.patch(f"{SUBS}/{sub['id']}", json={"active": False}, headers=a)
    last = await api.pool.fetchrow("SELECT details FROM audit_log ORDER BY id DESC LIMIT 1")
    assert last["details"] == {"fields": ["active"]}
    assert (await api.client.delete(f"{SUBS}/{sub['id']}", headers=a)).status == 204
    last = await api.pool.fetchrow("SELECT action, details FROM audit_log ORDER BY id DESC LIMIT 1")
    assert last["action"] == "webhook_subscription.delete"
    assert last["details"]["url"] == "https://user:***@crm2.example/v2/hooks?token=***&x"


async def test_subscriptions_made_before_owners_are_admin_owned(empty_db_dsn: str, tmp_path: Path) -> None:
    before = tmp_path / "before-0007"
    before.mkdir()
    for m in migrations.load():
        if m.version < 7:
            shutil.copy(m.path, before)
    conn = await connect(empty_db_dsn)
    try:
        await migrations.apply(conn, before)
        sid = await conn.fetchval(
            "INSERT INTO webhook_subscriptions (url, secret, event_types)"
            " VALUES ('https://crm.example/h', 'whsec_c2VjcmV0c2VjcmV0c2VjcmV0', '{*}') RETURNING id"
        )
        outbox = await conn.fetchval(
            "INSERT INTO webhook_outbox (event_type, subject, payload)"
            " VALUES ('call.ended', 'call:1', '{}') RETURNING id"
        )
        for error in ("ClientConnectorError: Cannot connect to host 10.0.0.5:5432 ssl:default", "HTTP 503"):
            await conn.execute(
                "INSERT INTO webhook_deliveries (outbox_id, subscription_id, state, last_error)"
                " VALUES ($1, $2, 'dead', $3)",
                outbox,
                sid,
                error,
            )
            outbox = await conn.fetchval(
                "INSERT INTO webhook_outbox (event_type, subject, payload) VALUES ('call.ended', 'call:2', '{}')"
                " RETURNING id"
            )
        await migrations.apply(conn)
        assert await conn.fetchval("SELECT owner_id FROM webhook_subscriptions WHERE id = $1", sid) is None
        errors = [r["last_error"] for r in await conn.fetch("SELECT last_error FROM webhook_deliveries ORDER BY id")]
        assert errors == ["connection failed", "HTTP 503"]
    finally:
        await conn.close()


def _last_json(out: str) -> dict:
    """The command's JSON answer: its last line (log lines may come before it)."""
    return json.loads(out.strip().splitlines()[-1])


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hitcall")
    webhooks_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def test_cli_replay_and_stats_stay_admin_level(api: Api, pg_dsn: str, capsys) -> None:
    """The server's shell is the operator's: `hitcall webhooks` reaches every owner's deliveries."""
    _, a = await _integration(api, "crm-a")
    _, b = await _integration(api, "crm-b")
    sub_a = await _create(api, a, "https://a.crm.example/")
    sub_b = await _create(api, b, "https://b.crm.example/")
    dead_a, dead_b = await _dead_delivery(api, sub_a["id"]), await _dead_delivery(api, sub_b["id"])
    settings = Settings(database_url=dsn_with_database(pg_dsn, await api.pool.fetchval("SELECT current_database()")))

    assert await webhooks_command.run(settings, _args(["webhooks", "stats"])) == 0
    assert _last_json(capsys.readouterr().out)["dead"] == 2
    assert await webhooks_command.run(settings, _args(["webhooks", "replay", "--subscription", str(sub_b["id"])])) == 0
    assert _last_json(capsys.readouterr().out) == {"replayed": [dead_b]}
    assert await webhooks_command.run(settings, _args(["webhooks", "replay", "--id", str(dead_a)])) == 0
    assert _last_json(capsys.readouterr().out) == {"replayed": [dead_a]}
    rows = await api.pool.fetch("SELECT actor, actor_role FROM audit_log WHERE action = 'webhook.replay'")
    assert len(rows) == 2 and {r["actor_role"] for r in rows} == {"system"}
    assert all(r["actor"].startswith("cli:") for r in rows)
