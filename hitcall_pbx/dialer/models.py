"""Plain data the dialer passes between its parts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from ..core.compliance import CallingWindow, CampaignMode
from ..core.outcomes import CallMode
from ..core.pacing import PacingSettings
from ..core.retention import RetentionPolicy


@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    mode: CampaignMode
    state: str
    caller_id: str | None
    ring_timeout_s: int
    max_attempts: int
    retry_delays: dict[str, int]
    wrap_up_s: int
    abandon_cap: float
    info_message_sound: str | None
    amd_enabled: bool
    record_calls: bool
    recording_announcement: str | None
    window: CallingWindow
    priority: int
    preview_offer_timeout_s: int
    max_lines_per_agent: float
    retention: RetentionPolicy
    company_name: str | None = None
    callback_number: str | None = None
    callback_skip_delay_s: int = 900
    voicemail_drop: bool = False  # leave voicemail_message on an answering machine (AMD on)
    voicemail_message: str | None = None
    callback_delay_s: int = 86400  # a callback by phone key: this much later, moved into the window
    callback_grace_s: int = 900  # a personal callback goes to anyone this long after its time
    disposition_required: bool = False

    @classmethod
    def from_row(cls, r: Any) -> Campaign:
        return cls(
            id=r["id"],
            name=r["name"],
            mode=CampaignMode(r["mode"]),
            state=r["state"],
            caller_id=r["caller_id"],
            ring_timeout_s=r["ring_timeout_s"],
            max_attempts=r["max_attempts"],
            retry_delays={
                "busy": r["retry_busy_s"],
                "no_answer": r["retry_no_answer_s"],
                "congestion": r["retry_congestion_s"],
                "answered_machine": r["retry_machine_s"],
                "abandoned": r["retry_no_answer_s"],
                "cancelled": 0,
            },
            wrap_up_s=r["wrap_up_s"],
            abandon_cap=float(r["abandon_cap"]),
            info_message_sound=r["info_message_sound"],
            amd_enabled=r["amd_enabled"],
            record_calls=r["record_calls"],
            recording_announcement=r["recording_announcement"],
            window=CallingWindow(
                start=r["window_start"]
                if isinstance(r["window_start"], time)
                else time.fromisoformat(r["window_start"]),
                end=r["window_end"] if isinstance(r["window_end"], time) else time.fromisoformat(r["window_end"]),
                weekdays=frozenset(r["window_days"]),
            ),
            priority=r["priority"],
            preview_offer_timeout_s=r["preview_offer_timeout_s"],
            callback_skip_delay_s=r["callback_skip_delay_s"],
            voicemail_drop=r["voicemail_drop"],
            voicemail_message=r["voicemail_message"],
            callback_delay_s=r["callback_delay_s"],
            callback_grace_s=r["callback_grace_s"],
            disposition_required=r["disposition_required"],
            max_lines_per_agent=float(r["max_lines_per_agent"]),
            retention=RetentionPolicy(
                recordings_months=r["retention_recordings_months"], cdr_months=r["retention_cdr_months"]
            ),
            company_name=r["company_name"],
            callback_number=r["callback_number"],
        )

    def pacing_settings(self) -> PacingSettings:
        return PacingSettings(
            abandon_cap=max(self.abandon_cap, 1e-4),
            max_lines_per_agent=self.max_lines_per_agent,
            ring_timeout_s=float(self.ring_timeout_s),
        )


@dataclass(frozen=True)
class Attempt:
    """A call attempt whose row is committed in Postgres before it is dialled."""

    id: uuid.UUID
    campaign_id: int
    contact_id: int | None  # None: a number an agent dialled by hand (no contact)
    attempt_no: int
    number: str
    caller_id: str
    agent_id: int | None
    mode: CampaignMode | CallMode  # the campaign's mode, or CallMode.MANUAL (an agent dialled it)
    created_at: datetime
    retention_until: datetime
    contact: dict[str, Any] = field(default_factory=dict)
    lost_before: int = 0  # the contact's earlier attempts HitCall lost track of (not counted)

    @property
    def manual(self) -> bool:
        """Dialled by an agent (manual dial): only that agent may take the call."""
        return self.mode == CallMode.MANUAL

    @property
    def channel_id(self) -> str:
        """The ARI channel id is the attempt id: after a crash the service finds its channels."""
        return str(self.id)


@dataclass(frozen=True)
class Claim:
    """A contact taken from the hopper (locked in Postgres), not yet an attempt."""

    contact_id: int
    number: str
    attempts: int
    name: str | None
    extra: dict[str, Any]
