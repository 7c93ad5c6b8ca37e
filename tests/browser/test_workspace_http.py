"""The workspace's sessions, CSRF protection, security headers, languages and role
checks, over HTTP against the real API and database."""

from __future__ import annotations

import re

from hitcall_pbx.auth import Role
from hitcall_pbx.auth.tokens import csrf_token
from hitcall_pbx.demo.seed import create_campaign
from hitcall_pbx.web.i18n import MESSAGES
from hitcall_pbx.web.live import LiveHub, WallboardSources

from .conftest import LOGIN_CSRF, PASSWORD, Workspace, make_workspace


def _cookie_header(resp, name: str) -> str:
    for value in resp.headers.getall("Set-Cookie", []):
        if value.startswith(f"{name}="):
            return value
    raise AssertionError(f"no Set-Cookie for {name}: {resp.headers.getall('Set-Cookie', [])}")


async def test_message_catalogue_has_every_text_in_both_languages():
    assert set(MESSAGES["fi"]) == set(MESSAGES["en"])
    for key in MESSAGES["fi"]:
        assert re.findall(r"{\w+}", MESSAGES["fi"][key]) == re.findall(r"{\w+}", MESSAGES["en"][key]), key


async def test_login_sets_a_strict_httponly_cookie_and_is_audited(workspace: Workspace):
    await workspace.user("sanna", Role.SUPERVISOR)
    page = await workspace.client.get("/web/login")
    csrf = LOGIN_CSRF.search(await page.text())[1]
    resp = await workspace.client.post(
        "/web/login", data={"username": "sanna", "password": PASSWORD, "csrf_token": csrf}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/web/"
    cookie = _cookie_header(resp, "hitcall_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie, "plain HTTP from a direct client: no Secure flag"
    rows = await workspace.pool.fetch("SELECT actor, action FROM audit_log WHERE action LIKE 'auth.%' ORDER BY id")
    assert [(r["actor"], r["action"]) for r in rows] == [("sanna", "auth.login")]
    home = await workspace.client.get("/web/", allow_redirects=False)
    assert home.status == 303 and home.headers["Location"] == "/web/supervisor"


async def test_secure_cookie_behind_a_trusted_tls_proxy_only(db, tmp_path):
    """X-Forwarded-Proto: https makes the cookie Secure only from a trusted proxy (the test
    client connects from 127.0.0.1)."""
    for trusted, secure in (("127.0.0.1", True), ("10.9.9.0/24", False)):
        async for ws in make_workspace(db, tmp_path, trusted=trusted):
            await ws.user(f"pekka{int(secure)}", Role.SUPERVISOR)
            page = await ws.client.get("/web/login")
            csrf = LOGIN_CSRF.search(await page.text())[1]
            resp = await ws.client.post(
                "/web/login",
                data={"username": f"pekka{int(secure)}", "password": PASSWORD, "csrf_token": csrf},
                headers={"X-Forwarded-Proto": "https"},
                allow_redirects=False,
            )
            assert resp.status == 303
            assert ("Secure" in _cookie_header(resp, "hitcall_session")) is secure, trusted


async def test_login_form_without_its_csrf_token_is_refused(workspace: Workspace):
    await workspace.user("outi", Role.SUPERVISOR)
    resp = await workspace.client.post(
        "/web/login", data={"username": "outi", "password": PASSWORD}, allow_redirects=False
    )
    assert resp.status == 403
    assert "hitcall_session" not in resp.cookies
    assert not await workspace.pool.fetchval("SELECT count(*) FROM sessions")


async def test_wrong_password_and_throttling(workspace: Workspace):
    await workspace.user("ville", Role.AGENT, agent=True)
    statuses = []
    for _ in range(6):
        page = await workspace.client.get("/web/login")
        csrf = LOGIN_CSRF.search(await page.text())[1]
        resp = await workspace.client.post(
            "/web/login", data={"username": "ville", "password": "wrong password!", "csrf_token": csrf}
        )
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 401, 401, 429]
    assert "Retry-After" in resp.headers
    assert "Liian monta" in await resp.text()  # Finnish by default
    failed = await workspace.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.login_failed'")
    assert failed == 5


async def test_cookie_api_calls_need_the_csrf_header(workspace: Workspace):
    uid = await workspace.user("aino", Role.AGENT, agent=True)
    agent_id = await workspace.pool.fetchval("SELECT id FROM agents WHERE user_id = $1", uid)
    session = await workspace.login_cookie("aino")
    c = workspace.client
    read = await c.get(f"/api/v1/agents/{agent_id}/state")
    assert read.status == 200, "a read needs no CSRF token"
    refused = await c.post(f"/api/v1/agents/{agent_id}/pause", json={"pause_code": "lunch"})
    assert refused.status == 403 and (await refused.json())["error"] == "csrf_failed"
    wrong = await c.post(
        f"/api/v1/agents/{agent_id}/pause", json={"pause_code": "lunch"}, headers={"X-CSRF-Token": "0" * 64}
    )
    assert wrong.status == 403
    assert workspace.dialer.named("pause_agent") == []
    ok = await c.post(
        f"/api/v1/agents/{agent_id}/pause", json={"pause_code": "lunch"}, headers={"X-CSRF-Token": csrf_token(session)}
    )
    assert ok.status == 200, await ok.text()
    assert [a for a, _ in workspace.dialer.named("pause_agent")] == [(agent_id, "lunch")]


async def test_every_form_needs_its_csrf_token(workspace: Workspace):
    await workspace.user("maija", Role.SUPERVISOR)
    session = await workspace.login_cookie("maija")
    c = workspace.client
    for path, data in (("/web/settings", {"locale": "en", "timezone": "Europe/Helsinki"}), ("/web/logout", {})):
        resp = await c.post(path, data=data, allow_redirects=False)
        assert resp.status == 403, path
    assert await workspace.pool.fetchval("SELECT locale FROM users WHERE username = 'maija'") == "fi"
    still = await c.get("/web/supervisor", allow_redirects=False)
    assert still.status == 200, "the refused logout left the session alone"
    out = await c.post("/web/logout", data={"csrf_token": csrf_token(session)}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/web/login?bye=1"
    gone = await c.get("/web/supervisor", allow_redirects=False)
    assert gone.status == 303 and gone.headers["Location"] == "/web/login"
    assert await workspace.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.logout'") == 1


async def test_security_headers_on_every_page(workspace: Workspace):
    await workspace.user("eeva", Role.AGENT, agent=True)
    c = workspace.client
    login = await c.get("/web/login")
    await workspace.login_cookie("eeva")
    agent = await c.get("/web/agent")
    assert agent.status == 200
    for resp in (login, agent):
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        html = await resp.text()
        # No inline script: every <script> either loads a file or is JSON data.
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, tag
    css = await c.get("/web/static/app.css")
    assert css.status == 200 and css.headers.get("Cache-Control") != "no-store"


async def test_each_role_sees_only_its_pages(workspace: Workspace):
    await workspace.user("agentti", Role.AGENT, agent=True)
    await workspace.user("esimies", Role.SUPERVISOR)
    await workspace.user("valvoja", Role.COMPLIANCE)
    await workspace.user("crm", Role.INTEGRATION)
    expected = {
        "agentti": {"/web/agent": 200, "/web/supervisor": 403, "/web/reports": 403, "/web/reports/compliance": 403},
        "esimies": {"/web/agent": 403, "/web/supervisor": 200, "/web/reports": 200, "/web/reports/compliance": 200},
        "valvoja": {"/web/agent": 403, "/web/supervisor": 403, "/web/reports": 200, "/web/reports/compliance": 200},
        "crm": {"/web/agent": 403, "/web/supervisor": 403, "/web/reports": 403, "/web/": 403},
    }
    for username, pages in expected.items():
        workspace.client.session.cookie_jar.clear()
        await workspace.login_cookie(username)
        for path, status in pages.items():
            resp = await workspace.client.get(path, allow_redirects=False)
            assert resp.status == status, (username, path, resp.status)
        # The API behind the pages answers as it answers the role's bearer tokens.
        campaigns = await workspace.client.get("/api/v1/campaigns")
        assert campaigns.status == (403 if username == "agentti" else 200), username
    workspace.client.session.cookie_jar.clear()
    anonymous = await workspace.client.get("/web/agent", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"] == "/web/login"
    api = await workspace.client.get("/api/v1/campaigns")
    assert api.status == 401


async def test_an_agent_reads_only_its_own_card_and_day(workspace: Workspace):
    u1 = await workspace.user("oma", Role.AGENT, agent=True)
    u2 = await workspace.user("toinen", Role.AGENT, agent=True)
    a1 = await workspace.pool.fetchval("SELECT id FROM agents WHERE user_id = $1", u1)
    a2 = await workspace.pool.fetchval("SELECT id FROM agents WHERE user_id = $1", u2)
    await workspace.login_cookie("oma")
    mine = await workspace.client.get(f"/api/v1/agents/{a1}/card")
    assert mine.status == 404 and (await mine.json())["error"] == "no_card"
    other = await workspace.client.get(f"/api/v1/agents/{a2}/card")
    assert other.status == 403 and (await other.json())["error"] == "not_own_agent"
    day = await workspace.client.get(f"/api/v1/agents/{a1}/day")
    assert day.status == 200 and (await day.json())["calls"] == 0
    assert (await workspace.client.get(f"/api/v1/agents/{a2}/day")).status == 403


async def test_language_and_time_zone_are_the_users_own(workspace: Workspace):
    await workspace.user("liisa", Role.SUPERVISOR)
    session = await workspace.login_cookie("liisa")
    fi = await (await workspace.client.get("/web/settings")).text()
    assert '<html lang="fi">' in fi and "Asetukset" in fi and 'data-timezone="Europe/Helsinki"' in fi
    bad = await workspace.client.post(
        "/web/settings", data={"locale": "en", "timezone": "Mars/Olympus", "csrf_token": csrf_token(session)}
    )
    assert bad.status == 422
    resp = await workspace.client.post(
        "/web/settings", data={"locale": "en", "timezone": "America/New_York", "csrf_token": csrf_token(session)}
    )
    assert resp.status == 200
    en = await (await workspace.client.get("/web/supervisor")).text()
    assert '<html lang="en">' in en and "Wallboard" in en and 'data-timezone="America/New_York"' in en
    row = await workspace.pool.fetchrow("SELECT details FROM audit_log WHERE action = 'user.preferences'")
    assert row["details"] == {"locale": "en", "timezone": "America/New_York"}


async def test_a_campaign_started_shows_on_its_wallboard_before_the_next_database_read(
    workspace: Workspace, db, tmp_path
) -> None:
    """The wallboard re-reads the database every few seconds; a start (or pause) made
    through the API is on the board at once, so the page does not flip back to the old state
    with its next snapshot."""
    cid, _ = await create_campaign(workspace.pool, "Talvikampanja")
    other, _ = await create_campaign(workspace.pool, "Kevätkampanja")
    hub = LiveHub(db, workspace.bus, WallboardSources(workspace.dialer.live_calls), interval=0.05, db_interval=3600)
    await hub.start()
    try:
        board = await hub.watch(cid)
        assert board.snapshot()["state"] == "draft"
        events = hub.campaign_events(board)
        await workspace.user("admin1", Role.ADMIN)
        session = await workspace.login_cookie("admin1")
        for campaign in (other, cid):
            resp = await workspace.client.post(
                f"/api/v1/campaigns/{campaign}/start", headers={"X-CSRF-Token": csrf_token(session)}
            )
            assert resp.status == 200, await resp.text()
        event = await events.get(timeout=2)
        assert event is not None and (event.type, event.payload["campaign_id"]) == ("campaign.state_changed", cid)
        version = board.version
        hub.apply(board, event)
        assert board.snapshot()["state"] == "running" and board.version > version
        assert await events.get(timeout=0.2) is None, "the other campaign's start is not this board's"
    finally:
        await hub.close()
