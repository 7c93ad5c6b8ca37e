"""What a call writes while it lives and when it ends, all through the call journal
and the CDR sink (write-behind: a PostgreSQL outage never stops a call): progress
on the attempt row, the call's webhook events, the CDR, and the contact's next
status by the core rule (`core.outcomes.contact_after`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..core.outcomes import contact_after
from ..errors import Unavailable, ValidationFailed
from ..logs import get_logger
from ..records.journal import CallJournal
from .calls import CdrSink, LiveCall, cdr_record, json_payload

log = get_logger("hitcall.dialer")


class CallLedger:
    def __init__(self, journal: CallJournal, cdr: CdrSink) -> None:
        self.journal = journal
        self.cdr = cdr

    def progress(self, call: LiveCall) -> None:
        """Answer and bridge times in the attempt row while the call is up: after a crash
        the next process knows which customer was answered or talking (never re-dialled
        as if unanswered; an answered, unbridged call counts as abandoned)."""
        self.journal.progress(
            call.attempt.id,
            answered_at=call.answered_at,
            bridged_at=call.bridged_at,
            agent_id=call.agent_id,
            answer_to_bridge_ms=call.fsm.answer_to_bridge_ms,
        )

    def event(self, event_type: str, call: LiveCall) -> None:
        payload = {
            "attempt_id": str(call.attempt.id),
            "campaign_id": call.campaign.id,
            "contact_id": call.attempt.contact_id,
            "agent_id": call.agent_id,
            "at": datetime.now(UTC).isoformat(),
        }
        self.journal.event(event_type, f"attempt:{call.attempt.id}", payload)

    def submit_cdr(self, record: dict[str, Any]) -> None:
        try:
            self.cdr.submit(record)
        except (ValidationFailed, Unavailable) as exc:
            log.error("dialer.cdr_refused", attempt_id=str(record["id"]), error=exc.message, details=exc.details)

    def ended(self, call: LiveCall) -> None:
        """An ended call: its CDR, the contact's bookkeeping for the next attempt, and the
        call.ended event."""
        a, ended = call.attempt, call.fsm
        assert ended.outcome is not None and ended.ended_at is not None
        record = cdr_record(call)
        self.submit_cdr(record)
        if a.contact_id is not None:  # else a number dialled by hand: no contact to close
            self._close_contact(call)
        self.journal.event("call.ended", f"attempt:{a.id}", json_payload(record))

    def _close_contact(self, call: LiveCall) -> None:
        a, ended = call.attempt, call.fsm
        assert a.contact_id is not None and ended.outcome is not None and ended.ended_at is not None
        update = contact_after(
            ended.outcome,
            retry_delays=call.campaign.retry_delays,
            attempt_no=a.attempt_no,
            max_attempts=call.campaign.max_attempts,
            ended_at=ended.ended_at,
            vanished_unanswered=ended.vanished and not ended.answered,
            lost_before=a.lost_before,
        )
        self.journal.close_contact(
            a.contact_id,
            attempt_no=a.attempt_no,
            attempt_created_at=a.created_at,
            status=update.status.value,
            retry_at=update.retry_at,
            outcome=ended.outcome.value,
            cancelled=update.never_reached,
            lost=update.lost,
        )
