"""What the REST API needs from the rest of the service, injected by the composition root.

`ApiDeps` holds the pool and the services. The Protocols below are implemented by other
layers (dialing engine, records, privacy, webhooks); their data types are pydantic models,
so the API's OpenAPI document describes exactly what they return. Every mutating call
takes the `Actor` and writes its own audit row inside the transaction of its change.
Errors are the typed errors of `hitcall_pbx.errors` (NotFound, Conflict, ValidationFailed …).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg
from prometheus_client import CollectorRegistry
from pydantic import AwareDatetime, Field, model_validator

from ..auth import Actor, Passwords, ThrottlePolicy, utcnow
from ..core.callbacks import CallbackKind
from ..core.calls import CallState
from ..core.outcomes import CallDirection, CallMode, Outcome
from .types import UNSET, Email, In, Out, Patch, Phone, Query, TimeZone

# The API's call vocabulary is the core's: one definition of each (CallMode, CallState, Outcome …).


# ------------------------------------------------------------------------ dialer


class LiveCall(Out):
    attempt_id: uuid.UUID
    campaign_id: int
    agent_id: int | None = None
    contact_id: int | None = None
    number: str | None = None
    state: CallState
    mode: CallMode | None = None
    originated_at: datetime | None = None
    answered_at: datetime | None = None
    bridged_at: datetime | None = None


class RecordingPauseSpan(Out):
    seq: int = Field(description="1 for the recording's first pause")
    paused_at: datetime
    paused_by: str = Field(description='"agent:<id>", a user name or "token:<id>"')
    resumed_at: datetime | None = Field(default=None, description="none while paused")
    resumed_by: str | None = Field(default=None, description='"system" when the call ended while paused')
    ended_by_call: bool = False


class RecordingPauseStatus(Out):
    attempt_id: uuid.UUID
    recording_id: uuid.UUID
    paused: bool
    spans: list[RecordingPauseSpan] = Field(description="every pause of the recording so far, oldest first")


class TransferStatus(Out):
    attempt_id: uuid.UUID
    kind: Literal["blind", "attended"]
    state: Literal["dialing", "consulting", "conference", "completed", "cancelled", "failed", "customer_gone"] = Field(
        description="dialing: the external number rings; consulting: the agent talks to the target"
    )
    from_agent_id: int
    target: Literal["agent", "campaign", "number"]
    to_agent_id: int | None = Field(default=None, description="the agent who takes (or took) the customer")
    target_campaign_id: int | None = None
    number: str | None = None
    cause: str | None = Field(default=None, description="why it failed")


class DialerControl(Protocol):
    """The dialing engine's controls. Agent methods raise NotFound for an agent that is not
    logged in (or has no open offer / call) and Conflict for a transition its state refuses."""

    async def campaign_changed(self, campaign_id: int) -> None:
        """Called after a change to a campaign committed (settings, state, lists, agents):
        the engine re-reads the campaign and starts, pauses or stops its work. The database
        is the truth; this is a prompt, so it should not raise for ordinary conditions."""

    async def agent_changed(self, agent_id: int) -> None:
        """Called after an agent's settings or campaign assignments changed (or it was
        created or deleted)."""

    async def pause_agent(self, agent_id: int, pause_code: str, *, actor: Actor) -> None: ...

    async def unpause_agent(self, agent_id: int, *, actor: Actor) -> None: ...

    async def end_wrap_up(self, agent_id: int, *, actor: Actor) -> None: ...

    async def log_out_agent(self, agent_id: int, *, actor: Actor) -> None:
        """Log the agent's phone out (its call to the login extension is hung up). NotFound
        when it is not logged in; Conflict while it talks to a customer or one is coming."""

    async def set_disposition(
        self,
        agent_id: int,
        disposition: str,
        *,
        attempt_id: uuid.UUID | None,
        actor: Actor,
        callback_at: datetime | None = None,
        callback_kind: CallbackKind = CallbackKind.PERSONAL,
    ) -> None:
        """Disposition of the agent's call `attempt_id` (None = its current or last call):
        ValidationFailed (field disposition) for a code the campaign lacks; a callback code
        needs `callback_at` (naive = the contact's local time). Audited with the change."""

    async def accept_offer(self, agent_id: int, *, actor: Actor) -> uuid.UUID:
        """Accept the agent's open preview offer; returns the new attempt id."""

    async def skip_offer(self, agent_id: int, reason: str | None, *, actor: Actor) -> None: ...

    async def live_calls(self, *, campaign_id: int | None = None, agent_id: int | None = None) -> list[LiveCall]: ...

    async def hang_up(self, attempt_id: uuid.UUID, *, actor: Actor) -> None:
        """Hang up a live call; NotFound when the attempt has no live call."""

    async def transfer(
        self, agent_id: int, kind: Literal["blind", "attended"], target: dict[str, Any], *, actor: Actor
    ) -> TransferStatus:
        """Transfer the agent's customer (`target`: agent_id | campaign_id | number).
        ValidationFailed names the bad field; Conflict: no call, target not ready, one running."""

    async def transfer_action(
        self, agent_id: int, action: Literal["complete", "cancel", "conference"], *, actor: Actor
    ) -> TransferStatus:
        """Complete, cancel or make a conference of the agent's attended transfer."""

    async def pause_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        """Pause the recording of the agent's current call (silence until resumed). Conflict:
        no_current_call, call_not_recorded, recording_already_paused."""

    async def resume_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        """Resume the recording of the agent's current call. Conflict: no_current_call,
        call_not_recorded, recording_not_paused."""

    async def manual_dial(
        self, agent_id: int, *, campaign_id: int | None, number: str | None, contact_id: int | None, actor: Actor
    ) -> uuid.UUID:
        """Dial a number of campaign `campaign_id`, or a contact, for the agent; the call is
        that agent's. Conflict code dial_refused (details: reason, field) when a pre-dial rule
        refuses it, agent_not_available when the agent is not logged in or not ready or
        paused; returns the attempt id."""


# ------------------------------------------------------------------------ records


class CdrFilter(Query):
    campaign_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    agent_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    since: AwareDatetime | None = Field(default=None, description="created_at >= since")
    until: AwareDatetime | None = Field(default=None, description="created_at < until")
    outcome: Outcome | None = None
    direction: CallDirection | None = Field(default=None, description="outbound or inbound (default: both)")


class Cdr(Out):
    id: uuid.UUID
    direction: CallDirection = Field(
        default=CallDirection.OUTBOUND,
        description="outbound: dialled by HitCall; inbound: a caller reached HitCall (the return-call line)",
    )
    campaign_id: int | None = Field(default=None, description="inbound: none when the caller matched no campaign")
    contact_id: int | None = None
    attempt_no: int | None = Field(default=None, description="outbound only")
    dialled_number: str | None = Field(default=None, description="outbound: the customer's number dialled")
    caller_id: str | None = Field(
        default=None, description="the company's number: presented (outbound) or dialled by the caller (inbound)"
    )
    caller_number: str | None = Field(default=None, description="inbound: the caller's number (none when withheld)")
    agent_id: int | None = None
    mode: CallMode | None = Field(default=None, description="outbound only")
    state: CallState
    created_at: datetime
    originated_at: datetime | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    ring_s: float | None = None
    talk_s: float | None = None
    answer_to_bridge_ms: int | None = None
    outcome: Outcome | None = None
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    abandoned: bool
    disposition: str | None = None
    recording_id: uuid.UUID | None = None
    retention_until: datetime
    anonymised_at: datetime | None = None
    transfer_kind: Literal["blind", "attended"] | None = Field(
        default=None, description="the call's last transfer: blind or attended (none: never transferred)"
    )
    transfer_target: Literal["agent", "campaign", "number"] | None = Field(
        default=None, description="what the agent transferred to"
    )
    transfer_agent_id: int | None = Field(default=None, description="the agent who took the transferred customer")
    transfer_campaign_id: int | None = Field(default=None, description="the campaign whose ready agents were asked")
    transfer_number: str | None = Field(default=None, description="the external number (none once anonymised)")
    transfer_result: Literal["completed", "conference", "cancelled", "failed", "customer_gone"] | None = None
    transfer_cause: str | None = Field(default=None, description="why the transfer failed")
    voicemail_dropped: bool = Field(
        default=False, description="the campaign's voicemail message was left on the answering machine"
    )


class CdrPage(Out):
    items: list[Cdr]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page")


class CdrQuery(Protocol):
    async def query(self, flt: CdrFilter, *, limit: int, cursor: str | None) -> CdrPage:
        """Newest first. ValidationFailed(field "cursor") for a cursor it did not issue."""

    def export_csv(self, flt: CdrFilter) -> AsyncIterator[bytes]:
        """The matching CDRs as CSV (header line first), streamed in chunks."""


class RecordingFilter(Query):
    campaign_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    attempt_id: uuid.UUID | None = None
    since: AwareDatetime | None = Field(default=None, description="created_at >= since")
    until: AwareDatetime | None = Field(default=None, description="created_at < until")
    held: bool | None = Field(default=None, description="only held (true) or not held (false) recordings")


class Recording(Out):
    id: uuid.UUID
    attempt_id: uuid.UUID
    campaign_id: int
    sha256: str
    size_bytes: int
    duration_s: float
    format: str
    created_at: datetime
    retention_until: datetime
    hold_reason: str | None = None
    hold_case_id: str | None = None
    held_until: datetime | None = None
    purged_at: datetime | None = None
    purge_reason: Literal["retention", "erasure"] | None = None
    pauses: list[RecordingPauseSpan] | None = Field(
        default=None,
        description="the spans the agent paused the recording for (silence in the file), in the answer for one"
        " recording; not in lists",
    )


class RecordingPage(Out):
    items: list[Recording]
    next_cursor: str | None = None


@dataclass(frozen=True)
class RecordingFile:
    path: Path
    content_type: str  # e.g. audio/wav
    filename: str  # download name, e.g. <id>.wav


class RecordingsService(Protocol):
    async def list(self, flt: RecordingFilter, *, limit: int, cursor: str | None) -> RecordingPage: ...

    async def get(self, recording_id: uuid.UUID) -> Recording: ...

    async def open(self, recording_id: uuid.UUID) -> RecordingFile:
        """The audio file; NotFound when unknown or purged. The API audits each download
        and listen itself before sending any byte."""

    async def hold(
        self, recording_id: uuid.UUID, *, reason: str, case_id: str | None, until: datetime | None, actor: Actor
    ) -> Recording:
        """Complaint hold until `until` (None = the longest allowed, 18 months from the call);
        ValidationFailed(field "until") beyond that. Audited as recording.hold."""

    async def release(self, recording_id: uuid.UUID, *, actor: Actor) -> Recording:
        """Release a hold; the policy deadline applies again. Audited as recording.release."""


# ------------------------------------------------------------------------ privacy


class SubjectRef(In):
    """A data subject, identified by phone number or e-mail (exactly one)."""

    phone: Phone | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _one(self) -> SubjectRef:
        if (self.phone is None) == (self.email is None):
            raise ValueError("give exactly one of phone or email")
        return self


class Rectification(Patch):
    """Field changes for every contact of the subject: only the fields sent change, null clears."""

    name: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    email: Email | None = None
    organisation: str | None = Field(default=None, max_length=200)
    phone: Phone = UNSET
    timezone: TimeZone | None = None


class SubjectResult(Out):
    action: Literal["rectify", "erase", "restrict", "unrestrict", "object"]
    contacts: int = Field(description="contacts affected")
    details: dict[str, Any] = Field(default_factory=dict)


class RetainedRecording(Out):
    recording_id: uuid.UUID
    reason: str


class ErasureResult(SubjectResult):
    recordings_deleted: int = 0
    recordings_retained: list[RetainedRecording] = Field(default_factory=list)
    suppressed: bool = Field(description="the number is in the suppression list")


@dataclass(frozen=True)
class SubjectExport:
    data: dict[str, Any]  # machine-readable JSON export
    archive: Path | None = (
        None  # zip with the JSON and audio, when audio was asked for; the API deletes it after sending
    )


class PrivacyService(Protocol):
    """Data-subject rights. NotFound for a subject nothing is held about. Each call audits
    itself (subject.export, subject.rectify, subject.erase, subject.restrict, subject.object)."""

    async def export(self, subject: SubjectRef, *, include_audio: bool, actor: Actor) -> SubjectExport: ...

    async def rectify(self, subject: SubjectRef, changes: Rectification, *, actor: Actor) -> SubjectResult: ...

    async def erase(self, subject: SubjectRef, *, actor: Actor) -> ErasureResult: ...

    async def restrict(self, subject: SubjectRef, restricted: bool, *, actor: Actor) -> SubjectResult: ...

    async def object_to_marketing(self, subject: SubjectRef, *, actor: Actor) -> SubjectResult: ...


# ------------------------------------------------------------------------ webhooks


class WebhookReplay(Protocol):
    async def replay(
        self, delivery_ids: Sequence[int], *, actor: str, actor_role: str | None = None, source_ip: str | None = None
    ) -> list[int]:
        """Move the dead deliveries among `delivery_ids` back to pending (deliveries that are
        not dead are left alone), audited as webhook.replay in the same transaction; returns
        the ids replayed."""


class WebhookTargetCheck(Protocol):
    async def check_url(self, url: str, *, field: str = "url") -> None:
        """ValidationFailed naming `field` when the URL's host is, or resolves to, an address
        webhooks may not reach (loopback, private, link-local, metadata ...)."""


def default_webhook_targets() -> WebhookTargetCheck:
    from ..hooks.targets import WebhookTargets

    return WebhookTargets()


# ------------------------------------------------------------------------ monitoring


class MonitoringControl(Protocol):
    """Supervisor monitoring of live calls (`dialer.monitor.Monitor`). Sessions are dicts
    shaped like the API's MonitoringSession. Refusals are Forbidden / Conflict / NotFound
    with the reason as the error code (`core.monitoring.Refusal`)."""

    def active(self) -> list[dict[str, Any]]:
        """The live sessions of this process."""

    async def start_session(
        self, *, user_id: int, username: str, role: str, attempt_id: str, mode: Any, actor: Actor
    ) -> dict[str, Any]: ...

    async def change(self, monitor_id: int, mode: Any, *, user_id: int, role: str, actor: Actor) -> dict[str, Any]: ...

    async def stop(self, monitor_id: int, *, user_id: int, role: str, actor: Actor) -> dict[str, Any]: ...


# ------------------------------------------------------------------------ ApiDeps


@dataclass
class ApiDeps:
    pool: asyncpg.Pool
    metrics: CollectorRegistry  # /metrics serves this registry; the API adds its HTTP metrics to it
    dialer: DialerControl
    cdrs: CdrQuery
    recordings: RecordingsService
    privacy: PrivacyService
    webhooks: WebhookReplay
    ari_connected: Callable[[], bool]
    draining: Callable[[], bool] = lambda: False  # shutting down: not ready, whatever the dependencies say
    passwords: Passwords = field(default_factory=Passwords)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    session_ttl: timedelta = timedelta(hours=12)
    clock: Callable[[], datetime] = utcnow
    metrics_token: str | None = None  # /metrics needs this bearer token (None: open)
    metrics_on_api: bool = True  # False: /metrics is served on a listener of its own, 404 on the API port
    # checks a webhook URL when a subscription is created or changed (default: public addresses only)
    webhook_targets: WebhookTargetCheck = field(default_factory=default_webhook_targets)
    monitoring: MonitoringControl | None = None  # None: monitoring runs in another process (503)
    # a committed change, to the live screens of every node: (event type, subject, payload)
    announce: Callable[[str, str, dict[str, Any]], None] = lambda _type, _subject, _payload: None
