"""The call-attempt lifecycle: one pure, table-driven state machine for every call the
dialer places, from the attempt id allocated before originate to the CDR.

The dialer changes a call only through `call_transition`; the outcome, the abandon
flag and the CDR metrics (ring, talk, answer → bridge) are computed here once, and
restart recovery closes the attempts a dead process left with `recovered_outcome`.

Every transition takes `now`; timestamps never go backwards: an event stamped
earlier than the latest recorded time (Asterisk stamps with milliseconds, the
service with microseconds, events of different channels can cross) is recorded at
that latest time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType

from hitcall_pbx.core.outcomes import CallFacts, Outcome, classify_outcome
from hitcall_pbx.errors import Conflict, ValidationFailed

__all__ = [
    "CALL_TRANSITIONS",
    "DIALLING_STATES",
    "Call",
    "CallEvent",
    "CallMetrics",
    "CallState",
    "IllegalTransition",
    "adopted_call",
    "call_transition",
    "new_call",
    "recovered_outcome",
]


class IllegalTransition(Conflict):
    code = "illegal_transition"

    def __init__(self, machine: str, state: str, event: str, why: str | None = None) -> None:
        message = f"{machine}: event {event!r} is not allowed in state {state!r}"
        if why:
            message += f" ({why})"
        super().__init__(message, details={"machine": machine, "state": state, "event": event})
        self.state = state
        self.event = event


def aware(now: object, name: str = "now") -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValidationFailed(f"{name} must be a timezone-aware datetime", details={"field": name})
    return now


class CallState(enum.StrEnum):
    RESERVED = "reserved"  # attempt id allocated, contact taken, originate not yet taken by Asterisk
    ORIGINATING = "originating"  # Asterisk took the originate
    RINGING = "ringing"
    ANSWERED = "answered"  # answered, not (yet) with an agent: AMD, waiting, or the info message
    BRIDGED = "bridged"  # customer in an agent's bridge
    ENDED = "ended"


# A call on its way to the customer: counted by pacing as a line in flight.
DIALLING_STATES = frozenset({CallState.RESERVED, CallState.ORIGINATING, CallState.RINGING})


class CallEvent(enum.StrEnum):
    ORIGINATE = "originate"  # Asterisk took the originate (its response or the channel's first event)
    RING = "ring"
    ANSWER = "answer"
    AMD = "amd"  # answering-machine detection reported its result
    ABANDON = "abandon"  # no agent within the limit: the customer hears the information message
    BRIDGE = "bridge"
    END = "end"


_C, _E = CallState, CallEvent

CALL_TRANSITIONS: Mapping[tuple[CallState, CallEvent], CallState] = MappingProxyType(
    {
        (_C.RESERVED, _E.ORIGINATE): _C.ORIGINATING,
        (_C.ORIGINATING, _E.RING): _C.RINGING,
        # Local channels may report Up without a Ringing state first.
        (_C.ORIGINATING, _E.ANSWER): _C.ANSWERED,
        (_C.RINGING, _E.ANSWER): _C.ANSWERED,
        (_C.ANSWERED, _E.AMD): _C.ANSWERED,
        (_C.ANSWERED, _E.ABANDON): _C.ANSWERED,
        (_C.ANSWERED, _E.BRIDGE): _C.BRIDGED,
        **{(s, _E.END): _C.ENDED for s in CallState if s is not _C.ENDED},
    }
)


@dataclass(frozen=True)
class CallMetrics:
    ring_s: float  # originate (or the attempt's creation) → answer or end
    talk_s: float  # bridged → end
    answer_to_bridge_ms: int | None  # None when never bridged


@dataclass(frozen=True)
class Call:
    attempt_id: str
    state: CallState
    created_at: datetime
    originated_at: datetime | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    answer_to_bridge_ms: int | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    abandoned: bool = False  # counted against the abandon cap (once)
    cancelled: bool = False  # the service ended it before it reached the customer
    vanished: bool = False  # its channel went away while its events were lost
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    outcome: Outcome | None = None  # set at END
    metrics: CallMetrics | None = None  # set at END

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    @property
    def last_at(self) -> datetime:
        stamps = (self.created_at, self.originated_at, self.ringing_at, self.answered_at, self.bridged_at)
        return max(s for s in stamps if s is not None)


def new_call(attempt_id: str, now: datetime) -> Call:
    """A reserved attempt: its id and row exist before originate."""
    aware(now)
    if not isinstance(attempt_id, str) or not attempt_id:
        raise ValidationFailed("attempt_id must be a non-empty string", details={"field": "attempt_id"})
    return Call(attempt_id=attempt_id, state=CallState.RESERVED, created_at=now)


def adopted_call(
    attempt_id: str,
    *,
    created_at: datetime,
    originated_at: datetime | None,
    ringing_at: datetime | None,
    answered_at: datetime,
    bridged_at: datetime,
    answer_to_bridge_ms: int | None,
) -> Call:
    """A call a previous process put through to an agent, still talking when this one
    started: followed from BRIDGED to its end like any other call."""
    for name, value in (("created_at", created_at), ("answered_at", answered_at), ("bridged_at", bridged_at)):
        aware(value, name)
    return Call(
        attempt_id=attempt_id,
        state=CallState.BRIDGED,
        created_at=created_at,
        originated_at=originated_at or created_at,
        ringing_at=ringing_at,
        answered_at=answered_at,
        bridged_at=bridged_at,
        answer_to_bridge_ms=answer_to_bridge_ms,
    )


def _outcome(call: Call) -> Outcome:
    """A channel that vanished unanswered while its events were lost (Asterisk crashed,
    ARI away) says nothing about the customer: congestion (retried), never a final
    failure."""
    if call.vanished and not call.answered and not call.cancelled:
        return Outcome.CONGESTION
    return classify_outcome(
        CallFacts(
            answered=call.answered,
            hangup_cause=call.hangup_cause,
            bridged=call.bridged_at is not None,
            answer_to_bridge_ms=call.answer_to_bridge_ms,
            amd_status=call.amd_status,
            cancelled=call.cancelled,
        )
    )


def _metrics(call: Call) -> CallMetrics:
    assert call.ended_at is not None
    start = call.originated_at or call.created_at
    ring_s = max(0.0, ((call.answered_at or call.ended_at) - start).total_seconds())
    talk_s = 0.0 if call.bridged_at is None else max(0.0, (call.ended_at - call.bridged_at).total_seconds())
    return CallMetrics(ring_s=ring_s, talk_s=talk_s, answer_to_bridge_ms=call.answer_to_bridge_ms)


def call_transition(
    call: Call,
    event: CallEvent | str,
    now: datetime,
    *,
    cause: int | None = None,
    cause_txt: str | None = None,
    amd_status: str | None = None,
    amd_cause: str | None = None,
    vanished: bool = False,
    cancelled: bool = False,
) -> Call:
    """Apply `event` at `now`.

    AMD records `amd_status`/`amd_cause`; END records the hangup `cause` and
    `cause_txt`, whether the channel `vanished` or the service `cancelled` the call,
    then the outcome, the abandon flag and the metrics.
    """
    aware(now)
    try:
        ev = CallEvent(event)
    except ValueError:
        raise ValidationFailed("unknown call event", details={"field": "event", "value": str(event)}) from None
    new_state = CALL_TRANSITIONS.get((call.state, ev))
    if new_state is None:
        raise IllegalTransition("call", call.state.value, ev.value)
    at = max(now, call.last_at)
    if ev is CallEvent.ORIGINATE:
        return replace(call, state=new_state, originated_at=at)
    if ev is CallEvent.RING:
        return replace(call, state=new_state, ringing_at=at)
    if ev is CallEvent.ANSWER:
        return replace(call, state=new_state, answered_at=at, ringing_at=call.ringing_at or call.originated_at or at)
    if ev is CallEvent.AMD:
        return replace(call, amd_status=amd_status or None, amd_cause=amd_cause or None)
    if ev is CallEvent.ABANDON:
        return replace(call, abandoned=True)
    if ev is CallEvent.BRIDGE:
        assert call.answered_at is not None
        a2b = max(0, int((at - call.answered_at).total_seconds() * 1000))
        return replace(call, state=new_state, bridged_at=at, answer_to_bridge_ms=a2b)
    # END
    if cause is not None and (isinstance(cause, bool) or not isinstance(cause, int) or cause < 0):
        raise ValidationFailed("hangup cause must be an integer >= 0", details={"field": "cause"})
    ended = replace(
        call,
        state=new_state,
        ended_at=at,
        hangup_cause=cause,
        hangup_cause_txt=cause_txt or call.hangup_cause_txt,
        vanished=call.vanished or vanished,
        cancelled=call.cancelled or cancelled,
    )
    outcome = _outcome(ended)
    ended = replace(ended, outcome=outcome, abandoned=ended.abandoned or outcome is Outcome.ABANDONED)
    return replace(ended, metrics=_metrics(ended))


def recovered_outcome(*, answered: bool, bridged: bool) -> Outcome:
    """The outcome of an attempt a stopped process left open and nobody can follow any
    more: talked to an agent → answered; answered but never with an agent → abandoned
    (it counts against the cap); never answered → cancelled (it never reached the
    customer, so it is dialled again)."""
    if bridged:
        return Outcome.ANSWERED_HUMAN
    if answered:
        return Outcome.ABANDONED
    return Outcome.CANCELLED
