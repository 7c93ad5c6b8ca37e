"""Managing from the workspace in Chromium: an agent's campaigns changed on the wallboard (a
supervisor: the campaigns they supervise, the agent keeps its others; an admin: any), and the
daily compliance report in the user's language and time zone. Screenshots go to
build/screenshots/."""

from __future__ import annotations

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
