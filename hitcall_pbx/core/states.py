"""Agent and call-attempt state machines as pure, table-driven transition functions.

Every transition takes `now`; an illegal transition raises IllegalTransition.
Timestamps never go backwards: an event stamped earlier than the latest recorded
time (Asterisk events from different channels can arrive a few ms out of order)
is recorded at that latest time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType

from hitcall_pbx.errors import Conflict, ValidationFailed

__all__ = [
    "AGENT_TRANSITIONS",
    "CALL_TRANSITIONS",
    "Agent",
    "AgentEffect",
    "AgentEvent",
    "AgentState",
    "AgentTransition",
    "Call",
    "CallEvent",
    "CallMetrics",
    "CallState",
    "IllegalTransition",
    "StateSpan",
    "agent_tick",
    "agent_transition",
    "call_transition",
    "new_call",
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


def _aware(now: object, name: str = "now") -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValidationFailed(f"{name} must be a timezone-aware datetime", details={"field": name})
    return now


# =========================================================================== agents


class AgentState(enum.StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class AgentEvent(enum.StrEnum):
    LOGIN = "login"
    RESERVE = "reserve"  # a call is being offered / dialled for this agent
    RELEASE = "release"  # the reservation is given back (no answer, skip)
    CONNECT = "connect"  # the customer joined the agent's bridge
    HANGUP = "hangup"  # the customer leg ended: wrap-up starts
    WRAP_DONE = "wrap_done"  # the agent ended wrap-up
    WRAP_TIMEOUT = "wrap_timeout"  # the campaign's wrap-up seconds are over
    PAUSE = "pause"  # with a pause code; also changes the code while paused
    UNPAUSE = "unpause"
    LOGOUT = "logout"  # includes the agent hanging up the phone


class AgentEffect(enum.StrEnum):
    START_WRAP_TIMER = "start_wrap_timer"
    CANCEL_WRAP_TIMER = "cancel_wrap_timer"
    RELEASE_RESERVATION = "release_reservation"
    HANG_UP_CUSTOMER = "hang_up_customer"


_S, _E, _X = AgentState, AgentEvent, AgentEffect

AGENT_TRANSITIONS: Mapping[tuple[AgentState, AgentEvent], tuple[AgentState, tuple[AgentEffect, ...]]] = (
    MappingProxyType(
        {
            (_S.LOGGED_OUT, _E.LOGIN): (_S.READY, ()),
            (_S.READY, _E.RESERVE): (_S.RESERVED, ()),
            (_S.READY, _E.PAUSE): (_S.PAUSED, ()),
            (_S.READY, _E.LOGOUT): (_S.LOGGED_OUT, ()),
            (_S.RESERVED, _E.RELEASE): (_S.READY, ()),
            (_S.RESERVED, _E.CONNECT): (_S.ON_CALL, ()),
            (_S.RESERVED, _E.LOGOUT): (_S.LOGGED_OUT, (_X.RELEASE_RESERVATION,)),
            (_S.ON_CALL, _E.HANGUP): (_S.WRAP_UP, (_X.START_WRAP_TIMER,)),
            (_S.ON_CALL, _E.LOGOUT): (_S.LOGGED_OUT, (_X.HANG_UP_CUSTOMER,)),
            (_S.WRAP_UP, _E.WRAP_DONE): (_S.READY, (_X.CANCEL_WRAP_TIMER,)),
            (_S.WRAP_UP, _E.WRAP_TIMEOUT): (_S.READY, ()),
            (_S.WRAP_UP, _E.PAUSE): (_S.PAUSED, (_X.CANCEL_WRAP_TIMER,)),
            (_S.WRAP_UP, _E.LOGOUT): (_S.LOGGED_OUT, (_X.CANCEL_WRAP_TIMER,)),
            (_S.PAUSED, _E.PAUSE): (_S.PAUSED, ()),
            (_S.PAUSED, _E.UNPAUSE): (_S.READY, ()),
            (_S.PAUSED, _E.LOGOUT): (_S.LOGGED_OUT, ()),
        }
    )
)


@dataclass(frozen=True)
class Agent:
    """An agent's current state; `since` is when it was entered (None before the
    first login)."""

    state: AgentState = AgentState.LOGGED_OUT
    since: datetime | None = None
    pause_code: str | None = None
    wrap_until: datetime | None = None


@dataclass(frozen=True)
class StateSpan:
    """One closed interval of agent time, for agent time accounting."""

    state: AgentState
    pause_code: str | None
    started: datetime
    ended: datetime

    @property
    def seconds(self) -> float:
        return (self.ended - self.started).total_seconds()


@dataclass(frozen=True)
class AgentTransition:
    agent: Agent
    span: StateSpan | None  # the interval just closed (None for the very first login)
    effects: tuple[AgentEffect, ...]


def agent_transition(
    agent: Agent,
    event: AgentEvent | str,
    now: datetime,
    *,
    pause_code: str | None = None,
    wrap_s: float = 0,
) -> AgentTransition:
    """Apply `event` to `agent` at `now`.

    PAUSE needs `pause_code`; HANGUP uses `wrap_s` (the campaign's wrap-up
    seconds, 0 allowed: WRAP_TIMEOUT is then due at once). WRAP_TIMEOUT is only
    legal once `wrap_until` has passed.
    """
    _aware(now)
    try:
        ev = AgentEvent(event)
    except ValueError:
        raise ValidationFailed("unknown agent event", details={"field": "event", "value": str(event)}) from None
    entry = AGENT_TRANSITIONS.get((agent.state, ev))
    if entry is None:
        raise IllegalTransition("agent", agent.state.value, ev.value)
    new_state, effects = entry
    at = now if agent.since is None else max(now, agent.since)

    code: str | None = None
    wrap_until: datetime | None = None
    if ev is AgentEvent.PAUSE:
        if not isinstance(pause_code, str) or not pause_code.strip():
            raise ValidationFailed("a pause needs a pause code", details={"field": "pause_code"})
        code = pause_code.strip()
    elif ev is AgentEvent.HANGUP:
        if isinstance(wrap_s, bool) or not isinstance(wrap_s, (int, float)) or not 0 <= wrap_s <= 86_400:
            raise ValidationFailed("wrap_s must be between 0 and 86400 seconds", details={"field": "wrap_s"})
        wrap_until = at + timedelta(seconds=wrap_s)
    elif ev is AgentEvent.WRAP_TIMEOUT:
        if agent.wrap_until is not None and at < agent.wrap_until:
            raise IllegalTransition("agent", agent.state.value, ev.value, "wrap-up time not over")

    span = None
    if agent.since is not None:
        span = StateSpan(agent.state, agent.pause_code, agent.since, at)
    return AgentTransition(Agent(new_state, at, code, wrap_until), span, effects)


def agent_tick(agent: Agent, now: datetime) -> AgentTransition | None:
    """The automatic end of wrap-up, when due at `now`; None otherwise."""
    _aware(now)
    if agent.state is AgentState.WRAP_UP and (agent.wrap_until is None or now >= agent.wrap_until):
        return agent_transition(agent, AgentEvent.WRAP_TIMEOUT, now)
    return None


# =========================================================================== calls


class CallState(enum.StrEnum):
    RESERVED = "reserved"  # attempt id allocated, contact taken, not yet originated
    ORIGINATING = "originating"
    RINGING = "ringing"
    ANSWERED = "answered"
    BRIDGED = "bridged"  # customer in an agent's bridge
    ENDED = "ended"


class CallEvent(enum.StrEnum):
    ORIGINATE = "originate"
    RING = "ring"
    ANSWER = "answer"
    BRIDGE = "bridge"
    END = "end"


_C, _CE = CallState, CallEvent

CALL_TRANSITIONS: Mapping[tuple[CallState, CallEvent], CallState] = MappingProxyType(
    {
        (_C.RESERVED, _CE.ORIGINATE): _C.ORIGINATING,
        (_C.ORIGINATING, _CE.RING): _C.RINGING,
        # Local channels may report Up without a Ringing state first.
        (_C.ORIGINATING, _CE.ANSWER): _C.ANSWERED,
        (_C.RINGING, _CE.ANSWER): _C.ANSWERED,
        (_C.ANSWERED, _CE.BRIDGE): _C.BRIDGED,
        **{(s, _CE.END): _C.ENDED for s in CallState if s is not _C.ENDED},
    }
)

_STAMP = {
    CallState.ORIGINATING: "originated_at",
    CallState.RINGING: "ringing_at",
    CallState.ANSWERED: "answered_at",
    CallState.BRIDGED: "bridged_at",
    CallState.ENDED: "ended_at",
}


@dataclass(frozen=True)
class CallMetrics:
    ring_s: float  # ringing (or originate when no ringing was seen) → answer or end
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
    hangup_cause: int | None = None
    metrics: CallMetrics | None = None

    @property
    def last_at(self) -> datetime:
        stamps = [
            self.created_at,
            self.originated_at,
            self.ringing_at,
            self.answered_at,
            self.bridged_at,
            self.ended_at,
        ]
        return max(s for s in stamps if s is not None)


def new_call(attempt_id: str, now: datetime) -> Call:
    """A reserved attempt (its id exists before originate)."""
    _aware(now)
    if not isinstance(attempt_id, str) or not attempt_id:
        raise ValidationFailed("attempt_id must be a non-empty string", details={"field": "attempt_id"})
    return Call(attempt_id=attempt_id, state=CallState.RESERVED, created_at=now)


def _metrics(call: Call) -> CallMetrics:
    assert call.ended_at is not None
    ring_s = 0.0
    ring_from = call.ringing_at or call.originated_at
    if ring_from is not None:
        ring_s = ((call.answered_at or call.ended_at) - ring_from).total_seconds()
    talk_s = 0.0 if call.bridged_at is None else (call.ended_at - call.bridged_at).total_seconds()
    a2b = None
    if call.bridged_at is not None and call.answered_at is not None:
        a2b = round((call.bridged_at - call.answered_at) / timedelta(milliseconds=1))
    return CallMetrics(ring_s=ring_s, talk_s=talk_s, answer_to_bridge_ms=a2b)


def call_transition(call: Call, event: CallEvent | str, now: datetime, *, cause: int | None = None) -> Call:
    """Apply `event` at `now`; END records `cause` and computes the metrics."""
    _aware(now)
    try:
        ev = CallEvent(event)
    except ValueError:
        raise ValidationFailed("unknown call event", details={"field": "event", "value": str(event)}) from None
    new_state = CALL_TRANSITIONS.get((call.state, ev))
    if new_state is None:
        raise IllegalTransition("call", call.state.value, ev.value)
    at = max(now, call.last_at)
    changes: dict[str, object] = {"state": new_state, _STAMP[new_state]: at}
    if new_state is CallState.ENDED:
        if cause is not None and (isinstance(cause, bool) or not isinstance(cause, int) or cause < 0):
            raise ValidationFailed("hangup cause must be an integer >= 0", details={"field": "cause"})
        changes["hangup_cause"] = cause
    out = replace(call, **changes)  # type: ignore[arg-type]
    if new_state is CallState.ENDED:
        out = replace(out, metrics=_metrics(out))
    return out
