"""The CDR of a return call that ends in the FastAGI menu (`agi.scripts.menu_cdr`): an
inbound row with the router's id rule, the caller's number, answered when the dialplan
answered, no agent, and the campaign's (or the default) CDR retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hitcall_pbx.agi.scripts import MenuCall, menu_cdr
from hitcall_pbx.core.outcomes import Outcome
from hitcall_pbx.core.retention import RetentionPolicy, cdr_deadline
from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.records.cdr import CdrRecord, inbound_cdr_id

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DEFAULT = RetentionPolicy(cdr_months=24)


def call(**fields: object) -> MenuCall:
    values: dict[str, object] = dict(
        channel_id="1700000000.7",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=12.3456),
        outcome=Outcome.SELF_SERVICE,
        caller_number="+358401234567",
        line_number="+358291234567",
        campaign_id=4,
        contact_id=9,
        campaign_retention=RetentionPolicy(cdr_months=36),
    )
    values.update(fields)
    return MenuCall(**values)  # type: ignore[arg-type]  # fields passed as **dict[str, object]


def test_an_opted_out_caller_gets_an_inbound_self_service_row() -> None:
    row = menu_cdr(call(), DEFAULT)
    assert row.id == inbound_cdr_id("1700000000.7")  # the id the router would give the same channel
    assert (row.direction, row.outcome, row.abandoned, row.state) == ("inbound", "self_service", False, "ended")
    assert (row.campaign_id, row.contact_id, row.caller_number, row.caller_id) == (
        4,
        9,
        "+358401234567",
        "+358291234567",
    )
    assert (row.dialled_number, row.attempt_no, row.mode, row.agent_id, row.bridged_at) == (None,) * 5
    assert (row.created_at, row.answered_at, row.ended_at) == (T0, T0, T0 + timedelta(seconds=12.3456))
    assert (row.ring_s, row.talk_s) == (Decimal(0), Decimal("12.346"))
    assert row.retention_until == cdr_deadline(T0, RetentionPolicy(cdr_months=36))


def test_no_campaign_takes_the_default_policy_and_an_abandon_is_flagged() -> None:
    row = menu_cdr(call(campaign_id=None, campaign_retention=None, caller_number=None), DEFAULT)
    assert row.retention_until == cdr_deadline(T0, DEFAULT)
    assert (row.campaign_id, row.caller_number) == (None, None)
    gone = menu_cdr(call(outcome=Outcome.ABANDONED), DEFAULT)
    assert (gone.outcome, gone.abandoned) == ("abandoned", True)


def test_a_clock_step_back_never_ends_before_the_start() -> None:
    row = menu_cdr(call(ended_at=T0 - timedelta(seconds=1)), DEFAULT)
    assert (row.ended_at, row.talk_s) == (T0, Decimal(0))


def test_self_service_is_an_inbound_outcome_only() -> None:
    inbound = menu_cdr(call(), DEFAULT)
    values = {name: getattr(inbound, name) for name in ("id", "created_at", "ended_at", "retention_until")}
    with pytest.raises(ValidationFailed, match="self_service is an inbound outcome"):
        CdrRecord(
            **values,
            state="ended",
            outcome="self_service",
            abandoned=False,
            direction="outbound",
            campaign_id=1,
            attempt_no=1,
            mode="progressive",
            caller_id="+358291234567",
            dialled_number="+358401234567",
        )
