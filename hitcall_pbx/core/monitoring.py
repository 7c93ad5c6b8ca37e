"""Supervisor monitoring rules: who may monitor which call, how each mode is wired, and
the monitoring session's state machine. Pure: no I/O, every time is passed in.

Modes (the supervisor talks and listens on their own SIP phone, parked in a holding
bridge of its own while logged in):

* ``listen``  — a snoop channel on the agent's phone channel spies on both directions
  (the agent's voice and what the agent hears, i.e. the customer) and whispers nothing;
  it joins the supervisor's holding bridge. Nobody hears the supervisor.
* ``whisper`` — the same snoop, also whispering ``out``: what the supervisor says is
  mixed into the audio sent to the agent's phone only. The customer does not hear it.
* ``barge``   — no snoop: the supervisor's phone leaves its holding bridge and joins the
  call's bridge (the agent's bridge), a three-way call; everyone hears everyone.

A change of mode is a plan of steps (`plan`): tear down what the old mode set up, then
set up the new one. Refusals are values (`Refusal`), mapped to HTTP by the adapter.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime

__all__ = [
    "MONITOR_ROLES",
    "EndReason",
    "IllegalMonitorTransition",
    "MonitorEvent",
    "MonitorMode",
    "MonitorSession",
    "MonitorState",
    "Refusal",
    "SnoopSpec",
    "Step",
    "check_change",
    "check_start",
    "may_monitor_campaign",
    "monitor_transition",
    "plan",
    "snoop_spec",
]


class MonitorMode(enum.StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


MONITOR_ROLES = frozenset({"admin", "supervisor"})  # user roles that may monitor calls


@dataclass(frozen=True)
class SnoopSpec:
    """ARI snoop parameters: `spy` (audio heard by the supervisor) and `whisper` (where the
    supervisor's audio goes), as ARI's in / out / both / none."""

    spy: str
    whisper: str


_SNOOP: dict[MonitorMode, SnoopSpec | None] = {
    MonitorMode.LISTEN: SnoopSpec(spy="both", whisper="none"),
    MonitorMode.WHISPER: SnoopSpec(spy="both", whisper="out"),
    MonitorMode.BARGE: None,
}


def snoop_spec(mode: MonitorMode) -> SnoopSpec | None:
    """The snoop on the agent's channel for `mode`; None: the mode joins the call's bridge."""
    return _SNOOP[mode]


def customer_hears(mode: MonitorMode) -> bool:
    """Whether the customer hears the supervisor in `mode` (only in barge)."""
    spec = _SNOOP[mode]
    return spec is None or spec.whisper in ("in", "both")


class Step(enum.StrEnum):
    """What the adapter does, in order, to move a supervisor's phone between modes."""

    HANGUP_SNOOP = "hangup_snoop"  # end the snoop channel on the agent's phone
    LEAVE_CALL = "leave_call"  # the supervisor's phone leaves the call's bridge ...
    RETURN_HOME = "return_home"  # ... and goes back to its own holding bridge
    SNOOP = "snoop"  # a new snoop channel (`snoop_spec(mode)`) joins the holding bridge
    LEAVE_HOME = "leave_home"  # the supervisor's phone leaves its holding bridge ...
    JOIN_CALL = "join_call"  # ... and joins the call's bridge


def plan(old: MonitorMode | None, new: MonitorMode | None) -> tuple[Step, ...]:
    """Steps from `old` (None: not monitoring) to `new` (None: stop monitoring)."""
    if old == new:
        return ()
    steps: list[Step] = []
    if old is not None:
        steps += [Step.HANGUP_SNOOP] if snoop_spec(old) is not None else [Step.LEAVE_CALL, Step.RETURN_HOME]
    if new is not None:
        steps += [Step.SNOOP] if snoop_spec(new) is not None else [Step.LEAVE_HOME, Step.JOIN_CALL]
    return tuple(steps)


# ------------------------------------------------------------------ who may


class Refusal(enum.StrEnum):
    """Why monitoring is refused. The adapter maps each to an HTTP status."""

    ROLE = "role_may_not_monitor"  # 403: the user's role does not monitor calls
    CAMPAIGN = "campaign_not_supervised"  # 403: the call's campaign is not one the supervisor may see
    NO_PHONE = "supervisor_phone_not_logged_in"  # 409: the supervisor's phone is not logged in
    BUSY = "supervisor_already_monitoring"  # 409: one monitoring session per supervisor phone
    NOT_TALKING = "call_not_connected"  # 409: the call is not (yet) talking to an agent
    SAME_MODE = "same_mode"  # 409: the session is already in that mode
    ENDED = "session_ended"  # 409: the session has ended


def may_monitor_campaign(role: str, supervised: Collection[int], campaign_id: int) -> Refusal | None:
    """An admin may monitor every campaign; a supervisor the campaigns assigned to their
    phone's agent row (`supervised`); every other role none."""
    if role not in MONITOR_ROLES:
        return Refusal.ROLE
    if role == "admin" or campaign_id in supervised:
        return None
    return Refusal.CAMPAIGN


def check_start(
    *,
    role: str,
    supervised: Collection[int],
    campaign_id: int,
    phone_logged_in: bool,
    monitoring_now: bool,
    call_talking: bool,
) -> Refusal | None:
    """The first refusal for starting to monitor a call, in the order a caller can act on:
    role, campaign, phone, already monitoring, the call's state."""
    refusal = may_monitor_campaign(role, supervised, campaign_id)
    if refusal is not None:
        return refusal
    if not phone_logged_in:
        return Refusal.NO_PHONE
    if monitoring_now:
        return Refusal.BUSY
    if not call_talking:
        return Refusal.NOT_TALKING
    return None


# ------------------------------------------------------------------ sessions


class MonitorState(enum.StrEnum):
    STARTING = "starting"  # asked for; the first mode's steps are running
    ACTIVE = "active"
    ENDED = "ended"


class MonitorEvent(enum.StrEnum):
    STARTED = "started"  # the first mode's steps succeeded
    CHANGE = "change"  # the supervisor asked for another mode (steps succeeded)
    STOP = "stop"  # ended: by the supervisor, the call's end, the phone's hangup, a failure


class EndReason(enum.StrEnum):
    STOPPED = "stopped"  # the supervisor (API) stopped it
    CALL_ENDED = "call_ended"  # the customer or the agent hung up
    TRANSFERRED = "transferred"  # a transfer took the customer out of the agent's bridge
    SUPERVISOR_GONE = "supervisor_gone"  # the supervisor's phone hung up
    FAILED = "failed"  # Asterisk refused a step (the call went away meanwhile ...)
    ASTERISK_LOST = "asterisk_lost"  # the snoop or the phone vanished while ARI was away
    SERVICE_RESTART = "service_restart"  # found open by a new service process


class IllegalMonitorTransition(Exception):
    pass


@dataclass(frozen=True)
class MonitorSession:
    """One supervisor monitoring one call. `modes`: every mode with the time it began."""

    id: str
    mode: MonitorMode
    state: MonitorState
    created_at: datetime
    modes: tuple[tuple[MonitorMode, datetime], ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: EndReason | None = None

    @classmethod
    def new(cls, session_id: str, mode: MonitorMode, now: datetime) -> MonitorSession:
        return cls(id=session_id, mode=mode, state=MonitorState.STARTING, created_at=now)

    @property
    def live(self) -> bool:
        return self.state is not MonitorState.ENDED

    def seconds_in(self, mode: MonitorMode) -> float:
        """Seconds spent in `mode` (an ended session; a live one counts up to its last change)."""
        total = 0.0
        spans = list(self.modes)
        for i, (m, at) in enumerate(spans):
            end = spans[i + 1][1] if i + 1 < len(spans) else self.ended_at
            if m is mode and end is not None:
                total += max(0.0, (end - at).total_seconds())
        return total


def check_change(session: MonitorSession, mode: MonitorMode) -> Refusal | None:
    if session.state is MonitorState.ENDED:
        return Refusal.ENDED
    if session.mode is mode:
        return Refusal.SAME_MODE
    return None


def monitor_transition(
    session: MonitorSession,
    event: MonitorEvent,
    now: datetime,
    *,
    mode: MonitorMode | None = None,
    reason: EndReason | None = None,
) -> MonitorSession:
    """The session after `event`. Times never go backwards (an earlier `now` is taken as
    the latest recorded time). Stopping an ended session is refused; so is a change to
    the current mode, or any event not listed."""
    latest = max([session.created_at, *(at for _, at in session.modes)])
    now = max(now, latest)
    state = session.state
    if event is MonitorEvent.STARTED and state is MonitorState.STARTING:
        return replace(session, state=MonitorState.ACTIVE, started_at=now, modes=((session.mode, now),))
    if event is MonitorEvent.CHANGE and state is MonitorState.ACTIVE:
        if mode is None or mode is session.mode:
            raise IllegalMonitorTransition(f"change to {mode} from {session.mode}")
        return replace(session, mode=mode, modes=(*session.modes, (mode, now)))
    if event is MonitorEvent.STOP and state is not MonitorState.ENDED:
        return replace(
            session,
            state=MonitorState.ENDED,
            ended_at=now,
            end_reason=reason or EndReason.STOPPED,
            started_at=session.started_at,
        )
    raise IllegalMonitorTransition(f"{event} in state {state}")
