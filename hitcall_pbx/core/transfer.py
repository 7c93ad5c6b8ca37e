"""Transfers and conference as pure rules: the target an agent names, the life of one
transfer (a table-driven state machine whose transitions return the effects the ARI
adapter carries out), and the call's legs (who talked to the customer, from when to when).

A blind transfer hands the customer over at once: to a ready agent (by id, or the
longest-ready agent of a campaign) straight into that agent's bridge, or to an external
number that is dialled while the customer hears music; the transferring agent leaves when
the transfer starts. An attended transfer puts the customer on hold (music) while the
agent talks to the target (a ready agent, or an external number once it answers); then
the agent completes it (the agent leaves, customer and target talk), cancels it (the
target leaves, the agent has the customer back) or makes it a three-way conference. A
conference ends as a completed transfer when the agent leaves, or as cancelled when the
target leaves.

What happens when a party goes away: the customer → the transfer ends (`customer_gone`)
with the call; the target refuses, is busy, does not answer or hangs up → `failed`: the
customer is back with the agent in an attended transfer, the call ends in a blind one
(nobody is left to take the customer); the transferring agent hangs up during a
consultation or conference → the transfer completes (as a desk phone does); while an
external target still rings in an attended transfer → it goes on as a blind one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from hitcall_pbx.core.calls import IllegalTransition
from hitcall_pbx.core.calls import aware as _aware
from hitcall_pbx.core.phone import normalize_e164
from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "TRANSFER_TRANSITIONS",
    "Leg",
    "LegRole",
    "Legs",
    "Target",
    "TargetKind",
    "Transfer",
    "TransferEffect",
    "TransferEvent",
    "TransferKind",
    "TransferResult",
    "TransferState",
    "parse_target",
    "start_transfer",
    "transfer_transition",
]


class TransferKind(enum.StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class TargetKind(enum.StrEnum):
    AGENT = "agent"
    CAMPAIGN = "campaign"
    NUMBER = "number"


@dataclass(frozen=True)
class Target:
    """What the agent asked for: exactly one of an agent, a campaign or an E.164 number."""

    kind: TargetKind
    agent_id: int | None = None
    campaign_id: int | None = None
    number: str | None = None

    @property
    def external(self) -> bool:
        return self.kind is TargetKind.NUMBER

    def describe(self) -> str:
        if self.kind is TargetKind.AGENT:
            return f"agent:{self.agent_id}"
        if self.kind is TargetKind.CAMPAIGN:
            return f"campaign:{self.campaign_id}"
        return f"number:{self.number}"


_ID_MAX = 2**63 - 1


def _positive_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _ID_MAX:
        raise ValidationFailed(f"{field} must be a positive integer id", details={"field": field})
    return value


def parse_target(data: Mapping[str, Any], *, field: str = "target") -> Target:
    """The target of a transfer from its JSON form ``{agent_id | campaign_id | number}``:
    exactly one key; a number is checked and normalised to E.164 (national numbers are
    read as Finnish). ValidationFailed names the field (``target.number`` …)."""
    given = [k for k in ("agent_id", "campaign_id", "number") if data.get(k) is not None]
    unknown = sorted(set(data) - {"agent_id", "campaign_id", "number"})
    if unknown:
        raise ValidationFailed(f"unknown field {unknown[0]}", details={"field": f"{field}.{unknown[0]}"})
    if len(given) != 1:
        raise ValidationFailed(
            "the target needs exactly one of agent_id, campaign_id, number", details={"field": field}
        )
    key = given[0]
    if key == "agent_id":
        return Target(TargetKind.AGENT, agent_id=_positive_id(data[key], f"{field}.agent_id"))
    if key == "campaign_id":
        return Target(TargetKind.CAMPAIGN, campaign_id=_positive_id(data[key], f"{field}.campaign_id"))
    return Target(TargetKind.NUMBER, number=normalize_e164(data[key], field=f"{field}.number"))


class TransferState(enum.StrEnum):
    DIALING = "dialing"  # an external target rings; the customer hears music
    CONSULTING = "consulting"  # attended: the agent talks to the target, the customer on hold
    CONFERENCE = "conference"  # customer, agent and target together
    COMPLETED = "completed"  # the customer talks to the target; the transferring agent left
    CANCELLED = "cancelled"  # the target left; the agent has the customer back
    FAILED = "failed"  # the target refused, was busy, did not answer or went away
    CUSTOMER_GONE = "customer_gone"  # the customer hung up during the transfer

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {TransferState.COMPLETED, TransferState.CANCELLED, TransferState.FAILED, TransferState.CUSTOMER_GONE}
)


class TransferEvent(enum.StrEnum):
    TARGET_ANSWERED = "target_answered"  # the external number answered
    TARGET_FAILED = "target_failed"  # busy, no answer, refused, hung up, logged out
    COMPLETE = "complete"  # the agent hands the customer over (attended)
    CANCEL = "cancel"  # the agent takes the customer back (attended)
    CONFERENCE = "conference"  # the agent makes it a three-way call (attended)
    CUSTOMER_GONE = "customer_gone"
    AGENT_GONE = "agent_gone"  # the transferring agent hung up its phone


class TransferEffect(enum.StrEnum):
    """What the adapter does, in this order, after a transition."""

    HOLD_CUSTOMER = "hold_customer"  # customer out of the agent's bridge, into music on hold
    DIAL_TARGET = "dial_target"  # originate the external number
    CONSULT = "consult"  # the target joins the transferring agent's bridge
    CONFERENCE = "conference"  # the customer joins the agent's bridge, where the target is
    HAND_OVER = "hand_over"  # customer and target together, without the transferring agent
    UNHOLD_CUSTOMER = "unhold_customer"  # the customer back into the agent's bridge
    DROP_TARGET = "drop_target"  # the target leaves: an agent goes home released, a number is hung up
    AGENT_LEAVES = "agent_leaves"  # the transferring agent is done with the call: wrap-up
    END_CALL = "end_call"  # nobody is left for the customer: hang up


class TransferResult(enum.StrEnum):
    """The CDR's transfer_result: how the call's (last) transfer ended."""

    COMPLETED = "completed"
    CONFERENCE = "conference"
    CANCELLED = "cancelled"
    FAILED = "failed"
    CUSTOMER_GONE = "customer_gone"


_S, _E, _X = TransferState, TransferEvent, TransferEffect
_BLIND, _ATT = TransferKind.BLIND, TransferKind.ATTENDED

# (kind, state, event) -> (next state, effects). Targets that are agents never ring
# (an agent's phone is off-hook in its bridge), so DIALING is for numbers only.
TRANSFER_TRANSITIONS: Mapping[
    tuple[TransferKind, TransferState, TransferEvent], tuple[TransferState, tuple[TransferEffect, ...]]
] = MappingProxyType(
    {
        (_BLIND, _S.DIALING, _E.TARGET_ANSWERED): (_S.COMPLETED, (_X.HAND_OVER,)),
        (_BLIND, _S.DIALING, _E.TARGET_FAILED): (_S.FAILED, (_X.END_CALL,)),
        (_BLIND, _S.DIALING, _E.CUSTOMER_GONE): (_S.CUSTOMER_GONE, (_X.DROP_TARGET,)),
        (_ATT, _S.DIALING, _E.TARGET_ANSWERED): (_S.CONSULTING, (_X.CONSULT,)),
        (_ATT, _S.DIALING, _E.TARGET_FAILED): (_S.FAILED, (_X.UNHOLD_CUSTOMER,)),
        (_ATT, _S.DIALING, _E.CANCEL): (_S.CANCELLED, (_X.DROP_TARGET, _X.UNHOLD_CUSTOMER)),
        (_ATT, _S.DIALING, _E.CUSTOMER_GONE): (_S.CUSTOMER_GONE, (_X.DROP_TARGET,)),
        # AGENT_GONE while dialling (attended) turns it into a blind transfer: see transfer_transition.
        (_ATT, _S.CONSULTING, _E.COMPLETE): (_S.COMPLETED, (_X.HAND_OVER, _X.AGENT_LEAVES)),
        (_ATT, _S.CONSULTING, _E.CANCEL): (_S.CANCELLED, (_X.DROP_TARGET, _X.UNHOLD_CUSTOMER)),
        (_ATT, _S.CONSULTING, _E.CONFERENCE): (_S.CONFERENCE, (_X.CONFERENCE,)),
        (_ATT, _S.CONSULTING, _E.TARGET_FAILED): (_S.FAILED, (_X.DROP_TARGET, _X.UNHOLD_CUSTOMER)),
        (_ATT, _S.CONSULTING, _E.CUSTOMER_GONE): (_S.CUSTOMER_GONE, (_X.DROP_TARGET,)),
        (_ATT, _S.CONSULTING, _E.AGENT_GONE): (_S.COMPLETED, (_X.HAND_OVER, _X.AGENT_LEAVES)),
        (_ATT, _S.CONFERENCE, _E.COMPLETE): (_S.COMPLETED, (_X.HAND_OVER, _X.AGENT_LEAVES)),
        (_ATT, _S.CONFERENCE, _E.CANCEL): (_S.CANCELLED, (_X.DROP_TARGET,)),
        (_ATT, _S.CONFERENCE, _E.TARGET_FAILED): (_S.CANCELLED, (_X.DROP_TARGET,)),
        (_ATT, _S.CONFERENCE, _E.CUSTOMER_GONE): (_S.CUSTOMER_GONE, ()),
        (_ATT, _S.CONFERENCE, _E.AGENT_GONE): (_S.COMPLETED, (_X.HAND_OVER, _X.AGENT_LEAVES)),
    }
)


@dataclass(frozen=True)
class Transfer:
    """One transfer of a call's customer. `to_agent_id` is the agent resolved for an agent
    or campaign target (None for a number); `cause` says why it failed."""

    attempt_id: str
    kind: TransferKind
    target: Target
    from_agent_id: int
    to_agent_id: int | None
    state: TransferState
    started_at: datetime
    ended_at: datetime | None = None
    cause: str | None = None
    was_conference: bool = False

    @property
    def result(self) -> TransferResult | None:
        """The CDR's transfer_result (None while it runs; a conference that the customer
        ended is 'conference')."""
        if self.state is TransferState.CUSTOMER_GONE and self.was_conference:
            return TransferResult.CONFERENCE
        if self.state.final:
            return TransferResult(self.state.value)
        if self.state is TransferState.CONFERENCE:
            return TransferResult.CONFERENCE
        return None


@dataclass(frozen=True)
class Step:
    transfer: Transfer
    effects: tuple[TransferEffect, ...]


def start_transfer(
    kind: TransferKind | str,
    target: Target,
    *,
    attempt_id: str,
    from_agent_id: int,
    to_agent_id: int | None,
    now: datetime,
) -> Step:
    """A new transfer: an agent target needs its resolved (ready) agent, a number none."""
    _aware(now)
    k = TransferKind(kind)
    if target.external != (to_agent_id is None):
        raise ValidationFailed("an agent target needs the agent who takes the call", details={"field": "target"})
    if to_agent_id == from_agent_id:
        raise ValidationFailed("an agent cannot transfer a call to itself", details={"field": "target.agent_id"})
    if target.external:
        state = TransferState.DIALING
        effects: tuple[TransferEffect, ...] = (_X.HOLD_CUSTOMER, _X.DIAL_TARGET)
        if k is _BLIND:
            effects += (_X.AGENT_LEAVES,)
    elif k is _BLIND:
        state, effects = TransferState.COMPLETED, (_X.HAND_OVER, _X.AGENT_LEAVES)
    else:
        state, effects = TransferState.CONSULTING, (_X.HOLD_CUSTOMER, _X.CONSULT)
    t = Transfer(attempt_id, k, target, from_agent_id, to_agent_id, state, now, ended_at=now if state.final else None)
    return Step(t, effects)


def transfer_transition(t: Transfer, event: TransferEvent | str, now: datetime, *, cause: str | None = None) -> Step:
    """Apply `event` to `t` at `now`; IllegalTransition when the state refuses it (e.g.
    completing a transfer whose target still rings, or anything after the end)."""
    _aware(now)
    ev = TransferEvent(event)
    if t.kind is _ATT and t.state is TransferState.DIALING and ev is _E.AGENT_GONE:
        return Step(replace(t, kind=_BLIND), (_X.AGENT_LEAVES,))
    entry = TRANSFER_TRANSITIONS.get((t.kind, t.state, ev))
    if entry is None:
        raise IllegalTransition("transfer", t.state.value, ev.value)
    state, effects = entry
    at = max(now, t.started_at)
    return Step(
        replace(
            t,
            state=state,
            ended_at=at if state.final else None,
            cause=cause if state is TransferState.FAILED else t.cause,
            was_conference=t.was_conference or state is TransferState.CONFERENCE,
        ),
        effects,
    )


# ----------------------------------------------------------------------------- legs


class LegRole(enum.StrEnum):
    AGENT = "agent"
    CONSULT = "consult"
    TARGET = "target"
    CONFERENCE = "conference"


@dataclass(frozen=True)
class Leg:
    """A party's time on the call: an agent (`agent_id`) or an external number."""

    seq: int
    role: LegRole
    joined: datetime
    agent_id: int | None = None
    number: str | None = None
    left: datetime | None = None

    @property
    def party(self) -> tuple[int | None, str | None]:
        return (self.agent_id, self.number)

    @property
    def seconds(self) -> float:
        return 0.0 if self.left is None else (self.left - self.joined).total_seconds()


@dataclass(frozen=True)
class Legs:
    """A call's legs in the order they began; at most one open leg per party."""

    items: tuple[Leg, ...] = ()

    def open_leg(self, agent_id: int | None, number: str | None) -> Leg | None:
        for leg in self.items:
            if leg.left is None and leg.party == (agent_id, number):
                return leg
        return None

    def join(self, role: LegRole, at: datetime, *, agent_id: int | None = None, number: str | None = None) -> Legs:
        """The party starts a leg in `role` (ending its open leg, if any, at `at`)."""
        _aware(at)
        if agent_id is None and number is None:
            raise ValidationFailed("a leg needs an agent or a number", details={"field": "party"})
        legs = self.leave(at, agent_id=agent_id, number=number)
        return Legs((*legs.items, Leg(len(legs.items), role, at, agent_id, number)))

    def leave(self, at: datetime, *, agent_id: int | None = None, number: str | None = None) -> Legs:
        """The party's open leg ends at `at` (no-op when it has none)."""
        _aware(at)
        return Legs(
            tuple(
                replace(leg, left=max(at, leg.joined)) if leg.left is None and leg.party == (agent_id, number) else leg
                for leg in self.items
            )
        )

    def close_all(self, at: datetime) -> Legs:
        _aware(at)
        return Legs(
            tuple(leg if leg.left is not None else replace(leg, left=max(at, leg.joined)) for leg in self.items)
        )

    def closed_since(self, before: Legs) -> tuple[Leg, ...]:
        """Legs closed in `self` that were open (or absent) in `before`: the ones to write."""
        was_closed = {leg.seq for leg in before.items if leg.left is not None}
        return tuple(leg for leg in self.items if leg.left is not None and leg.seq not in was_closed)

    def talk_by_agent(self) -> dict[int, float]:
        """Each agent's seconds on the call (closed legs)."""
        out: dict[int, float] = {}
        for leg in self.items:
            if leg.agent_id is not None:
                out[leg.agent_id] = out.get(leg.agent_id, 0.0) + leg.seconds
        return out
