"""The workspace in Chromium without telephony: login in both languages, the pages each
role reaches, CSRF refusals seen from the page itself, the Content-Security-Policy in
force. Screenshots of each view go to build/screenshots/."""

from __future__ import annotations

import pytest

from hitcall_pbx.auth import Role

from .conftest import Workspace, browser_login, shot

pytestmark = pytest.mark.browser


async def test_login_pages_in_finnish_and_english(workspace: Workspace, chromium):
    await workspace.user("sanna", Role.SUPERVISOR)
    for lang in ("fi", "en"):
        ctx = await chromium.new_context(locale=lang, extra_http_headers={"Accept-Language": lang})
        page = await ctx.new_page()
        await page.goto(f"{workspace.base_url}/web/login")
        title = await page.text_content("h1")
        assert title == {"fi": "Kirjaudu HitCalliin", "en": "Log in to HitCall"}[lang]
        await page.fill("#username", "sanna")
        await page.fill("#password", "not the password")
        await page.click("main button[type=submit]")
        await page.wait_for_selector(".alert.bad")
        await shot(page, f"login-{lang}")
        await ctx.close()


async def test_csp_blocks_inline_script_and_fetch_needs_csrf(workspace: Workspace, chromium):
    uid = await workspace.user("aino", Role.AGENT, agent=True)
    agent_id = await workspace.pool.fetchval("SELECT id FROM agents WHERE user_id = $1", uid)
    ctx = await chromium.new_context()
    page = await ctx.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    await browser_login(page, workspace.base_url, "aino")
    assert page.url.endswith("/web/agent")
    # The phone is not logged in: the page says so and how.
    banner = page.locator("#phone-banner")
    await banner.wait_for(state="visible")
    assert "*70" in (await banner.text_content())
    await shot(page, "agent-phone-not-logged-in-fi")
    # Every control has a name a screen reader says, and the keyboard reaches the controls.
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !el.textContent.trim())
            .map((el) => el.id || el.outerHTML.slice(0, 60))"""
    )
    assert unnamed == []
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip", "the first key press: skip to content"
    in_desk = False
    for _ in range(15):
        await page.keyboard.press("Tab")
        in_desk = in_desk or await page.evaluate("document.activeElement.closest('#agent') !== null")
    assert in_desk, "the keyboard reaches the desk's controls"
    # An inline script the page did not ship does not run.
    ran = await page.evaluate(
        """() => new Promise((resolve) => {
            window.__inline = false;
            const s = document.createElement('script');
            s.textContent = 'window.__inline = true';
            document.body.append(s);
            setTimeout(() => resolve(window.__inline), 100);
        })"""
    )
    assert ran is False
    assert violations, "the browser reported the refused inline script"
    # A fetch() from the page with the cookie but without the CSRF header is refused; with it, it works.
    without = await page.evaluate(
        f"""() => fetch('/api/v1/agents/{agent_id}/pause', {{method: 'POST',
              headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{pause_code: 'lunch'}})}})
              .then(async r => [r.status, (await r.json()).error])"""
    )
    assert without == [403, "csrf_failed"]
    assert workspace.dialer.named("pause_agent") == []
    with_header = await page.evaluate(
        f"""() => HC.api('POST', '/agents/{agent_id}/pause', {{pause_code: 'lunch'}}).then(() => 'ok')"""
    )
    assert with_header == "ok"
    assert [a for a, _ in workspace.dialer.named("pause_agent")] == [(agent_id, "lunch")]
    # A cross-site form post carries no cookie (SameSite=Strict) and no token: refused, nothing changed.
    cookies = await ctx.cookies()
    session = next(c for c in cookies if c["name"] == "hitcall_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == "", "the session cookie is not readable by scripts"
    await ctx.close()


async def test_role_pages_and_refusals(workspace: Workspace, chromium):
    await workspace.user("valvoja", Role.COMPLIANCE)
    await workspace.user("esimies", Role.SUPERVISOR)
    await workspace.pool.execute(
        "INSERT INTO campaigns (name, mode, caller_id) VALUES ('Talvikampanja', 'progressive', '+358201234567')"
    )
    ctx = await chromium.new_context()
    page = await ctx.new_page()
    await browser_login(page, workspace.base_url, "valvoja")
    assert page.url.endswith("/web/reports")
    await shot(page, "reports-fi")
    resp = await page.goto(f"{workspace.base_url}/web/supervisor")
    assert resp.status == 403
    assert "tietosuoja" in await page.text_content(".alert")
    await shot(page, "refused-fi")
    report = await page.goto(f"{workspace.base_url}/web/reports/compliance")
    assert report.status == 200 and "script-src" not in report.headers["content-security-policy"]
    await ctx.close()

    ctx = await chromium.new_context()
    page = await ctx.new_page()
    await browser_login(page, workspace.base_url, "esimies")
    assert page.url.endswith("/web/supervisor")
    await page.goto(f"{workspace.base_url}/web/settings")
    await page.select_option("#locale", "en")
    await page.select_option("#timezone", "Europe/London")
    await page.click("main form button[type=submit]")
    await page.wait_for_selector(".alert.good")
    assert await page.text_content("h1") == "Settings"
    await shot(page, "settings-en")
    await ctx.close()
