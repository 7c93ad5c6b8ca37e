"""Role matrix over every route of the registry, and the credential checks: no route
escapes authentication or its declared roles."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hitcall_pbx.api import build_registry
from hitcall_pbx.api.registry import Route
from hitcall_pbx.auth import Role

from .test_api_support import SYSTEM, Api, api, make_world  # noqa: F401  (fixture)

CALLERS: list[Role | None] = [None, *Role]


def _url(route: Route, ids: dict[str, object]) -> str:
    path = route.path
    for name in route.path_params:
        path = path.replace("{" + name + "}", str(ids[name]))
    return path


def _body(route: Route) -> dict[str, object]:
    if route.body is not None:
        return {"json": {}}
    if route.body_media == "text/csv":
        return {"data": "phone,name\n0401230000,A\n", "headers": {"Content-Type": "text/csv"}}
    return {}


def _order(route: Route) -> int:
    # Deletions late, so that the other routes find their objects; ending the caller's own
    # session last keeps its credentials valid for the rest.
    return 2 if route.operation_id == "logout" else 1 if route.method == "DELETE" else 0


def test_every_route_declares_roles_and_scopes() -> None:
    reg = build_registry()
    assert len(reg.routes) >= 70
    for route in reg.routes:
        assert route.summary and route.tag
        if route.roles is None:
            assert route.scope is None
            continue
        assert route.roles, route.operation_id
        if route.path.startswith("/api/v1/") and route.tag not in ("auth",):
            assert route.scope, f"{route.operation_id} has no scope"
    public = {r.operation_id for r in reg.routes if r.roles is None}
    assert public == {"login", "healthz", "readyz", "metrics", "openapi_document", "docs_page"}


async def test_role_matrix_over_every_route(api: Api) -> None:
    world = await make_world(api)
    seen: list[tuple[str, str, int]] = []
    for route in sorted(api.registry.routes, key=_order):
        url = _url(route, world.ids)
        for caller in CALLERS:
            headers = dict(world.credentials[caller]) if caller is not None else {}
            kw = _body(route)
            kw_headers = {**kw.pop("headers", {}), **headers}  # type: ignore[dict-item]  # _body's values are object; headers is a dict[str, str]
            resp = await api.client.request(route.method, url, headers=kw_headers, **kw)
            status = resp.status
            body = await resp.read()
            who = caller.value if caller else "anonymous"
            seen.append((route.operation_id, who, status))
            where = f"{route.method} {url} as {who}: {status} {body[:200]!r}"
            assert status < 500, where
            if route.roles is None:
                assert status not in (401, 403), where
            elif caller is None:
                assert status == 401, where
                assert (await resp.json())["error"] == "unauthorized"
            elif caller in route.roles:
                assert status not in (401, 403), where
            else:
                assert status == 403, where
                assert (await resp.json())["error"] == "forbidden_role"
    assert len(seen) == len(api.registry.routes) * len(CALLERS)
    # the roles allowed reached the dialing engine, as themselves, for the agent's own agent
    unpaused = api.dialer.named("unpause_agent")
    assert sorted(k["actor"].role for _, k in unpaused) == ["admin", "agent", "supervisor"]
    assert {a[0] for a, _ in unpaused} == {world.ids["agent_id"]}


async def test_agent_may_not_act_on_another_agent(api: Api) -> None:
    world = await make_world(api)
    other = await api.pool.fetchval("INSERT INTO agents (number, name) VALUES ('202', 'Other') RETURNING id")
    agent = world.credentials[Role.AGENT]
    for method, path in [
        ("GET", f"/api/v1/agents/{other}"),
        ("GET", f"/api/v1/agents/{other}/state"),
        ("POST", f"/api/v1/agents/{other}/unpause"),
        ("POST", f"/api/v1/agents/{other}/offer/accept"),
        ("GET", f"/api/v1/calls?agent_id={other}"),
        ("GET", f"/api/v1/cdrs?agent_id={other}"),
    ]:
        resp = await api.client.request(method, path, headers=agent)
        assert resp.status == 403, (method, path)
        assert (await resp.json())["error"] == "not_own_agent"
    assert api.dialer.named("unpause_agent") == [] and api.dialer.named("accept_offer") == []

    other_call = await api.pool.fetchval(
        """INSERT INTO live_attempts (id, campaign_id, caller_id, agent_id, mode, retention_until)
           VALUES (gen_random_uuid(), $1, '+358401111111', $2, 'progressive', now() + interval '1 year')
           RETURNING id""",
        world.ids["campaign_id"],
        other,
    )
    resp = await api.client.post(f"/api/v1/calls/{other_call}/hangup", headers=agent)
    assert resp.status == 403
    resp = await api.client.post(f"/api/v1/calls/{world.ids['attempt_id']}/hangup", headers=agent)
    assert resp.status == 204
    assert [a[0][0] for a in api.dialer.named("hang_up")] == [world.ids["attempt_id"]]

    # lists are narrowed to the agent's own calls
    resp = await api.client.get("/api/v1/cdrs", headers=agent)
    assert resp.status == 200
    assert api.cdrs.filters[-1].agent_id == world.ids["agent_id"]


async def test_agent_user_without_agent_row_is_refused(api: Api) -> None:
    headers = await api.as_role(Role.AGENT)
    resp = await api.client.get("/api/v1/calls", headers=headers)
    assert resp.status == 403
    assert (await resp.json())["error"] == "not_own_agent"


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer hcs_forged", "Bearer hct_forged"]
)
async def test_bad_credentials_are_401(api: Api, header: str) -> None:
    resp = await api.client.get("/api/v1/me", headers={"Authorization": header} if header else {})
    assert resp.status == 401
    assert await resp.json() == {
        "error": "unauthorized",
        "message": "a valid bearer token is required",
        "details": None,
    }


async def test_expired_session_revoked_token_and_disabled_user_are_401(api: Api) -> None:
    uid = await api.user("eve", Role.SUPERVISOR)
    session = await api.login("eve")
    token = await api.token(uid)
    assert (await api.client.get("/api/v1/me", headers=session)).status == 200
    assert (await api.client.get("/api/v1/me", headers=token)).status == 200

    api.clock.advance(hours=12, seconds=1)
    assert (await api.client.get("/api/v1/me", headers=session)).status == 401
    assert (await api.client.get("/api/v1/me", headers=token)).status == 200

    token_id = await api.pool.fetchval("SELECT max(id) FROM api_tokens WHERE user_id = $1", uid)
    await api.auth.revoke_token(token_id, actor=SYSTEM)
    assert (await api.client.get("/api/v1/me", headers=token)).status == 401

    fresh = await api.login("eve")
    await api.auth.update_user(uid, disabled=True, actor=SYSTEM)
    assert (await api.client.get("/api/v1/me", headers=fresh)).status == 401


async def test_token_expiry(api: Api) -> None:
    uid = await api.user("intg", Role.INTEGRATION, password=None)
    grant = await api.auth.create_token(
        user_id=uid,
        name="short",
        scopes=["campaigns:read"],
        expires_at=api.clock() + timedelta(minutes=5),
        actor=SYSTEM,
    )
    headers = {"Authorization": f"Bearer {grant.token}"}
    assert (await api.client.get("/api/v1/campaigns", headers=headers)).status == 200
    api.clock.advance(minutes=6)
    assert (await api.client.get("/api/v1/campaigns", headers=headers)).status == 401


async def test_token_scopes_limit_routes(api: Api) -> None:
    uid = await api.user("crm", Role.INTEGRATION, password=None)
    headers = await api.token(uid, ["campaigns:read", "contacts:write"])
    assert (await api.client.get("/api/v1/campaigns", headers=headers)).status == 200
    resp = await api.client.get("/api/v1/dnc", headers=headers)
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "insufficient_scope" and body["details"] == {"required_scope": "dnc:read"}
    resp = await api.client.post("/api/v1/lists", json={"name": "From CRM"}, headers=headers)
    assert resp.status == 201
    resp = await api.client.get(f"/api/v1/lists/{(await resp.json())['id']}", headers=headers)
    assert resp.status == 403  # reading needs contacts:read


async def test_token_scopes_must_fit_the_role(api: Api) -> None:
    uid = await api.user("crm2", Role.INTEGRATION, password=None)
    admin = await api.as_role(Role.ADMIN)
    resp = await api.client.post(
        "/api/v1/tokens", json={"user_id": uid, "name": "x", "scopes": ["campaigns:read", "users:write"]}, headers=admin
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["details"]["field"] == "scopes" and body["details"]["refused"] == ["users:write"]
    assert await api.pool.fetchval("SELECT count(*) FROM api_tokens WHERE user_id = $1", uid) == 0
