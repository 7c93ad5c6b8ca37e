"""The workspace on real Asterisk: an agent on a SIPp phone and a supervisor, each in
Chromium. The agent logs in, goes ready, gets a call and sees the customer card within
1 s of the bridge, sets a disposition, notes and a callback and hangs up with the
keyboard; the supervisor sees the agent's state change within 1 s and pauses the
campaign. Screenshots of both views go to build/screenshots/."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import AuthService, Role
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents
from tests.integration.test_api_support import FAST_PASSWORDS, PASSWORD, SYSTEM
from tests.live import wait_until

from .conftest import browser_login, shot

pytestmark = [pytest.mark.asterisk, pytest.mark.browser]

CUSTOMER = "+358401770001"  # the sandbox's customer that answers and stays on the line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _seed(pool) -> dict:
    cid, list_id = await create_campaign(pool, "Talvikampanja", mode="progressive", wrap_up_s=30, **ALL_DAY)
    agent_id = await create_agent(pool, "1077", "agent77", [cid], name="Aino Agentti")
    contact_id = await pool.fetchval(
        """INSERT INTO contacts (list_id, phone_e164, name, title, organisation, email, marketing_permission,
                                 extra, notes, status, attempts)
           VALUES ($1, $2, 'Matti Meikäläinen', 'Toimitusjohtaja', 'Meikäläinen Oy', 'matti@example.fi', true,
                   '{"asiakasnumero": "A-1001", "sopimus": "Perus"}', 'Soita mieluiten aamupäivisin.', 'retry', 1)
           RETURNING id""",
        list_id,
        CUSTOMER,
    )
    # An earlier attempt, for the card's history.
    await pool.execute(
        """INSERT INTO call_attempts (id, campaign_id, contact_id, attempt_no, dialled_number, caller_id, agent_id,
                                      mode, state, created_at, ended_at, outcome, disposition, talk_s,
                                      retention_until)
           VALUES ($1, $2, $3, 1, $4, '+358201234567', $5, 'progressive', 'ended', now() - interval '2 days',
                   now() - interval '2 days', 'answered_human', 'no_decision', 42, now() + interval '1 year')""",
        uuid.uuid4(),
        cid,
        contact_id,
        CUSTOMER,
        agent_id,
    )
    auth = AuthService(pool, passwords=FAST_PASSWORDS)
    agent_user = await auth.create_user(username="aino", role=Role.AGENT, password=PASSWORD, actor=SYSTEM)
    await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", agent_id, agent_user["id"])
    sup_user = await auth.create_user(username="sanna", role=Role.SUPERVISOR, password=PASSWORD, actor=SYSTEM)
    # The supervisor's own phone (it takes no calls; its campaigns are the ones she supervises).
    phone = await create_agent(pool, "1078", "agent78", [cid], name="Sannan puhelin")
    await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", phone, sup_user["id"])
    return {"campaign_id": cid, "agent_id": agent_id, "contact_id": contact_id, "supervisor": sup_user["id"]}


async def _pushed_within(agent_page, sup_page, agent_id: int, state: str, action) -> float:
    """Do `action` on the agent's page; ms until the supervisor's wallboard shows `state`."""
    row = f"tr[data-agent-id='{agent_id}']"
    clicked = await agent_page.evaluate("Date.now()")
    await action()
    await sup_page.wait_for_selector(f"{row}[data-state='{state}']", timeout=5000)
    seen = float(await sup_page.get_attribute(row, "data-changed-at") or 0)
    return seen - clicked


async def test_agent_and_supervisor_work_a_call_in_the_browser(service_settings, sandbox, hangup_agents, chromium):
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    async with HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        ids = await _seed(pool)
        agent_id, cid = ids["agent_id"], ids["campaign_id"]
        base = f"http://127.0.0.1:{app.http_port}"
        figures: dict[str, float] = {}

        agent_ctx = await chromium.new_context(locale="fi-FI", viewport={"width": 1280, "height": 900})
        sup_ctx = await chromium.new_context(locale="fi-FI", viewport={"width": 1400, "height": 900})
        agent = await agent_ctx.new_page()
        sup = await sup_ctx.new_page()
        errors: list[str] = []
        for page in (agent, sup):
            page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            await browser_login(agent, base, "aino")
            assert agent.url.endswith("/web/agent")
            await agent.locator("#phone-banner").wait_for(state="visible")
            await browser_login(sup, base, "sanna")
            await sup.goto(f"{base}/web/supervisor?campaign={cid}")
            await sup.wait_for_selector(f"tr[data-agent-id='{agent_id}'][data-state='logged_out']")

            with SippAgents(sandbox, ["agent77"], port=5291):
                # The phone logs in with *70: the banner goes, the agent is ready, the wallboard shows it.
                await agent.locator("#phone-banner").wait_for(state="hidden", timeout=15000)
                await sup.wait_for_selector(f"tr[data-agent-id='{agent_id}'][data-state='ready']", timeout=5000)

                # Pause with a pause code, then ready again: each change on the wallboard within 1 s.
                await agent.select_option("#pause-code", "lunch")
                figures["pause_to_wallboard_ms"] = await _pushed_within(
                    agent, sup, agent_id, "paused", lambda: agent.click("#btn-pause")
                )
                await wait_until(
                    lambda: pool.fetchval(
                        "SELECT state = 'paused' AND pause_code = 'lunch' FROM agents WHERE id = $1", agent_id
                    ),
                    timeout=5,
                )
                figures["ready_to_wallboard_ms"] = await _pushed_within(
                    agent, sup, agent_id, "ready", lambda: agent.keyboard.press("r")
                )
                assert figures["pause_to_wallboard_ms"] < 1000 and figures["ready_to_wallboard_ms"] < 1000, figures
                await shot(sup, "wallboard-ready-fi")

                # The supervisor starts the campaign; the customer is dialled and put through.
                await sup.click("button[data-campaign-action='start']")
                await agent.wait_for_selector("#card[data-kind='call']", timeout=20000)
                shown = await agent.evaluate("window.hcCardShown")
                # The row is written through the call journal, a moment after the page is told.
                bridged = await wait_until(
                    lambda: pool.fetchval(
                        "SELECT bridged_at FROM all_attempts WHERE contact_id = $1 AND bridged_at IS NOT NULL",
                        ids["contact_id"],
                    ),
                    timeout=5,
                )
                assert bridged is not None and shown["attempt"]
                figures["bridge_to_card_ms"] = shown["at"] - bridged.timestamp() * 1000
                assert figures["bridge_to_card_ms"] < 1000, figures
                assert await agent.text_content("#c-name") == "Matti Meikäläinen"
                assert await agent.text_content("#c-organisation") == "Meikäläinen Oy"
                assert "A-1001" in await agent.text_content("#c-extra")
                assert await agent.text_content("#c-marketing") == "Lupa annettu"
                assert await agent.input_value("#c-notes") == "Soita mieluiten aamupäivisin."
                history = await agent.locator("#c-history tr").all_text_contents()
                assert len(history) == 1 and "Vastattu" in history[0] and "Ei päätöstä" in history[0]  # not this call
                await sup.wait_for_selector(f"tr[data-agent-id='{agent_id}'][data-state='on_call']", timeout=3000)
                await sup.wait_for_selector("#f-bridged:text-is('1')", timeout=5000)
                await agent.wait_for_timeout(1200)  # the call timer runs
                # Still shown as started: the snapshots pushed since (calls, agents) carry the new state.
                assert await sup.text_content("#camp-state") == "Käynnissä"
                assert await sup.is_disabled("button[data-campaign-action='start']")
                await shot(agent, "agent-on-call-fi")
                await shot(sup, "wallboard-on-call-fi")

                # The supervisor listens from her own phone (logged in with *70 like an agent's).
                assert await sup.locator("tr[data-agent-id]").count() == 1, "a supervisor's phone is no agent"
                with SippAgents(sandbox, ["agent78"], port=5293):
                    await wait_until(lambda: app.sessions.supervisor_of_user(ids["supervisor"]) is not None, timeout=15)
                    await sup.click(f"tr[data-agent-id='{agent_id}'] button[data-monitor='listen']")
                    listening = await wait_until(
                        lambda: pool.fetchrow(
                            "SELECT mode, agent_id, supervisor FROM monitoring_sessions WHERE ended_at IS NULL"
                        ),
                        timeout=5,
                    )
                    assert dict(listening) == {"mode": "listen", "agent_id": agent_id, "supervisor": "sanna"}
                    await shot(sup, "wallboard-listening-fi")

                # Notes, disposition and a callback in the customer's time, from the card.
                attempt_id = shown["attempt"]
                await agent.fill("#c-notes", "Kiinnostunut, soita ensi viikolla.")
                await agent.click("#btn-notes")
                await wait_until(
                    lambda: pool.fetchval(
                        "SELECT notes = 'Kiinnostunut, soita ensi viikolla.' FROM contacts WHERE id = $1",
                        ids["contact_id"],
                    ),
                    timeout=5,
                )
                # Disposition "callback" (its rule: a callback) with the time picked in the customer's zone.
                local = (datetime.now(ZoneInfo("Europe/Helsinki")) + timedelta(days=1)).replace(
                    hour=11, minute=30, second=0, microsecond=0
                )
                await agent.select_option("#disposition", "callback")
                await agent.fill("#callback-at", local.strftime("%Y-%m-%dT%H:%M"))
                # Written out in Finnish under the field, whatever format the browser's date field uses.
                picked = await agent.text_content("#callback-zone") or ""
                assert f"{local.day}.{local.month}.{local.year}" in picked and "11.30" in picked, picked
                assert picked.endswith("· Europe/Helsinki"), picked
                await agent.click("#btn-disposition")
                await wait_until(
                    lambda: pool.fetchval(
                        "SELECT disposition = 'callback' FROM all_attempts WHERE id = $1", uuid.UUID(attempt_id)
                    ),
                    timeout=5,
                )
                callback = await wait_until(
                    lambda: pool.fetchrow(
                        "SELECT due_at, agent_id, kind FROM callbacks WHERE contact_id = $1 AND state = 'scheduled'",
                        ids["contact_id"],
                    ),
                    timeout=5,
                )
                assert callback["due_at"] == local.astimezone(UTC)
                assert (callback["agent_id"], callback["kind"]) == (agent_id, "personal")

                # Hang up with the keyboard (the phone's 0): wrap-up with its countdown.
                await agent.keyboard.press("h")
                await agent.wait_for_selector("#agent[data-state='wrap_up']", timeout=5000)
                await agent.wait_for_selector("#wrap-left:not([hidden])")
                await agent.wait_for_selector("#card[data-kind='wrap_up']", timeout=3000)
                await shot(agent, "agent-wrap-up-fi")
                ended = await wait_until(
                    lambda: pool.fetchrow(
                        "SELECT outcome, disposition FROM call_attempts WHERE id = $1", uuid.UUID(attempt_id)
                    ),
                    timeout=10,
                )
                assert ended["outcome"] == "answered_human" and ended["disposition"] == "callback"

                # The supervisor pauses the campaign.
                await sup.click("button[data-campaign-action='pause']")
                await wait_until(lambda: pool.fetchval("SELECT state = 'paused' FROM campaigns WHERE id = $1", cid))
                await sup.wait_for_selector("#camp-state.campaign-paused", timeout=5000)
                await shot(sup, "wallboard-paused-fi")
                audit = await pool.fetch(
                    "SELECT actor, action FROM audit_log WHERE action IN ('campaign.pause', 'contact.view')"
                )
                assert ("sanna", "campaign.pause") in [(r["actor"], r["action"]) for r in audit]
                assert ("aino", "contact.view") in [(r["actor"], r["action"]) for r in audit]

                # The same desk in English (the user's own setting).
                await pool.execute("UPDATE users SET locale = 'en' WHERE username IN ('aino', 'sanna')")
                await agent.reload()
                await agent.wait_for_selector("#card[data-kind='wrap_up']", timeout=5000)
                assert await agent.text_content("#card-title") == "Customer card"
                assert await agent.input_value("#disposition") == "callback", "the call's disposition is shown"
                assert await agent.input_value("#callback-at") == local.strftime("%Y-%m-%dT%H:%M")
                picked = await agent.text_content("#callback-zone") or ""
                assert local.strftime("%d/%m/%Y") in picked and "11:30" in picked, picked
                assert len(await agent.locator("#c-history tr").all_text_contents()) == 1, "this call is not history"
                await shot(agent, "agent-wrap-up-en")
                await sup.reload()
                await sup.wait_for_selector(f"tr[data-agent-id='{agent_id}'][data-state='wrap_up']")
                await sup.wait_for_selector("#camp-state.campaign-paused")
                await shot(sup, "wallboard-paused-en")
                # The day's agent report, in the supervisor's time zone.
                await sup.goto(f"{base}/web/reports")
                await sup.wait_for_selector("#agent-report tr")
                row = await sup.locator("#agent-report tr").first.text_content()
                assert "Aino Agentti" in row, row
                await shot(sup, "reports-agents-en")

                # The supervisor logs the agent's phone out; the desk says so and how to log in again.
                await sup.goto(f"{base}/web/supervisor?campaign={cid}")
                await sup.click(f"tr[data-agent-id='{agent_id}'] button[data-needs='logout']")
                await sup.wait_for_selector(f"tr[data-agent-id='{agent_id}'][data-state='logged_out']", timeout=5000)
                await agent.locator("#phone-banner").wait_for(state="visible", timeout=5000)
                assert agent_id not in app.sessions.by_agent
                await wait_until(
                    lambda: pool.fetchval(
                        "SELECT count(*) = 1 FROM audit_log WHERE action = 'agent.logout' AND actor = 'sanna'"
                    ),
                    timeout=5,
                )
            assert not errors, errors
        finally:
            await agent_ctx.close()
            await sup_ctx.close()
        print("\nworkspace figures:", json.dumps(figures))


async def test_preview_offer_skip_and_accept_in_the_browser(service_settings, sandbox, hangup_agents, chromium):
    """A preview campaign: the card comes with the offer and its countdown; the agent skips one
    with a reason and accepts the next with the keyboard, which dials it."""
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    async with HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool, "Esikatselu", mode="preview", wrap_up_s=5, preview_offer_timeout_s=60, **ALL_DAY
        )
        first = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, '+358401770101', 'Liisa Lahtinen')"
            " RETURNING id",
            list_id,
        )
        second = await pool.fetchval(
            "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, '+358401770102', 'Pekka Pouta') RETURNING id",
            list_id,
        )
        agent_id = await create_agent(pool, "1079", "agent79", [cid], name="Ville Agentti")
        auth = AuthService(pool, passwords=FAST_PASSWORDS)
        user = await auth.create_user(username="ville", role=Role.AGENT, password=PASSWORD, actor=SYSTEM)
        await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", agent_id, user["id"])
        base = f"http://127.0.0.1:{app.http_port}"
        ctx = await chromium.new_context(locale="fi-FI", viewport={"width": 1280, "height": 900})
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            await browser_login(page, base, "ville")
            with SippAgents(sandbox, ["agent79"], port=5295):
                await page.wait_for_selector("#agent[data-state='ready']", timeout=15000)
                await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
                await page.wait_for_selector("#card[data-kind='offer']", timeout=10000)
                shown = await page.evaluate("window.hcCardShown")
                offer = await pool.fetchrow(
                    "SELECT contact_id, offered_at FROM preview_offers WHERE decision IS NULL AND agent_id = $1",
                    agent_id,
                )
                offer_to_card_ms = shown["at"] - offer["offered_at"].timestamp() * 1000
                assert offer_to_card_ms < 1000, offer_to_card_ms
                assert "s" in await page.text_content("#offer-left")
                name = await page.text_content("#c-name")
                assert name == {first: "Liisa Lahtinen", second: "Pekka Pouta"}[offer["contact_id"]]
                await shot(page, "agent-preview-offer-fi")
                await page.fill("#skip-reason", "Väärä henkilö")
                await page.click("#btn-skip")
                skipped = await wait_until(
                    lambda: pool.fetchrow(
                        "SELECT contact_id, skip_reason FROM preview_offers WHERE decision = 'skip' AND agent_id = $1",
                        agent_id,
                    ),
                    timeout=5,
                )
                assert dict(skipped) == {"contact_id": offer["contact_id"], "skip_reason": "Väärä henkilö"}
                # The next offer; A (the phone's #) accepts and dials it.
                other = second if offer["contact_id"] == first else first
                await wait_until(
                    lambda: pool.fetchval(
                        "SELECT contact_id = $2 FROM preview_offers WHERE decision IS NULL AND agent_id = $1",
                        agent_id,
                        other,
                    ),
                    timeout=10,
                )
                await page.wait_for_selector("#c-name:text-is('Pekka Pouta'), #c-name:text-is('Liisa Lahtinen')")
                await page.locator("body").click(position={"x": 5, "y": 300})  # focus off the reason field
                await page.keyboard.press("a")
                await page.wait_for_selector("#card[data-kind='call']", timeout=15000)
                bridged = await wait_until(
                    lambda: pool.fetchval(
                        "SELECT bridged_at FROM all_attempts WHERE contact_id = $1 AND bridged_at IS NOT NULL", other
                    ),
                    timeout=5,
                )
                assert bridged is not None
                await page.keyboard.press("h")
                await page.wait_for_selector("#agent[data-state='wrap_up']", timeout=5000)
            assert not errors, errors
        finally:
            await ctx.close()
        print(f"\npreview offer -> card: {offer_to_card_ms:.0f} ms")
