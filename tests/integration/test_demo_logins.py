"""hitcall demo's browser logins: the demo supervisor supervises the demo campaign (their
phone's agent row has it), so the printed wallboard shows it and its controls answer."""

from __future__ import annotations

import io
from types import SimpleNamespace

import asyncpg

from hitcall_pbx.demo.run import DEMO_SUPERVISOR, Screen, _browser_logins
from hitcall_pbx.demo.seed import create_campaign, ensure_agent
from hitcall_pbx.store.supervision import supervised_campaigns, supervises_agent


async def test_the_demo_supervisor_supervises_the_demo_campaign(db: asyncpg.Pool) -> None:
    app = SimpleNamespace(db=SimpleNamespace(pool=db), http_port=8089)
    settings = SimpleNamespace(http_host="127.0.0.1")
    for run in range(2):  # a second run keeps one phone row
        campaign_id, _ = await create_campaign(db, f"demo-{run}")
        agent_id = await ensure_agent(db, "901", "demo-phone-1", [campaign_id])
        out = io.StringIO()
        await _browser_logins(app, settings, campaign_id, "demo-phone-1", Screen(out, tty=False))  # type: ignore[arg-type]
        user_id = await db.fetchval("SELECT id FROM users WHERE username = $1", DEMO_SUPERVISOR)
        assert campaign_id in await supervised_campaigns(db, user_id)
        assert await supervises_agent(db, user_id, agent_id)
        assert f"supervisor?campaign={campaign_id}" in out.getvalue()
    assert await db.fetchval("SELECT count(*) FROM agents WHERE user_id = $1", user_id) == 1
