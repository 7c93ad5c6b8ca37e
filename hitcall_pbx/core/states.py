"""The agent state machine as a pure, table-driven transition function (the call
lifecycle is in `core.calls`).

Every transition takes `now`; an illegal transition raises IllegalTransition.
Timestamps never go backwards: an event stamped earlier than the latest recorded
time (Asterisk events from different channels can arrive a few ms out of order)
is recorded at that latest time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from hitcall_pbx.core.calls import IllegalTransition
from hitcall_pbx.core.calls import aware as _aware
from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "AGENT_TRANSITIONS",
    "Agent",
    "AgentEffect",
    "AgentEvent",
    "AgentState",
    "AgentTransition",
    "IllegalTransition",
    "StateSpan",
    "agent_tick",
    "agent_transition",
]


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
    elif ev is AgentEvent.WRAP_TIMEOUT and agent.wrap_until is not None and at < agent.wrap_until:
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
