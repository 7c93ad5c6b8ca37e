"""The workspace's protections across every route and page, not one example each: every
state-changing REST call made with the session cookie needs the session's CSRF header;
every page (each role's, settings, the compliance report, a refusal) has a content security
policy without inline script, no inline script or event handler, and no-store; the wallboard
shows a supervisor their campaigns only; the page's buttons name routes that exist."""

from __future__ import annotations

import re

from hitcall_pbx.api import build_registry
from hitcall_pbx.auth import Role
from hitcall_pbx.auth.tokens import SAFE_METHODS, csrf_token
from hitcall_pbx.demo.seed import create_agent, create_campaign

from .conftest import Workspace


def _url(path: str) -> str:
    path = re.sub(r"\{(attempt_id|recording_id)\}", "00000000-0000-4000-8000-000000000001", path)
    return re.sub(r"\{[a-z_]+\}", "1", path)


async def test_every_state_changing_api_call_by_cookie_needs_the_csrf_header(workspace: Workspace) -> None:
    await workspace.user("admin1", Role.ADMIN)
    session = await workspace.login_cookie("admin1")
    routes = [r for r in build_registry().routes if r.roles is not None and r.method not in SAFE_METHODS]
    assert len(routes) >= 40
    audit_before = await workspace.pool.fetchval("SELECT count(*) FROM audit_log")
    for route in routes:
        for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": csrf_token(session)[:-1]}):
            resp = await workspace.client.request(route.method, _url(route.path), json={}, headers=headers)
            where = f"{route.method} {route.path} {headers}: {resp.status}"
            assert resp.status == 403, where
            assert (await resp.json())["error"] == "csrf_failed", where
    assert workspace.dialer.calls == [], "no refused request reached the dialing engine"
    assert await workspace.pool.fetchval("SELECT count(*) FROM audit_log") == audit_before, "nothing written"
    # the same session with its header gets through (here: to the route's own answer)
    ok = await workspace.client.post(
        "/api/v1/campaigns", json={"name": "x"}, headers={"X-CSRF-Token": csrf_token(session)}
    )
    assert ok.status == 422


def _check_page(path: str, resp, html: str) -> None:
    csp = resp.headers["Content-Security-Policy"]
    directives = dict([*d.strip().split(" ", 1), ""][:2] for d in csp.split(";") if d.strip())
    script = directives.get("script-src", directives.get("default-src", ""))
    assert "unsafe-inline" not in script and "unsafe-eval" not in script, (path, csp)
    assert "frame-ancestors 'none'" in csp, path
    assert resp.headers["Cache-Control"] == "no-store", path
    assert resp.headers["X-Content-Type-Options"] == "nosniff", path
    for tag in re.findall(r"<script[^>]*>", html, flags=re.I):
        assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html, flags=re.I), (path, "inline event handler")
    assert "javascript:" not in html.lower(), path


async def test_every_page_has_a_strict_policy_and_no_store(workspace: Workspace) -> None:
    await workspace.user("aino", Role.AGENT, agent=True)
    await workspace.user("sanna", Role.SUPERVISOR)
    await workspace.user("valvoja", Role.COMPLIANCE)
    pages = {
        None: ["/web/login"],
        "aino": ["/web/agent", "/web/settings", "/web/supervisor"],  # the last one a refusal page
        "sanna": ["/web/supervisor", "/web/reports", "/web/reports/compliance", "/web/settings"],
        "valvoja": ["/web/reports", "/web/reports/compliance", "/web/agent"],
    }
    seen = 0
    for user, paths in pages.items():
        workspace.client.session.cookie_jar.clear()
        if user is not None:
            await workspace.login_cookie(user)
        for path in paths:
            resp = await workspace.client.get(path, allow_redirects=False)
            assert resp.status in (200, 403), (user, path, resp.status)
            _check_page(path, resp, await resp.text())
            seen += 1
    assert seen == 11


async def test_the_wallboard_shows_a_supervisor_their_campaigns_only(workspace: Workspace) -> None:
    mine, _ = await create_campaign(workspace.pool, "Oma kampanja", state="running")
    other, _ = await create_campaign(workspace.pool, "Vieras kampanja", state="running")
    uid = await workspace.user("sanna", Role.SUPERVISOR)
    phone = await create_agent(workspace.pool, "1077", "sup77", [mine])
    await workspace.pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", uid, phone)
    await workspace.login_cookie("sanna")
    page = await workspace.client.get(f"/web/supervisor?campaign={other}")
    html = await page.text()
    assert page.status == 200
    assert "Oma kampanja" in html and "Vieras kampanja" not in html
    refused = await workspace.client.get(f"/web/live/wallboard?campaign={other}")
    assert refused.status == 403
    assert other not in workspace.hub.boards, "nothing of the other campaign was watched"
    listed = await workspace.client.get("/api/v1/campaigns")
    assert [c["id"] for c in (await listed.json())["items"]] == [mine]


async def test_the_wallboards_campaign_buttons_name_existing_routes(workspace: Workspace) -> None:
    await create_campaign(workspace.pool, "Kampanja", state="paused")
    await workspace.user("admin2", Role.ADMIN)
    await workspace.login_cookie("admin2")
    html = await (await workspace.client.get("/web/supervisor")).text()
    actions = re.findall(r'data-campaign-route="([a-z]+)"', html)
    assert len(actions) == len(re.findall("data-campaign-action=", html)) == 3, "each button names its route"
    paths = {r.path for r in build_registry().routes if r.method == "POST"}
    for action in actions:
        assert f"/api/v1/campaigns/{{campaign_id}}/{action}" in paths, action


async def test_the_compliance_report_shows_a_supervisor_their_campaigns_only(workspace: Workspace) -> None:
    mine, _ = await create_campaign(workspace.pool, "Oma kampanja", state="running")
    other, _ = await create_campaign(workspace.pool, "Vieras kampanja", state="running")
    day = await workspace.pool.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    for cid in (mine, other):  # both campaigns were active today
        await workspace.pool.execute(
            "INSERT INTO dial_blocks (campaign_id, day, reason, blocked) VALUES ($1, $2, 'dnc_global', 1)", cid, day
        )
    uid = await workspace.user("sanna", Role.SUPERVISOR)
    phone = await create_agent(workspace.pool, "1077", "sup77", [mine])
    await workspace.pool.execute("UPDATE agents SET user_id = $1 WHERE id = $2", uid, phone)
    await workspace.user("valvoja", Role.COMPLIANCE)
    for user, names in (("sanna", ["Oma kampanja"]), ("valvoja", ["Oma kampanja", "Vieras kampanja"])):
        workspace.client.session.cookie_jar.clear()
        await workspace.login_cookie(user)
        resp = await workspace.client.get(f"/web/reports/compliance?day={day.isoformat()}")
        html = await resp.text()
        assert resp.status == 200
        assert [n for n in ("Oma kampanja", "Vieras kampanja") if n in html] == names, user
