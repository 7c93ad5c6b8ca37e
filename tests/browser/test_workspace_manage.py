"""Managing from the workspace in Chromium: an agent's campaigns changed on the wallboard (a
supervisor: the campaigns they supervise, the agent keeps its others; an admin: any), and the
daily compliance report in the user's language and time zone. Screenshots go to
build/screenshots/."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from hitcall_pbx.auth import Role
from hitcall_pbx.demo.seed import ALL_DAY, create_campaign

from .conftest import Workspace, browser_login, shot

pytestmark = pytest.mark.browser


async def _campaigns(pool, agent_id: int) -> set[int]:
    return {
        r["campaign_id"]
        for r in await pool.fetch("SELECT campaign_id FROM agent_campaigns WHERE agent_id = $1", agent_id)
    }


async def test_agent_campaigns_from_the_wallboard_supervisor_own_admin_any(workspace: Workspace, chromium):
    pool = workspace.pool
    mine, also_mine, other = [(await create_campaign(pool, name, **ALL_DAY))[0] for name in ("Kevät", "Kesä", "Syksy")]
    sup_user = await workspace.user("sanna", Role.SUPERVISOR, agent=True)
    phone = await pool.fetchval("SELECT id FROM agents WHERE user_id = $1", sup_user)
    await pool.executemany("INSERT INTO agent_campaigns VALUES ($1, $2)", [(phone, mine), (phone, also_mine)])
    agent_user = await workspace.user("aino", Role.AGENT, agent=True)
    agent = await pool.fetchval("SELECT id FROM agents WHERE user_id = $1", agent_user)
    await pool.executemany("INSERT INTO agent_campaigns VALUES ($1, $2)", [(agent, mine), (agent, other)])
    await workspace.user("admin1", Role.ADMIN)
    row = f"tr[data-agent-id='{agent}']"
    errors: list[str] = []

    async def wallboard(username: str):
        ctx = await chromium.new_context(locale="fi-FI", viewport={"width": 1400, "height": 900})
        page = await ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        await browser_login(page, workspace.base_url, username)
        await page.goto(f"{workspace.base_url}/web/supervisor?campaign={mine}")
        await page.click(f"{row} button[data-edit='campaigns']")
        await page.wait_for_selector("#campaigns-dialog[open] input[name=campaign]")
        return ctx, page

    async def offered(page) -> dict[int, bool]:
        boxes = page.locator("#campaigns-dialog input[name=campaign]")
        return {int(await b.get_attribute("value")): await b.is_checked() for b in await boxes.all()}

    # The supervisor sees the campaigns she supervises only, with the agent's ticked; adds one.
    ctx, page = await wallboard("sanna")
    try:
        assert await offered(page) == {mine: True, also_mine: False}
        assert await page.text_content("#campaigns-title") == "Agentin Agent aino kampanjat"
        await page.check(f"#campaigns-dialog input[value='{also_mine}']")
        await shot(page, "wallboard-agent-campaigns-fi")
        await page.click("#campaigns-dialog button[type=submit]")
        await page.wait_for_selector("#campaigns-dialog:not([open])", state="attached")
        assert await _campaigns(pool, agent) == {mine, also_mine, other}, "the campaign she does not supervise stays"
        # Taking one away leaves the others.
        await page.click(f"{row} button[data-edit='campaigns']")
        await page.wait_for_selector("#campaigns-dialog[open] input[name=campaign]")
        assert await offered(page) == {mine: True, also_mine: True}
        await page.uncheck(f"#campaigns-dialog input[value='{mine}']")
        await page.click("#campaigns-dialog button[type=submit]")
        await page.wait_for_selector("#campaigns-dialog:not([open])", state="attached")
        assert await _campaigns(pool, agent) == {also_mine, other}
    finally:
        await ctx.close()

    audit = await pool.fetch(
        "SELECT actor, details FROM audit_log WHERE action = 'agent.update' AND object_id = $1 ORDER BY id", str(agent)
    )
    assert [(a["actor"], a["details"]["campaign_ids"]) for a in audit] == [
        ("sanna", {"before": sorted([mine, other]), "after": sorted([mine, also_mine, other])}),
        ("sanna", {"before": sorted([mine, also_mine, other]), "after": sorted([also_mine, other])}),
    ]

    # The admin sees every campaign and takes the other one away.
    await pool.execute("INSERT INTO agent_campaigns VALUES ($1, $2)", agent, mine)
    ctx, page = await wallboard("admin1")
    try:
        assert await offered(page) == {mine: True, also_mine: True, other: True}
        await page.uncheck(f"#campaigns-dialog input[value='{other}']")
        await page.click("#campaigns-dialog button[type=submit]")
        await page.wait_for_selector("#campaigns-dialog:not([open])", state="attached")
        assert await _campaigns(pool, agent) == {mine, also_mine}
    finally:
        await ctx.close()
    assert not errors, errors


async def test_compliance_report_in_the_users_language_and_time_zone(workspace: Workspace, chromium):
    pool = workspace.pool
    cid, list_id = await create_campaign(pool, "Talvi", **ALL_DAY)
    sup_user = await workspace.user("sanna", Role.SUPERVISOR, agent=True)
    phone = await pool.fetchval("SELECT id FROM agents WHERE user_id = $1", sup_user)
    await pool.execute("INSERT INTO agent_campaigns VALUES ($1, $2)", phone, cid)
    await pool.execute("UPDATE users SET locale = 'fi', timezone = 'Europe/Helsinki' WHERE id = $1", sup_user)
    ctx = await chromium.new_context(locale="en-US", viewport={"width": 1400, "height": 900})
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await browser_login(page, workspace.base_url, "sanna")
        await page.goto(f"{workspace.base_url}/web/supervisor?campaign={cid}")
        link = page.locator("a[href^='/web/reports/compliance']")
        day = date.fromisoformat((await link.get_attribute("href")).split("day=")[1])
        # One call at 10:30 UTC that day: 12 in Helsinki in winter (13 in summer), 05 in New York.
        at = datetime.combine(day, time(10, 30), UTC)
        contact = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164) VALUES ($1, '+358401770021') RETURNING id", list_id
        )
        await pool.execute(
            """INSERT INTO call_attempts (id, campaign_id, contact_id, attempt_no, dialled_number, caller_id, mode,
                                          state, created_at, ended_at, outcome, retention_until)
               VALUES ($1, $2, $3, 1, '+358401770021', '+358201234567', 'progressive', 'ended', $4, $4,
                       'no_answer', now() + interval '1 year')""",
            uuid.uuid4(),
            cid,
            contact,
            at,
        )
        async with ctx.expect_page() as opened:
            await link.click()
        report = await opened.value
        await report.wait_for_load_state()
        assert await report.text_content("h1") == "HitCall · Päivän vaatimustenmukaisuusraportti"
        header = await report.text_content("header p")
        assert "kellonajat Europe/Helsinki" in header and f"{day.day}.{day.month}.{day.year}" in header, header
        helsinki = f"{at.astimezone(ZoneInfo('Europe/Helsinki')).hour:02d}"
        assert await report.locator("rect title", has_text=f"{helsinki}: 1").count() == 1, "the call's local hour"
        assert "Puhelut tunneittain" in await report.text_content("main")
        assert "Luotu" in await report.text_content("footer")
        assert "ei vastausta 1" in await report.text_content(".legend")
        await shot(report, "report-compliance-fi")

        # The same report for a user in English in New York.
        await pool.execute("UPDATE users SET locale = 'en', timezone = 'America/New_York' WHERE id = $1", sup_user)
        await report.reload()
        assert await report.text_content("h1") == "HitCall · Daily compliance report"
        assert "times in America/New_York" in await report.text_content("header p")
        new_york = f"{at.astimezone(ZoneInfo('America/New_York')).hour:02d}"
        assert await report.locator("rect title", has_text=f"{new_york}: 1").count() == 1
        assert "America/New_York" in await report.text_content("footer")
        await shot(report, "report-compliance-en")
    finally:
        await ctx.close()
    assert not errors, errors
