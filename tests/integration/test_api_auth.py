"""Logins, sessions, throttling, API tokens, users and the `hitcall user` command, on the
real app and embedded Postgres; every login and change leaves its audit row."""

from __future__ import annotations

import argparse
import hashlib
import io

import pytest

from hitcall_pbx.auth import Role
from hitcall_pbx.auth import command as user_command
from hitcall_pbx.settings import Settings
from hitcall_pbx.store.db import dsn_with_database

from .test_api_support import FAST_PASSWORDS, PASSWORD, Api, api  # noqa: F401  (fixture)

LOGIN = "/api/v1/auth/login"


async def _login(api: Api, username: str, password: str) -> tuple[int, dict]:
    resp = await api.client.post(LOGIN, json={"username": username, "password": password})
    return resp.status, await resp.json()


async def test_login_issues_session_stored_as_sha256_and_audited(api: Api) -> None:
    uid = await api.user("Maija", Role.SUPERVISOR)
    status, body = await _login(api, "maija", PASSWORD)  # usernames are case-insensitive
    assert status == 200
    assert body["token_type"] == "bearer" and body["role"] == "supervisor" and body["user_id"] == uid
    token = body["token"]
    assert token.startswith("hcs_") and len(token) > 40
    stored = await api.pool.fetch("SELECT token_hash, expires_at FROM sessions WHERE user_id = $1", uid)
    assert [r["token_hash"] for r in stored] == [hashlib.sha256(token.encode()).hexdigest()]
    assert await api.pool.fetchval("SELECT count(*) FROM sessions WHERE token_hash = $1", token) == 0
    rows = await api.audit_rows("auth.login")
    assert len(rows) == 1
    assert (rows[0]["actor"], rows[0]["actor_role"], rows[0]["object_id"], rows[0]["ip"]) == (
        "Maija",
        "supervisor",
        str(uid),
        "127.0.0.1",
    )
    me = await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.json())["username"] == "Maija"


async def test_failed_logins_are_audited_and_do_not_reveal_users(api: Api) -> None:
    await api.user("pekka", Role.ADMIN)
    wrong = await _login(api, "pekka", "wrong password!")
    unknown = await _login(api, "nobody", "wrong password!")
    assert wrong[0] == unknown[0] == 401
    assert (
        wrong[1]
        == unknown[1]
        == {"error": "invalid_credentials", "message": "invalid username or password", "details": None}
    )
    rows = await api.audit_rows("auth.login_failed")
    assert [(r["actor"], r["details"]["reason"], r["ip"]) for r in rows] == [
        ("pekka", "bad_credentials", "127.0.0.1"),
        ("unknown", "bad_credentials", "127.0.0.1"),  # the text typed as a user name is not kept
    ]
    assert await api.pool.fetchval("SELECT failed_logins FROM users WHERE username = 'pekka'") == 1


async def test_five_failures_lock_the_user_for_five_minutes(api: Api) -> None:
    await api.user("liisa", Role.AGENT)
    for _ in range(4):
        assert (await _login(api, "liisa", "not the password"))[0] == 401
    status, body = await _login(api, "liisa", "not the password")
    assert status == 401
    locked_until = await api.pool.fetchval("SELECT locked_until FROM users WHERE username = 'liisa'")
    assert locked_until is not None
    # even the right password is refused while locked (from this client: see tests/security)
    resp = await api.client.post(LOGIN, json={"username": "liisa", "password": PASSWORD})
    assert resp.status == 429
    body = await resp.json()
    assert body["error"] == "login_locked" and 0 < body["details"]["retry_after_s"] <= 301
    assert resp.headers["Retry-After"] == str(body["details"]["retry_after_s"])
    last = (await api.audit_rows("auth.login_failed"))[-1]["details"]
    assert (last["reason"], last["locked"]) == ("bad_credentials", ["user"])
    api.clock.advance(minutes=5, seconds=1)
    status, _ = await _login(api, "liisa", PASSWORD)
    assert status == 200
    row = await api.pool.fetchrow("SELECT failed_logins, locked_until FROM users WHERE username = 'liisa'")
    assert (row["failed_logins"], row["locked_until"]) == (0, None)
    [summary] = await api.audit_rows("auth.login_throttled")
    assert (summary["actor"], summary["details"]["refused"]) == ("liisa", 1)


async def test_an_address_with_many_failures_is_refused(api: Api) -> None:
    await api.user("ville", Role.SUPERVISOR)
    limit = api.deps.throttle.ip_max_failures
    for i in range(limit):
        assert (await _login(api, f"guess{i}", "whatever pass"))[0] == 401
    resp = await api.client.post(LOGIN, json={"username": "ville", "password": PASSWORD})
    assert resp.status == 429
    assert (await resp.json())["error"] == "login_throttled"
    assert (await api.audit_rows("auth.login_failed"))[-1]["details"]["locked"] == ["client"]
    api.clock.advance(seconds=api.deps.throttle.lock_s + 1)
    assert (await _login(api, "ville", PASSWORD))[0] == 200


async def test_an_admin_unlock_clears_the_lock_for_every_client(api: Api) -> None:
    uid = await api.user("outi", Role.SUPERVISOR)
    for _ in range(api.deps.throttle.max_failures):
        await _login(api, "outi", "not the password")
    assert (await _login(api, "outi", PASSWORD))[0] == 429
    admin = await api.as_role(Role.ADMIN)
    resp = await api.client.patch(f"/api/v1/users/{uid}", json={"unlock": True}, headers=admin)
    assert resp.status == 200
    assert (await _login(api, "outi", PASSWORD))[0] == 200


async def test_disabled_user_cannot_log_in(api: Api) -> None:
    uid = await api.user("olli", Role.COMPLIANCE)
    admin = await api.as_role(Role.ADMIN)
    resp = await api.client.patch(f"/api/v1/users/{uid}", json={"disabled": True}, headers=admin)
    assert resp.status == 200 and (await resp.json())["disabled"] is True
    status, body = await _login(api, "olli", PASSWORD)
    assert status == 401 and body["error"] == "invalid_credentials"
    assert (await api.audit_rows("auth.login_failed"))[-1]["details"] == {"reason": "disabled"}


async def test_logout_revokes_the_session(api: Api) -> None:
    await api.user("anna", Role.SUPERVISOR)
    headers = await api.login("anna")
    resp = await api.client.post("/api/v1/auth/logout", headers=headers)
    assert resp.status == 204
    assert (await api.client.get("/api/v1/me", headers=headers)).status == 401
    assert len(await api.audit_rows("auth.logout")) == 1
    token_headers = await api.as_role(Role.INTEGRATION)
    resp = await api.client.post("/api/v1/auth/logout", headers=token_headers)
    assert resp.status == 409 and (await resp.json())["error"] == "not_a_session"


async def test_change_own_password_ends_other_sessions(api: Api) -> None:
    await api.user("kalle", Role.SUPERVISOR)
    first, second = await api.login("kalle"), await api.login("kalle")
    resp = await api.client.post(
        "/api/v1/me/password", json={"current_password": "nope", "new_password": "x" * 12}, headers=first
    )
    assert resp.status == 422 and (await resp.json())["details"]["fields"][0]["field"] == "current_password"
    resp = await api.client.post(
        "/api/v1/me/password", json={"current_password": PASSWORD, "new_password": "a new passphrase"}, headers=first
    )
    assert resp.status == 204
    assert (await api.client.get("/api/v1/me", headers=first)).status == 200
    assert (await api.client.get("/api/v1/me", headers=second)).status == 401
    assert (await _login(api, "kalle", PASSWORD))[0] == 401
    assert (await _login(api, "kalle", "a new passphrase"))[0] == 200


async def test_users_api(api: Api) -> None:
    admin = await api.as_role(Role.ADMIN)
    resp = await api.client.post(
        "/api/v1/users", json={"username": "sari", "role": "compliance", "password": "long enough pw"}, headers=admin
    )
    assert resp.status == 201
    user = await resp.json()
    assert user["role"] == "compliance" and user["has_password"] is True and "password_hash" not in user
    phc = await api.pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert phc.startswith("$argon2id$")
    resp = await api.client.post("/api/v1/users", json={"username": "SARI", "role": "agent"}, headers=admin)
    assert resp.status == 409 and (await resp.json())["details"]["field"] == "username"
    resp = await api.client.post(
        "/api/v1/users", json={"username": "-bad", "role": "boss", "password": "short"}, headers=admin
    )
    assert resp.status == 422
    fields = {f["field"] for f in (await resp.json())["details"]["fields"]}
    assert fields == {"username", "role", "password"}
    resp = await api.client.patch(f"/api/v1/users/{user['id']}", json={"role": "supervisor"}, headers=admin)
    assert (await resp.json())["role"] == "supervisor"
    resp = await api.client.patch(f"/api/v1/users/{user['id']}", json={"role": None}, headers=admin)
    assert resp.status == 422
    assert (await api.client.get("/api/v1/users/999999", headers=admin)).status == 404
    listed = await (await api.client.get("/api/v1/users", headers=admin)).json()
    assert "sari" in [u["username"] for u in listed["items"]]
    actions = [
        r["action"]
        for r in await api.pool.fetch(
            "SELECT action FROM audit_log WHERE object_type = 'user' AND object_id = $1 ORDER BY id", str(user["id"])
        )
    ]
    assert actions == ["user.create", "user.update"]


async def test_last_admin_cannot_be_disabled(api: Api) -> None:
    await api.user("root-admin", Role.ADMIN)
    headers = await api.login("root-admin")
    uid = (await (await api.client.get("/api/v1/me", headers=headers)).json())["user_id"]
    resp = await api.client.patch(f"/api/v1/users/{uid}", json={"disabled": True}, headers=headers)
    assert resp.status == 409
    assert await api.pool.fetchval("SELECT disabled FROM users WHERE id = $1", uid) is False


async def test_api_tokens_are_shown_once_and_stored_hashed(api: Api) -> None:
    admin = await api.as_role(Role.ADMIN)
    crm = await api.user("crm", Role.INTEGRATION, password=None)
    resp = await api.client.post(
        "/api/v1/tokens",
        json={"user_id": crm, "name": "CRM sync", "scopes": ["contacts:write", "campaigns:read"]},
        headers=admin,
    )
    assert resp.status == 201
    created = await resp.json()
    token = created["token"]
    assert token.startswith("hct_") and created["prefix"] == token[:12]
    assert created["scopes"] == ["campaigns:read", "contacts:write"]
    assert await api.pool.fetchval("SELECT token_hash FROM api_tokens WHERE id = $1", created["id"]) == (
        hashlib.sha256(token.encode()).hexdigest()
    )
    got = await (await api.client.get(f"/api/v1/tokens/{created['id']}", headers=admin)).json()
    assert "token" not in got and got["name"] == "CRM sync"
    listed = await (await api.client.get(f"/api/v1/tokens?user_id={crm}", headers=admin)).json()
    assert [t["id"] for t in listed["items"]] == [created["id"]]
    bearer = {"Authorization": f"Bearer {token}"}
    me = await (await api.client.get("/api/v1/me", headers=bearer)).json()
    assert me["token_id"] == created["id"] and me["role"] == "integration"
    assert (await api.client.delete(f"/api/v1/tokens/{created['id']}", headers=admin)).status == 204
    assert (await api.client.get("/api/v1/me", headers=bearer)).status == 401
    assert [
        r["action"]
        for r in await api.pool.fetch("SELECT action FROM audit_log WHERE object_type = 'api_token' ORDER BY id")
    ][-2:] == ["token.create", "token.revoke"]
    scopes = await (await api.client.get("/api/v1/tokens/scopes", headers=admin)).json()
    assert "users:write" in scopes["by_role"]["admin"] and "users:write" not in scopes["by_role"]["integration"]


async def test_login_body_validation(api: Api) -> None:
    resp = await api.client.post(LOGIN, json={"username": "x"})
    assert resp.status == 422
    assert [f["field"] for f in (await resp.json())["details"]["fields"]] == ["password"]
    assert await api.pool.fetchval("SELECT count(*) FROM audit_log") == 0


# ----------------------------------------------------------------------------- CLI


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hitcall")
    user_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


async def test_cli_user_add_passwd_disable(
    api: Api, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=dsn_with_database(pg_dsn, await api.pool.fetchval("SELECT current_database()")))

    monkeypatch.setattr("sys.stdin", io.StringIO("first password 1\n"))
    code = await user_command.run(
        settings, _args(["user", "add", "tiina", "--role", "supervisor", "--password-stdin"]), passwords=FAST_PASSWORDS
    )
    assert code == 0
    assert "created user tiina" in capsys.readouterr().out
    assert (await _login(api, "tiina", "first password 1"))[0] == 200

    monkeypatch.setattr("sys.stdin", io.StringIO("second password 2\n"))
    code = await user_command.run(
        settings, _args(["user", "passwd", "tiina", "--password-stdin"]), passwords=FAST_PASSWORDS
    )
    assert code == 0
    assert (await _login(api, "tiina", "first password 1"))[0] == 401
    assert (await _login(api, "tiina", "second password 2"))[0] == 200

    code = await user_command.run(settings, _args(["user", "disable", "tiina"]), passwords=FAST_PASSWORDS)
    assert code == 0
    assert (await _login(api, "tiina", "second password 2"))[0] == 401
    rows = await api.pool.fetch("SELECT actor, actor_role, action FROM audit_log WHERE actor LIKE 'cli:%' ORDER BY id")
    assert [(r["actor_role"], r["action"]) for r in rows] == [
        ("system", "user.create"),
        ("system", "user.update"),
        ("system", "user.update"),
    ]

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code = await user_command.run(
        settings, _args(["user", "add", "x1", "--role", "agent", "--password-stdin"]), passwords=FAST_PASSWORDS
    )
    assert code == 2
    assert "password must be" in capsys.readouterr().err
    code = await user_command.run(settings, _args(["user", "disable", "ghost"]), passwords=FAST_PASSWORDS)
    assert code == 2
    assert "not found" in capsys.readouterr().err
