"""A running campaign as the dialer holds it, for unit tests of the dialer's parts."""

from __future__ import annotations

from hitcall_pbx.core.compliance import CallingWindow, CampaignMode
from hitcall_pbx.core.retention import RetentionPolicy
from hitcall_pbx.dialer.models import Campaign


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
