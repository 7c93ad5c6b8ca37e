"""After a restart the dialer seeds its pacing statistics from today's CDRs without
mistaking the day's abandons for an over-cap burst."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hitcall_pbx.demo.seed import create_campaign
from hitcall_pbx.dialer.models import Campaign
from hitcall_pbx.dialer.pacer import load_stats
from hitcall_pbx.dialer.store import DialerStore


async def test_seeded_stats_keep_todays_true_rate(db):
    cid, _ = await create_campaign(db, "seeded", mode="predictive", state="running")
    now = datetime.now(UTC)
    rows = []
    for i in range(2000):
        abandoned = i < 120  # 120 abandoned, 1880 connected: 6 % today
        rows.append(
            (
                uuid.uuid4(),
                cid,
                "+358201234567",
                "predictive",
                "ended",
                now - timedelta(minutes=1),
                now,
                "abandoned" if abandoned else "answered_human",
                abandoned,
                now + timedelta(days=700),
            )
        )
    await db.executemany(
        """INSERT INTO call_attempts (id, campaign_id, caller_id, mode, state, created_at, ended_at, outcome,
                                      abandoned, retention_until) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)""",
        rows,
    )
    campaign = Campaign.from_row(await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", cid))
    stats = await load_stats(DialerStore(db, None), campaign, datetime.now(UTC))  # type: ignore[arg-type]  # no hopper: only the abandon history is read
    assert stats.today.abandoned == 120 and stats.today.connected == 1880
    assert abs(stats.today_rate - 120 / 2000) < 1e-9
    # The peak seen while seeding is the day's true rate, not 100 %.
    assert stats.today_peak_rate <= 120 / 2000 + 1e-9
