"""A running campaign and an attempt of it as the dialer holds them, for unit tests of the dialer's parts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from hitcall_pbx.core.compliance import CallingWindow, CampaignMode
from hitcall_pbx.core.retention import RetentionPolicy
from hitcall_pbx.dialer.models import Attempt, Campaign


def make_campaign(cid: int = 1, *, priority: int = 0, mode: CampaignMode = CampaignMode.PREDICTIVE) -> Campaign:
    return Campaign(
        id=cid,
        name=f"c{cid}",
        mode=mode,
        state="running",
        caller_id=None,
        ring_timeout_s=30,
        max_attempts=2,
        retry_delays={
            "busy": 600,
            "no_answer": 3600,
            "congestion": 900,
            "answered_machine": 7200,
            "abandoned": 3600,
            "cancelled": 0,
        },
        wrap_up_s=0,
        abandon_cap=0.03,
        info_message_sound=None,
        amd_enabled=False,
        record_calls=False,
        recording_announcement=None,
        window=CallingWindow(),
        priority=priority,
        preview_offer_timeout_s=30,
        max_lines_per_agent=2.0,
        retention=RetentionPolicy(),
    )


def make_attempt(campaign: Campaign, created_at: datetime) -> Attempt:
    """A new attempt of `campaign` to a Finnish mobile number, not yet with an agent."""
    return Attempt(
        id=uuid.uuid4(),
        campaign_id=campaign.id,
        contact_id=7,
        attempt_no=1,
        number="+358401234567",
        caller_id="",
        agent_id=None,
        mode=campaign.mode,
        created_at=created_at,
        retention_until=created_at + timedelta(days=730),
    )
