"""The wallboard under load, measured in the browser: 100 agents on SIPp phones working
5 live progressive campaigns on the sandboxed Asterisk, one admin's Chromium
(Playwright, Debian's /usr/bin/chromium) showing each campaign's wallboard.

Measures, in the browser: each wallboard's first screen (navigation start until its
agents are on screen), and for every agent-state change pushed during the run, the time
from the change in the service (the state's start time the service stamps) until the
row on screen shows it. The service runs in this process on an embedded Postgres; calls
are sandbox customers that answer after 1-4 s and talk 5-20 s (behaviour 7).
Prints one JSON object; exit code 1 when a target is missed.

    python benchmarks/ui.py --agents 100 --campaigns 5 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bridge_latency import ARI, _pct, live_environment
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Actor, AuthService, Passwords, Role
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.logs import configure_logging
from hitcall_pbx.sandbox import SippAgents
from hitcall_pbx.settings import load_settings

CHROMIUM = "/usr/bin/chromium"
FIRST_SCREEN_TARGET_MS = 1000.0
CHANGE_TARGET_MS = 500.0
PASSWORD = "ui-benchmark-password"


def _summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(_pct(ms, 0.5), 1), "p99_ms": round(_pct(ms, 0.99), 1), "max_ms": round(max(ms), 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(args: argparse.Namespace, box, tmp: Path, dsn: str) -> dict:
    from playwright.async_api import async_playwright

    settings = load_settings(
        database_url=dsn, data_dir=tmp / "data", ari_url=ARI, ari_app="hitcall", http_port=_free_port()
    )
    per = args.agents // args.campaigns
    async with HitCall(settings, Options(http=True, dialer_tick_s=0.1, webhooks=False)) as app:
        assert app.db is not None
        pool = app.db.pool
        campaigns = []
        for c in range(args.campaigns):
            cid, _ = await create_campaign(
                pool,
                f"UI load {c + 1}",
                mode="progressive",
                numbers=sim_numbers(7, 2000, start=300_000 + c * 2000),
                wrap_up_s=2,
                ring_timeout_s=15,
                **ALL_DAY,
            )
            campaigns.append(cid)
        for i in range(1, per * args.campaigns + 1):
            await create_agent(pool, str(7000 + i), f"agent{i}", [campaigns[(i - 1) // per]])
        auth = AuthService(pool, passwords=Passwords(time_cost=1, memory_cost=1024, parallelism=1))
        await auth.create_user(username="wallboard", role=Role.ADMIN, password=PASSWORD, actor=Actor("ui", "system"))
        base = f"http://127.0.0.1:{app.http_port}"
        phones = SippAgents(box, [f"agent{i}" for i in range(1, per * args.campaigns + 1)], port=5311)
        phones.start()
        try:
            deadline = time.monotonic() + 60
            while len(app.sessions.by_agent) < per * args.campaigns and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            logged_in = len(app.sessions.by_agent)
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = ANY($1::bigint[])", campaigns)
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                ctx = await browser.new_context(viewport={"width": 1400, "height": 900})
                await ctx.add_init_script("window.hcPushLatencies = [];")
                login = await ctx.new_page()
                await login.goto(f"{base}/web/login")
                await login.fill("#username", "wallboard")
                await login.fill("#password", PASSWORD)
                await login.click("main button[type=submit]")
                await login.wait_for_url("**/web/supervisor**")
                pages, first_screen = [], []
                for cid in campaigns:
                    page = await ctx.new_page()
                    started = time.perf_counter()
                    await page.goto(f"{base}/web/supervisor?campaign={cid}")
                    await page.wait_for_selector(f"#agents-body tr:nth-child({per})")
                    first_screen.append((time.perf_counter() - started) * 1000)
                    pages.append(page)
                await asyncio.sleep(args.seconds)
                latencies: list[float] = []
                for page in pages:
                    latencies += await page.evaluate("window.hcPushLatencies")
                await browser.close()
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = ANY($1::bigint[])", campaigns)
            await app.dialer.idle(30)
            calls = await pool.fetchval(
                "SELECT count(*) FROM all_attempts WHERE campaign_id = ANY($1::bigint[])", campaigns
            )
        finally:
            phones.stop()
    out = {
        "agents": per * args.campaigns,
        "agents_logged_in": logged_in,
        "campaigns": args.campaigns,
        "seconds": args.seconds,
        "calls": calls,
        "first_screen_ms": _summary(first_screen),
        "state_changes_on_screen": len(latencies),
        "change_to_screen_ms": _summary(latencies) if latencies else None,
    }
    out["targets"] = {
        "first_screen_under_1s": out["first_screen_ms"]["max_ms"] < FIRST_SCREEN_TARGET_MS,
        "state_change_p99_under_500ms": bool(latencies) and out["change_to_screen_ms"]["p99_ms"] < CHANGE_TARGET_MS,
    }
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--campaigns", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the wallboards watch the calls")
    args = ap.parse_args()
    configure_logging("WARNING")
    async with live_environment("hitcall-ui-") as (box, tmp, dsn):
        out = await run(args, box, tmp, dsn)
    print(json.dumps(out, indent=2))
    return 0 if all(out["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
