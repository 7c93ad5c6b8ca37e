"""API tokens end with their user's password and with its disabling: a password reset, a
change of one's own password and a disable revoke them for good (enabling the user again
revives none), each revocation audited with its reason."""

from __future__ import annotations

from hitcall_pbx.auth import Role
from tests.integration.test_api_support import PASSWORD, Api, api  # noqa: F401  (fixture)

ME = "/api/v1/me"


async def _status(api: Api, headers: dict[str, str]) -> int:
    return (await api.client.get(ME, headers=headers)).status


async def _revocations(api: Api, user_id: int) -> list[tuple[str, str]]:
    rows = await api.pool.fetch(
        "SELECT object_id, details FROM audit_log WHERE action = 'token.revoke'"
        " AND (details->>'user_id')::bigint = $1 ORDER BY id",
        user_id,
    )
    return [(r["object_id"], r["details"]["reason"]) for r in rows]


async def _token_id(headers: dict[str, str], api: Api) -> int:
    return (await (await api.client.get(ME, headers=headers)).json())["token_id"]


async def test_password_reset_by_admin_revokes_the_users_tokens(api: Api) -> None:
    admin = await api.as_role(Role.ADMIN)
    uid = await api.user("sue", Role.SUPERVISOR)
    token, spare = await api.token(uid), await api.token(uid)
    bystander = await api.token(await api.user("bob", Role.SUPERVISOR))
    ids = sorted([await _token_id(token, api), await _token_id(spare, api)])
    # a role change or an unlock leaves the tokens alone
    resp = await api.client.patch(f"/api/v1/users/{uid}", json={"unlock": True}, headers=admin)
    assert resp.status == 200 and await _status(api, token) == 200

    resp = await api.client.patch(f"/api/v1/users/{uid}", json={"password": "a brand new password"}, headers=admin)
    assert resp.status == 200
    assert await _status(api, token) == 401 and await _status(api, spare) == 401
    assert await _status(api, bystander) == 200
    assert await _revocations(api, uid) == [(str(i), "password_reset") for i in ids]
    update = await api.pool.fetchrow(
        "SELECT * FROM audit_log WHERE action = 'user.update' AND object_id = $1 ORDER BY id DESC LIMIT 1", str(uid)
    )
    assert update["details"]["tokens_revoked"] == ids and "password" in update["details"]["fields"]
    listed = await (await api.client.get(f"/api/v1/tokens?user_id={uid}", headers=admin)).json()
    assert all(t["revoked_at"] is not None for t in listed["items"])


async def test_disable_then_enable_does_not_revive_tokens_or_sessions(api: Api) -> None:
    admin = await api.as_role(Role.ADMIN)
    uid = await api.user("crm-user", Role.SUPERVISOR)
    token = await api.token(uid)
    session = await api.login("crm-user")
    token_id = await _token_id(token, api)

    resp = await api.client.patch(f"/api/v1/users/{uid}", json={"disabled": True}, headers=admin)
    assert resp.status == 200
    resp = await api.client.patch(f"/api/v1/users/{uid}", json={"disabled": False}, headers=admin)
    assert resp.status == 200 and (await resp.json())["disabled"] is False

    assert await _status(api, token) == 401
    assert await _status(api, session) == 401
    assert await _revocations(api, uid) == [(str(token_id), "user_disabled")]
    # the user can log in again and be given a new token
    assert await _status(api, await api.login("crm-user")) == 200
    assert await _status(api, await api.token(uid)) == 200


async def test_changing_ones_own_password_revokes_ones_tokens_but_keeps_this_session(api: Api) -> None:
    uid = await api.user("amy", Role.SUPERVISOR)
    token = await api.token(uid)
    token_id = await _token_id(token, api)
    session, other_session = await api.login("amy"), await api.login("amy")
    resp = await api.client.post(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "another long password"},
        headers=session,
    )
    assert resp.status == 204, await resp.text()
    assert await _status(api, token) == 401
    assert await _status(api, other_session) == 401
    assert await _status(api, session) == 200
    assert await _revocations(api, uid) == [(str(token_id), "password_changed")]
    row = await api.pool.fetchrow("SELECT details FROM audit_log WHERE action = 'user.password_change'")
    assert row["details"] == {"sessions_revoked": 1, "tokens_revoked": [token_id]}

    # a wrong current password changes nothing and revokes nothing
    fresh = await api.token(uid)
    resp = await api.client.post(
        "/api/v1/me/password",
        json={"current_password": "not it at all", "new_password": "yet another password"},
        headers=session,
    )
    assert resp.status == 422 and (await resp.json())["details"]["field"] == "current_password"
    assert await _status(api, fresh) == 200
