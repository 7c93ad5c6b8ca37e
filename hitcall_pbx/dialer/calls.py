"""A live call as the dialer follows it: the attempt, its campaign, the core lifecycle
state (`core.calls.Call`, changed only through `call_transition`) and the runtime
handles that only matter while the call is up (timers, the agent it is reserved for,
the information-message playback). Plus the CDR row and event payloads it ends with."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..core.calls import Call, CallEvent, CallState, call_transition, new_call
from ..core.transfer import Legs, Transfer
from ..stasis import StasisKind
from .models import Attempt, Campaign


class CdrSink(Protocol):
    def submit(self, record: dict[str, Any]) -> None: ...


@dataclass(eq=False)
class LiveCall:
    attempt: Attempt
    campaign: Campaign
    fsm: Call
    agent_id: int | None = None  # reserved (progressive/preview/callback) or connected agent
    reserved: bool = False
    placed_mono: float = field(default_factory=time.monotonic)
    answered_mono: float | None = None
    answer_observed: bool = False  # the answer is in the pacing statistics (counted at the answer)
    disposition: str | None = None
    info_playback: str | None = None
    timer: asyncio.TimerHandle | None = None
    recording_id: uuid.UUID | None = None
    voicemail_dropped: bool = False  # the campaign's message was left on the answering machine
    added_at: datetime | None = None  # the agent's bridge accepted the customer (ARI request returned)
    slot: int | None = None  # line slot: where the dialplan stamps the answer (core.answer_stamp)
    transfer: Transfer | None = None  # the call's last transfer (dialer.transfer)
    legs: Legs = field(default_factory=Legs)  # who talked to the customer when (written as they end)

    @classmethod
    def placed(cls, attempt: Attempt, campaign: Campaign, *, agent_id: int | None = None) -> LiveCall:
        """A call about to be originated (its attempt row is committed)."""
        return cls(
            attempt=attempt,
            campaign=campaign,
            fsm=new_call(str(attempt.id), attempt.created_at),
            agent_id=agent_id,
            reserved=agent_id is not None,
        )

    def apply(self, event: CallEvent, now: datetime, **kw: Any) -> Call:
        self.fsm = call_transition(self.fsm, event, now, **kw)
        return self.fsm

    @property
    def channel_id(self) -> str:
        return self.attempt.channel_id

    @property
    def state(self) -> CallState:
        return self.fsm.state

    @property
    def originated_at(self) -> datetime | None:
        return self.fsm.originated_at

    @property
    def ringing_at(self) -> datetime | None:
        return self.fsm.ringing_at

    @property
    def answered_at(self) -> datetime | None:
        return self.fsm.answered_at

    @property
    def bridged_at(self) -> datetime | None:
        return self.fsm.bridged_at

    @property
    def abandoned(self) -> bool:
        return self.fsm.abandoned


def is_agent_phone(channel: Any) -> bool:
    """An agent's phone: a SIP channel that is not a caller the return-call line handed to
    the inbound router (a trunk's caller is a SIP channel too; it is in Stasis with the
    ``inbound`` arguments), nor a call from the other server for an agent here (``peer``)."""
    if not channel.name.startswith("PJSIP/"):
        return False
    dialplan = getattr(channel, "dialplan", None)
    if dialplan is None or getattr(dialplan, "app_name", "") != "Stasis":
        return True
    args = [a.strip() for a in (getattr(dialplan, "app_data", "") or "").split(",")]
    return not (len(args) > 1 and args[1] in (StasisKind.INBOUND.value, StasisKind.PEER.value))


def agent_bridges(bridges: list[Any], live: dict[str, Any]) -> dict[int, tuple[list[str], list[str]]]:
    """Agents' holding bridges that hold the agent's phone: agent id → (phone channels,
    other channels in the bridge, i.e. the customer talking to the agent)."""
    found: dict[int, tuple[list[str], list[str]]] = {}
    for bridge in bridges:
        if not bridge.id.startswith("hitcall-agent-"):
            continue
        try:
            agent_id = int(bridge.id.removeprefix("hitcall-agent-"))
        except ValueError:
            continue
        members = [c for c in bridge.channels if c in live]
        phones = [c for c in members if is_agent_phone(live[c])]
        if phones:
            found[agent_id] = (phones, [c for c in members if c not in phones])
    return found


def cdr_record(call: LiveCall) -> dict[str, Any]:
    """The CDR row of an ended call."""
    a, c = call.attempt, call.fsm
    assert c.outcome is not None and c.metrics is not None, "a CDR is written for an ended call only"
    return {
        "id": a.id,
        "direction": "outbound",
        "campaign_id": a.campaign_id,
        "contact_id": a.contact_id,
        "attempt_no": a.attempt_no,
        "dialled_number": a.number,
        "caller_id": a.caller_id,
        # a transferred call keeps the agent who took it (its first leg); legs name the others
        "agent_id": (call.legs.items[0].agent_id if call.legs.items else call.agent_id) if c.bridged_at else a.agent_id,
        "mode": a.mode.value,
        "state": CallState.ENDED.value,
        "created_at": a.created_at,
        "originated_at": c.originated_at,
        "ringing_at": c.ringing_at,
        "answered_at": c.answered_at,
        "bridged_at": c.bridged_at,
        "ended_at": c.ended_at,
        "ring_s": round(c.metrics.ring_s, 3),
        "talk_s": round(c.metrics.talk_s, 3),
        "answer_to_bridge_ms": c.answer_to_bridge_ms,
        "outcome": c.outcome.value,
        "hangup_cause": c.hangup_cause,
        "hangup_cause_txt": c.hangup_cause_txt,
        "amd_status": c.amd_status,
        "amd_cause": c.amd_cause,
        "abandoned": c.abandoned,
        "disposition": call.disposition,
        "skip_reason": None,
        "recording_id": call.recording_id,
        "voicemail_dropped": call.voicemail_dropped,
        "retention_until": a.retention_until,
        **transfer_columns(call.transfer),
    }


def transfer_columns(t: Transfer | None) -> dict[str, Any]:
    """The CDR's transfer columns (migration 0012) for the call's last transfer."""
    if t is None:
        return {}
    result = t.result
    return {
        "transfer_kind": t.kind.value,
        "transfer_target": t.target.kind.value,
        "transfer_agent_id": t.to_agent_id,
        "transfer_campaign_id": t.target.campaign_id,
        "transfer_number": t.target.number,
        "transfer_result": result.value if result else "customer_gone",
        "transfer_cause": t.cause,
    }


def json_payload(record: dict[str, Any]) -> dict[str, Any]:
    """A CDR row as a webhook payload (ids and times as strings)."""
    return {k: (str(v) if isinstance(v, (uuid.UUID, datetime)) else v) for k, v in record.items()}
