"""Call outcomes from Asterisk hangup causes (ITU-T Q.850) and call facts, and the
retry policy that follows from an outcome.

Pure: no I/O, `now` is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from hitcall_pbx.errors import ValidationFailed

__all__ = [
    "AMD_HANGUP",
    "AMD_HUMAN",
    "AMD_MACHINE",
    "AMD_NOTSURE",
    "BRIDGE_LIMIT_MS",
    "CAUSE_OUTCOMES",
    "DEFAULT_RETRY_DELAYS",
    "INVALID_NUMBER_CAUSES",
    "CallDirection",
    "CallFacts",
    "CallMode",
    "ContactStatus",
    "ContactUpdate",
    "Outcome",
    "classify_outcome",
    "contact_after",
    "counts_as_abandon",
    "counts_as_connect",
    "inbound_outcome",
    "is_invalid_number_cause",
    "menu_outcome",
    "next_retry",
    "outcome_for_cause",
]

BRIDGE_LIMIT_MS = 2000

AMD_HUMAN = "HUMAN"
AMD_MACHINE = "MACHINE"
AMD_NOTSURE = "NOTSURE"
AMD_HANGUP = "HANGUP"
_AMD_VALUES = frozenset({AMD_HUMAN, AMD_MACHINE, AMD_NOTSURE, AMD_HANGUP})


class Outcome(enum.StrEnum):
    ANSWERED_HUMAN = "answered_human"
    ANSWERED_MACHINE = "answered_machine"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    FAILED = "failed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"
    NO_AGENT = "no_agent"  # inbound only: no agent took the call; the caller heard the message
    SELF_SERVICE = "self_service"  # inbound only: served by the return-call menu (opted out, or listened and left)
    UNTRACKED = "untracked"  # inbound only: ended while no HitCall process followed it (found gone at restart)


class CallDirection(enum.StrEnum):
    """Who placed the call: HitCall (outbound, a dialling attempt) or a caller who reached
    HitCall (inbound, the return-call line)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


class CallMode(enum.StrEnum):
    """How an outbound attempt was placed: in its campaign's mode (`CampaignMode`'s values),
    or manual (an agent dialled the number or contact; the call is that agent's only)."""

    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"
    MANUAL = "manual"


_O = Outcome
# Outcome of a call that was never answered, by Q.850 cause (as Asterisk reports it
# in ChannelDestroyed / ChannelHangupRequest). Causes not listed map to FAILED.
CAUSE_OUTCOMES: Mapping[int, Outcome] = MappingProxyType(
    {
        # Not defined: Asterisk ended the call itself with no network reason (its own
        # shutdown hangs up every ringing call so). Not the number's fault: retried.
        0: _O.CONGESTION,
        1: _O.FAILED,  # unallocated (unassigned) number
        2: _O.FAILED,  # no route to specified transit network
        3: _O.FAILED,  # no route to destination
        16: _O.NO_ANSWER,  # normal clearing before answer: the far end gave up ringing
        17: _O.BUSY,  # user busy
        18: _O.NO_ANSWER,  # no user responding
        19: _O.NO_ANSWER,  # no answer from user (ring timeout)
        20: _O.NO_ANSWER,  # subscriber absent (mobile off / out of coverage)
        21: _O.NO_ANSWER,  # call rejected (declined on the handset): retried like no answer
        22: _O.FAILED,  # number changed
        27: _O.CONGESTION,  # destination out of order
        28: _O.FAILED,  # invalid number format
        31: _O.NO_ANSWER,  # normal, unspecified
        34: _O.CONGESTION,  # no circuit/channel available
        38: _O.CONGESTION,  # network out of order
        41: _O.CONGESTION,  # temporary failure
        42: _O.CONGESTION,  # switching equipment congestion
        44: _O.CONGESTION,  # requested circuit/channel not available
        47: _O.CONGESTION,  # resource unavailable, unspecified
        102: _O.NO_ANSWER,  # recovery on timer expiry (SIP 408)
    }
)

# Causes that mean the number itself is wrong: the contact's number should be
# flagged rather than retried.
INVALID_NUMBER_CAUSES = frozenset({1, 3, 22, 28})


def outcome_for_cause(cause: int | None) -> Outcome:
    """Outcome of an unanswered call from its hangup cause (unknown → FAILED)."""
    if cause is None:
        return Outcome.FAILED
    return CAUSE_OUTCOMES.get(cause, Outcome.FAILED)


def is_invalid_number_cause(cause: int | None) -> bool:
    return cause in INVALID_NUMBER_CAUSES


@dataclass(frozen=True, kw_only=True)
class CallFacts:
    """What the service knows about a finished attempt.

    answered: the customer leg was answered (StasisStart Up / AMD ran).
    bridged: the customer joined an agent's bridge; answer_to_bridge_ms how fast.
    amd_status: AMDSTATUS when AMD ran (HUMAN, MACHINE, NOTSURE, HANGUP).
    cancelled: the service ended the attempt before answer (campaign stopped,
    agent gone before answer); not a customer outcome.
    """

    answered: bool
    hangup_cause: int | None = None
    bridged: bool = False
    answer_to_bridge_ms: int | None = None
    amd_status: str | None = None
    cancelled: bool = False
    bridge_limit_ms: int = BRIDGE_LIMIT_MS

    def __post_init__(self) -> None:
        if self.bridged and not self.answered:
            raise ValidationFailed("a call cannot be bridged without being answered", details={"field": "bridged"})
        if self.answer_to_bridge_ms is not None and self.answer_to_bridge_ms < 0:
            raise ValidationFailed("answer_to_bridge_ms must be >= 0", details={"field": "answer_to_bridge_ms"})
        if self.amd_status is not None:
            status = self.amd_status.upper()
            if status not in _AMD_VALUES:
                raise ValidationFailed("unknown AMD status", details={"field": "amd_status", "value": self.amd_status})
            object.__setattr__(self, "amd_status", status)
        if self.bridge_limit_ms <= 0:
            raise ValidationFailed("bridge_limit_ms must be > 0", details={"field": "bridge_limit_ms"})


def classify_outcome(facts: CallFacts) -> Outcome:
    """Map a finished attempt to its outcome.

    Answered: a machine (AMD MACHINE) is ANSWERED_MACHINE; a customer in an agent's
    bridge within the limit (2 s) is ANSWERED_HUMAN; any other answered call (no
    agent in time, bridged late, AMD undecided, customer gone during AMD) is
    ABANDONED. Unanswered: CANCELLED when the service cancelled it, else by the
    hangup cause table.
    """
    if facts.answered:
        if facts.amd_status == AMD_MACHINE:
            return Outcome.ANSWERED_MACHINE
        in_time = facts.answer_to_bridge_ms is None or facts.answer_to_bridge_ms <= facts.bridge_limit_ms
        if facts.bridged and in_time:
            return Outcome.ANSWERED_HUMAN
        return Outcome.ABANDONED
    if facts.cancelled:
        return Outcome.CANCELLED
    return outcome_for_cause(facts.hangup_cause)


def counts_as_connect(outcome: Outcome | str) -> bool:
    """Denominator side of the abandon rate: a customer connected to an agent."""
    return outcome == Outcome.ANSWERED_HUMAN


def counts_as_abandon(outcome: Outcome | str) -> bool:
    return outcome == Outcome.ABANDONED


def inbound_outcome(*, bridged: bool, service_ended: bool) -> Outcome:
    """The outcome of an inbound call (a caller on the return-call line): ANSWERED_HUMAN
    when it reached an agent's bridge; else NO_AGENT when the service ended it (no agent
    within the wait limit and the message played, the service stopping, the agent's phone
    gone before the caller was put through); else ABANDONED: the caller hung up before
    reaching an agent. Inbound calls are never in the outbound abandon rate."""
    if bridged:
        return Outcome.ANSWERED_HUMAN
    return Outcome.NO_AGENT if service_ended else Outcome.ABANDONED


def menu_outcome(*, asked_for_agent: bool, handed_to_router: bool) -> Outcome | None:
    """The outcome of a return call as the FastAGI menu sees it when its session ends.
    None when the caller was handed to the inbound router (key 2 and the menu returned to
    the dialplan): the router writes that call's CDR. ABANDONED when the caller asked for
    an agent but hung up before being handed over; else SELF_SERVICE: the menu served the
    caller (opted out, or listened and hung up or gave up). Inbound: never in the outbound
    abandon rate."""
    if handed_to_router:
        return None
    return Outcome.ABANDONED if asked_for_agent else Outcome.SELF_SERVICE


# --------------------------------------------------------------------------- retries

# Delays used when a campaign sets none. An outcome missing from the mapping is
# final (ANSWERED_HUMAN, FAILED: the agent's disposition or the number decides).
DEFAULT_RETRY_DELAYS: Mapping[Outcome, timedelta] = MappingProxyType(
    {
        Outcome.BUSY: timedelta(minutes=10),
        Outcome.NO_ANSWER: timedelta(hours=2),
        Outcome.CONGESTION: timedelta(minutes=15),
        Outcome.ANSWERED_MACHINE: timedelta(hours=4),
        Outcome.ABANDONED: timedelta(hours=1),
        Outcome.CANCELLED: timedelta(0),
    }
)

# NO_AGENT, SELF_SERVICE, UNTRACKED: inbound only, nothing to retry
_FINAL = frozenset({Outcome.ANSWERED_HUMAN, Outcome.NO_AGENT, Outcome.SELF_SERVICE, Outcome.UNTRACKED})


_OUTCOME_VALUES = frozenset(o.value for o in Outcome)


def _delay(key: str, value: object) -> timedelta:
    if key not in _OUTCOME_VALUES:
        raise ValidationFailed("retry delay for an unknown outcome", details={"field": f"retry_delays.{key}"})
    if isinstance(value, timedelta):
        delay = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        delay = timedelta(seconds=value)
    else:
        raise ValidationFailed("retry delay must be seconds or a timedelta", details={"field": f"retry_delays.{key}"})
    if delay < timedelta(0):
        raise ValidationFailed("retry delay must not be negative", details={"field": f"retry_delays.{key}"})
    return delay


def next_retry(
    outcome: Outcome | str,
    retry_delays: Mapping[str, timedelta | int | float] | None,
    attempts: int,
    max_attempts: int,
    now: datetime,
) -> datetime | None:
    """When to try the contact again, or None when this outcome is final.

    `attempts` counts the attempts made so far including this one (cancelled
    attempts are not counted by the caller). Final when the contact was reached
    (ANSWERED_HUMAN), when the attempts are used up, or when the campaign has no
    delay for the outcome. `retry_delays` maps outcome codes to a timedelta or
    seconds; None means DEFAULT_RETRY_DELAYS.
    """
    try:
        outcome = Outcome(outcome)
    except ValueError:
        raise ValidationFailed("unknown outcome", details={"field": "outcome", "value": str(outcome)}) from None
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValidationFailed("now must be timezone-aware", details={"field": "now"})
    for name, value, low in (("attempts", attempts, 0), ("max_attempts", max_attempts, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValidationFailed(f"{name} must be an integer >= {low}", details={"field": name})
    delays = DEFAULT_RETRY_DELAYS if retry_delays is None else retry_delays
    checked = {str(k): _delay(str(k), v) for k, v in delays.items()}
    if outcome in _FINAL or attempts >= max_attempts:
        return None
    delay = checked.get(outcome.value)
    if delay is None:
        return None
    return now + delay


# --------------------------------------------------------------------------- contacts
class ContactStatus(enum.StrEnum):
    NEW = "new"
    RETRY = "retry"
    IN_PROGRESS = "in_progress"
    CALLBACK = "callback"
    DONE = "done"
    FAILED = "failed"
    DNC = "dnc"


@dataclass(frozen=True)
class ContactUpdate:
    """What an ended attempt does to its contact. `never_reached`: the call never got to
    the customer (cancelled, or its channel vanished unanswered), so a scheduled
    callback stays scheduled."""

    status: ContactStatus
    retry_at: datetime | None
    never_reached: bool
    lost: bool = False  # this attempt is HitCall's loss, not counted against max_attempts


def contact_after(
    outcome: Outcome,
    *,
    retry_delays: Mapping[str, timedelta | int | float] | None,
    attempt_no: int,
    max_attempts: int,
    ended_at: datetime,
    vanished_unanswered: bool = False,
    lost_before: int = 0,
) -> ContactUpdate:
    """The contact's next status after its attempt `attempt_no` ended with `outcome`:
    reached → done; a machine with no retry left → done; no retry left → failed;
    otherwise retry at the campaign's delay. A cancelled attempt gives the contact back
    at once (it was never dialled to the end).

    A call that vanished unanswered while its events were lost says nothing about the
    customer: the first such attempt of a contact is not counted (`lost`), so even on
    the last attempt the contact is retried once more; `lost_before` are the contact's
    earlier attempts not counted that way."""
    if outcome is Outcome.CANCELLED:
        return ContactUpdate(ContactStatus.RETRY, None, never_reached=True)
    lost = vanished_unanswered and lost_before == 0
    counted = max(0, attempt_no - lost_before - (1 if lost else 0))
    retry_at = next_retry(outcome, retry_delays, counted, max_attempts, ended_at)
    if outcome is Outcome.ANSWERED_HUMAN:
        status = ContactStatus.DONE
    elif retry_at is None:
        status = ContactStatus.DONE if outcome is Outcome.ANSWERED_MACHINE else ContactStatus.FAILED
    else:
        status = ContactStatus.RETRY
    return ContactUpdate(status, retry_at, never_reached=vanished_unanswered, lost=lost)
