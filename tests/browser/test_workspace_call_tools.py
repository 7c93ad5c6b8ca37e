"""The workspace's call tools on real Asterisk, clicked in Chromium: the supervisor listens to
an agent's call from the wallboard, switches to whisper and to barge and stops; the agent
pauses and resumes the call's recording, hands the customer to a colleague with a blind
transfer and dials a number by hand; a campaign the supervisor ticks for an agent on the
wallboard brings its calls to the agent. Screenshots go to build/screenshots/."""

from __future__ import annotations

import socket
import uuid

import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import AuthService, Role
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign
from hitcall_pbx.sandbox import SippAgents
from tests.integration.test_api_support import FAST_PASSWORDS, PASSWORD, SYSTEM
from tests.live import wait_until

from .conftest import browser_login, shot

pytestmark = [pytest.mark.asterisk, pytest.mark.browser]

CUSTOMER = "+358401770011"  # sandbox customers +35840177xxxx answer and stay on the line
MANUAL = "+358401770012"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _user(pool, username: str, role: Role, agent_id: int) -> int:
    auth = AuthService(pool, passwords=FAST_PASSWORDS)
    user = await auth.create_user(username=username, role=role, password=PASSWORD, actor=SYSTEM)
    await pool.execute("UPDATE agents SET user_id = $2 WHERE id = $1", agent_id, user["id"])
    return user["id"]


async def _page(chromium, base: str, username: str, errors: list[str]):
    ctx = await chromium.new_context(locale="fi-FI", viewport={"width": 1400, "height": 900})
    page = await ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await browser_login(page, base, username)
    return ctx, page


async def test_supervisor_listens_whispers_barges_and_stops_from_the_wallboard(
    service_settings, sandbox, hangup_agents, chromium
):
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    async with HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(pool, "Kuuntelu", numbers=[CUSTOMER], wrap_up_s=0, **ALL_DAY)
        agent = await create_agent(pool, "1196", "agent196", [cid], name="Aino Agentti")
        phone = await create_agent(pool, "1197", "agent197", [cid], name="Sannan puhelin")
        sup_user = await _user(pool, "sanna", Role.SUPERVISOR, phone)
        base = f"http://127.0.0.1:{app.http_port}"
        errors: list[str] = []
        ctx, sup = await _page(chromium, base, "sanna", errors)
        row = f"tr[data-agent-id='{agent}']"
        try:
            await sup.goto(f"{base}/web/supervisor?campaign={cid}")
            with SippAgents(sandbox, ["agent196", "agent197"], port=5396):
                await wait_until(
                    lambda: agent in app.sessions.by_agent and app.sessions.supervisor_of_user(sup_user), timeout=15
                )
                sup_phone = app.sessions.supervisor_of_user(sup_user)
                await sup.click("button[data-campaign-action='start']")
                await sup.wait_for_selector(f"{row}[data-state='on_call'][data-call]", timeout=20000)
                attempt = uuid.UUID((await wait_until(lambda: app.dialer.live_calls(), timeout=5))[0]["attempt_id"])
                assert await sup.locator(f"{row} [data-monitor-stop]").is_hidden()
                assert await sup.get_attribute(row, "data-call") == str(attempt)

                async def session():
                    return await pool.fetchrow(
                        "SELECT id, mode, modes, agent_id, attempt_id, supervisor, ended_at, end_reason"
                        " FROM monitoring_sessions"
                    )

                async def in_mode(mode: str):
                    s = await session()
                    return s if s is not None and s["mode"] == mode else None

                for mode in ("listen", "whisper", "barge"):
                    await sup.click(f"{row} button[data-monitor='{mode}']")
                    await sup.wait_for_selector(f"{row}[data-monitor='{mode}']", timeout=5000)
                    current = await wait_until(lambda m=mode: in_mode(m), timeout=5)
                    assert (current["agent_id"], current["attempt_id"], current["supervisor"]) == (
                        agent,
                        attempt,
                        "sanna",
                    )
                    assert await sup.get_attribute(f"{row} button[data-monitor='{mode}']", "aria-pressed") == "true"
                    if mode == "whisper":
                        await shot(sup, "wallboard-whisper-fi")
                        await sup.reload()  # the running session is shown again
                        await sup.wait_for_selector(f"{row}[data-monitor='whisper'][data-call]", timeout=5000)
                # Barge: the supervisor's phone is in the call's bridge.
                bridge = await app.ari.rest.get_bridge(f"hitcall-agent-{agent}")
                assert sup_phone.channel_id in bridge.channels and str(attempt) in bridge.channels

                await sup.click(f"{row} [data-monitor-stop]")
                await sup.wait_for_selector(f"{row}:not([data-monitor])", timeout=5000)
                await wait_until(lambda: pool.fetchval("SELECT ended_at IS NOT NULL FROM monitoring_sessions"))
                ended = await session()
                assert ended["end_reason"] == "stopped"
                assert [m["mode"] for m in ended["modes"]] == ["listen", "whisper", "barge"]
                assert await pool.fetchval("SELECT count(*) FROM monitoring_sessions") == 1
                assert await sup.locator(f"{row} [data-monitor-stop]").is_hidden()
                home = await app.ari.rest.get_bridge(sup_phone.bridge_id)
                assert home.channels == [sup_phone.channel_id]  # back in its own bridge
                assert attempt in {uuid.UUID(c["attempt_id"]) for c in app.dialer.live_calls()}, "the call goes on"
                audit = await pool.fetch(
                    "SELECT action FROM audit_log WHERE object_type = 'monitoring_session' AND actor = 'sanna'"
                    " ORDER BY id"
                )
                assert [a["action"] for a in audit] == [
                    "monitoring.started",
                    "monitoring.changed",
                    "monitoring.changed",
                    "monitoring.ended",
                ]
                await app.dialer.hangup_call(str(attempt))
            assert not errors, errors
        finally:
            await ctx.close()


async def test_agent_pauses_recording_transfers_to_a_colleague_and_dials_by_hand(
    service_settings, sandbox, hangup_agents, chromium
):
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    async with HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        cid, _ = await create_campaign(pool, "Työkalut", numbers=[CUSTOMER], wrap_up_s=0, record_calls=True, **ALL_DAY)
        first = await create_agent(pool, "1198", "agent198", [cid], name="Aino Agentti")
        second = await create_agent(pool, "1199", "agent199", [cid], name="Bertta Agentti")
        await _user(pool, "aino", Role.AGENT, first)
        base = f"http://127.0.0.1:{app.http_port}"
        errors: list[str] = []
        ctx, desk = await _page(chromium, base, "aino", errors)
        try:
            with SippAgents(sandbox, ["agent198"], port=5398):
                await desk.wait_for_selector("#agent[data-state='ready']", timeout=15000)
                await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
                await desk.wait_for_selector("#card[data-kind='call']", timeout=20000)
                attempt = (await desk.evaluate("window.hcCardShown"))["attempt"]
                await desk.wait_for_selector("#tools:not([hidden]) #tool-recording:not([hidden])")

                # Recording pause and resume: one closed span by the agent.
                await desk.click("#btn-rec-pause")
                await wait_until(
                    lambda: pool.fetchval(
                        "SELECT count(*) = 1 FROM recording_pauses WHERE attempt_id = $1::uuid", attempt
                    ),
                    timeout=5,
                )
                await desk.click("#btn-rec-resume")
                span = await wait_until(
                    lambda: pool.fetchrow(
                        "SELECT * FROM recording_pauses WHERE attempt_id = $1::uuid AND resumed_at IS NOT NULL",
                        attempt,
                    ),
                    timeout=5,
                )
                assert span["paused_by"] == span["resumed_by"] == "aino"  # the desk's user

                # A blind transfer to a colleague who is ready: the customer is in her bridge.
                with SippAgents(sandbox, ["agent199"], port=5399):
                    await wait_until(lambda: second in app.sessions.by_agent, timeout=15)
                    await desk.wait_for_selector("#tool-transfer:not([hidden])")
                    await desk.select_option("#transfer-agent", str(second))
                    await desk.select_option("#transfer-kind", "blind")
                    await shot(desk, "agent-transfer-fi")
                    await desk.click("#btn-transfer")

                    async def with_second() -> bool:
                        return attempt in (await app.ari.rest.get_bridge(f"hitcall-agent-{second}")).channels

                    await wait_until(with_second, timeout=5)
                    await wait_until(  # the attempt row names the agent the customer was handed to
                        lambda: pool.fetchval(
                            "SELECT agent_id = $2 FROM all_attempts WHERE id = $1::uuid", uuid.UUID(attempt), second
                        ),
                        timeout=5,
                    )
                    await desk.wait_for_selector("#agent[data-state='ready']", timeout=10000)

                    # Manual dial: a number typed on the desk, dialled for this agent in its campaign.
                    await desk.fill("#dial-number", MANUAL)
                    await desk.click("#btn-dial")
                    manual = await wait_until(
                        lambda: pool.fetchrow(
                            "SELECT id, mode, agent_id, campaign_id FROM all_attempts WHERE dialled_number = $1",
                            MANUAL,
                        ),
                        timeout=5,
                    )
                    assert (manual["mode"], manual["agent_id"], manual["campaign_id"]) == ("manual", first, cid)
                    await wait_until(
                        lambda: pool.fetchval("SELECT bridged_at FROM all_attempts WHERE id = $1", manual["id"]),
                        timeout=20,
                    )
                    await desk.wait_for_function(  # its card: the number, no contact
                        "id => window.hcCardShown && window.hcCardShown.attempt === id",
                        arg=str(manual["id"]),
                        timeout=5000,
                    )
                    assert await desk.text_content("#c-numbers") == MANUAL == await desk.text_content("#c-name")
                    assert await desk.is_disabled("#btn-notes") and await desk.is_enabled("#btn-hangup")
                    await shot(desk, "agent-manual-call-fi")
                    await desk.keyboard.press("h")  # hang up from the desk
                    ended = await wait_until(
                        lambda: pool.fetchrow("SELECT outcome FROM call_attempts WHERE id = $1", manual["id"]),
                        timeout=10,
                    )
                    assert ended["outcome"] == "answered_human"
            assert not errors, errors
        finally:
            await ctx.close()


async def test_a_campaign_added_on_the_wallboard_brings_its_calls_to_the_agent(
    service_settings, sandbox, hangup_agents, chromium
):
    """The dialer learns of the change at once: the agent, ready and idle in its campaign,
    gets a call of the campaign the supervisor just ticked for it."""
    settings = service_settings.model_copy(update={"http_port": _free_port()})
    async with HitCall(settings, Options(http=True, dialer_tick_s=0.05)) as app:
        pool = app.db.pool
        first, _ = await create_campaign(pool, "Kevät", state="running", wrap_up_s=0, **ALL_DAY)
        second, _ = await create_campaign(
            pool, "Kesä", state="running", numbers=["+358401770031"], wrap_up_s=0, **ALL_DAY
        )
        agent = await create_agent(pool, "1200", "agent200", [first], name="Aino Agentti")
        await _user(pool, "aino", Role.AGENT, agent)
        phone = await create_agent(pool, "1195", "agent195", [first, second], name="Sannan puhelin")
        await _user(pool, "sanna", Role.SUPERVISOR, phone)
        base = f"http://127.0.0.1:{app.http_port}"
        errors: list[str] = []
        desk_ctx, desk = await _page(chromium, base, "aino", errors)
        sup_ctx, sup = await _page(chromium, base, "sanna", errors)
        try:
            with SippAgents(sandbox, ["agent200"], port=5400):
                await desk.wait_for_selector("#agent[data-state='ready']", timeout=15000)
                await desk.wait_for_timeout(500)
                assert not app.dialer.live_calls(), "nothing to dial in its own campaign"
                await sup.goto(f"{base}/web/supervisor?campaign={first}")
                await sup.click(f"tr[data-agent-id='{agent}'] button[data-edit='campaigns']")
                await sup.check(f"#campaigns-dialog input[value='{second}']")
                await sup.click("#campaigns-dialog button[type=submit]")
                await desk.wait_for_selector("#card[data-kind='call']", timeout=15000)
                # written through the call journal, a moment after the agent's page is told
                call = await wait_until(
                    lambda: pool.fetchrow(
                        "SELECT campaign_id, agent_id, dialled_number FROM all_attempts WHERE bridged_at IS NOT NULL"
                    ),
                    timeout=5,
                )
                assert dict(call) == {"campaign_id": second, "agent_id": agent, "dialled_number": "+358401770031"}
                for c in app.dialer.live_calls():
                    await app.dialer.hangup_call(c["attempt_id"])
            assert not errors, errors
        finally:
            await desk_ctx.close()
            await sup_ctx.close()
