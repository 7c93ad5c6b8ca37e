"""Manual dial: may an agent dial this number now? The pre-dial rules are the ones every
attempt passes (`core.compliance.check_dial`); this module only says which of them apply
to a number an agent types or picks.

Pure: the current time is passed in.

Applied: suppression (an erased person), restriction of processing, the global and the
campaign's do-not-call lists, an objection to direct marketing (on any contact with the
number), the 72-hour rule after an abandoned call (a manual dial is checked as strictly as
a predictive one) and the campaign's calling window in the callee's local time.
Not applied: the campaign's attempt limit and retry delay, which pace the dialer's own
work through a list; an agent calling a contact back is not bound by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hitcall_pbx.core.compliance import (
    DEFAULT_WINDOW,
    CallingWindow,
    CampaignMode,
    DialContext,
    DialReason,
    DialVerdict,
    check_dial,
)

__all__ = ["NumberFacts", "manual_dial_verdict", "refusal_message"]


@dataclass(frozen=True, kw_only=True)
class NumberFacts:
    """What the store knows about a number (and the contact dialled, when one is)."""

    suppressed: bool = False
    processing_restricted: bool = False
    dnc_global: bool = False
    marketing_prohibited: bool = False
    dnc_campaign: bool = False
    last_abandoned_at: datetime | None = None
    contact_tz: str | None = None


def manual_dial_verdict(
    number: str, now: datetime, facts: NumberFacts, window: CallingWindow = DEFAULT_WINDOW
) -> DialVerdict:
    """The pre-dial check of a manual dial of `number` (E.164) at `now`."""
    return check_dial(
        DialContext(
            phone=number,
            now=now,
            # The 72-hour rule binds predictive dialling; a manual dial is held to it too.
            mode=CampaignMode.PREDICTIVE,
            max_attempts=1,
            attempts=0,
            contact_tz=facts.contact_tz,
            marketing_prohibited=facts.marketing_prohibited,
            processing_restricted=facts.processing_restricted,
            dnc_global=facts.dnc_global,
            dnc_campaign=facts.dnc_campaign,
            suppressed=facts.suppressed,
            next_attempt_at=None,
            last_abandoned_at=facts.last_abandoned_at,
            window=window,
        )
    )


_MESSAGES = {
    DialReason.SUPPRESSED: "the number belongs to an erased person and is never dialled",
    DialReason.PROCESSING_RESTRICTED: "processing of this person's data is restricted: the number is not dialled",
    DialReason.DNC_GLOBAL: "the number is on the do-not-call list",
    DialReason.MARKETING_PROHIBITED: "the person has objected to direct marketing",
    DialReason.DNC_CAMPAIGN: "the number is on the campaign's do-not-call list",
    DialReason.ABANDONED_72H: "a call to this number was abandoned in the last 72 hours",
    DialReason.OUTSIDE_WINDOW: "outside the campaign's calling window in the callee's local time",
}


def refusal_message(reason: DialReason) -> str:
    """One readable sentence for a refused manual dial."""
    return _MESSAGES.get(reason, f"the number may not be dialled now ({reason.value})")
