"""Every /api/v1 response (personal data, errors, streamed files) carries Cache-Control:
no-store, except the public OpenAPI document and its page."""

from __future__ import annotations

from hitcall_pbx.api.registry import Route
from hitcall_pbx.auth import Role
from tests.integration.test_api_support import Api, api, make_world  # noqa: F401  (fixture)

CACHEABLE = {"openapi_document", "docs_page"}


def _url(route: Route, ids: dict[str, object]) -> str:
    path = route.path
    for name in route.path_params:
        path = path.replace("{" + name + "}", str(ids[name]))
    return path


def _order(route: Route) -> int:
    return 2 if route.operation_id == "logout" else 1 if route.method == "DELETE" else 0


async def test_every_api_response_is_no_store(api: Api) -> None:
    world = await make_world(api)
    checked = 0
    for route in sorted(api.registry.routes, key=_order):
        if not route.path.startswith("/api/v1/"):
            continue
        url = _url(route, world.ids)
        allowed = sorted(route.roles or [], key=lambda r: r is not Role.ADMIN)  # admin first when allowed
        callers = [None] + ([allowed[0]] if allowed else [])
        for caller in callers:
            headers = dict(world.credentials[caller]) if caller is not None else {}
            kw: dict = {}
            if route.body is not None:
                kw["json"] = {}
            elif route.body_media == "text/csv":
                kw["data"] = "phone,name\n0401230000,A\n"
                headers["Content-Type"] = "text/csv"
            resp = await api.client.request(route.method, url, headers=headers, **kw)
            await resp.read()
            where = f"{route.method} {url} as {caller}: {resp.status}"
            if route.operation_id in CACHEABLE:
                assert "no-store" not in resp.headers.get("Cache-Control", ""), where
            else:
                assert resp.headers.get("Cache-Control") == "no-store", where
            checked += 1
    assert checked > 100
    # errors and unmatched paths under /api/v1 too (the sessions above ended with logout)
    admin = await api.as_role(Role.ADMIN)
    for path in ("/api/v1/nothing-here", "/api/v1/contacts/999999"):
        resp = await api.client.get(path, headers=admin)
        assert resp.status == 404 and resp.headers.get("Cache-Control") == "no-store"
    resp = await api.client.get("/api/v1/recordings", headers=await api.as_role(Role.AGENT))
    assert resp.status == 403 and resp.headers.get("Cache-Control") == "no-store"
    resp = await api.client.get(
        f"/api/v1/recordings/{world.ids['recording_id']}/stream",
        headers={**world.credentials[Role.SUPERVISOR], "Range": "bytes=10-20"},
    )
    assert resp.status == 206 and resp.headers.get("Cache-Control") == "no-store"
