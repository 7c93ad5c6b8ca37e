"""The CDR row of an inbound call (`dialer.inbound.inbound_cdr`): outcome, agent, times,
numbers and retention deadline from what the router saw of the call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hitcall_pbx.core.retention import RetentionPolicy, cdr_deadline
from hitcall_pbx.dialer.inbound import CampaignInfo, InboundCall, InboundRequest, e164_or_none, inbound_cdr
from hitcall_pbx.records.cdr import CdrRecord, inbound_cdr_id

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DEFAULT = RetentionPolicy(cdr_months=24)
CAMPAIGN = CampaignInfo(wrap_up_s=5, retention=RetentionPolicy(cdr_months=3))


def call(**fields: object) -> InboundCall:
    values: dict[str, object] = dict(
        channel_id="1733412345.17",
        request=InboundRequest(7, 42),
        arrived_at=T0,
        caller_number="+358401234567",
        line_number="+358201234567",
        campaign=CAMPAIGN,
        campaign_checked=True,
    )
    values.update(fields)
    return InboundCall(**values)  # type: ignore[arg-type]  # fields passed as **dict[str, object]


def test_a_caller_put_through_to_an_agent() -> None:
    c = call(agent_id=3, bridged=True, bridged_at=T0 + timedelta(seconds=4.5))
    row = inbound_cdr(c, T0 + timedelta(seconds=64.5), DEFAULT)
    record = CdrRecord.from_row(row)  # what the CDR writer takes
    assert record.id == inbound_cdr_id("1733412345.17")
    assert (record.direction, record.outcome, record.abandoned, record.agent_id) == (
        "inbound",
        "answered_human",
        False,
        3,
    )
    assert (record.campaign_id, record.contact_id, record.attempt_no, record.mode) == (7, 42, None, None)
    assert (record.caller_number, record.caller_id, record.dialled_number) == ("+358401234567", "+358201234567", None)
    assert record.created_at == T0 and record.answered_at == record.bridged_at == T0 + timedelta(seconds=4.5)
    assert (float(record.ring_s or 0), float(record.talk_s or 0)) == (4.5, 60.0)
    assert record.retention_until == cdr_deadline(T0, CAMPAIGN.retention)


def test_a_caller_who_hangs_up_waiting_and_one_who_hears_the_message() -> None:
    gone = CdrRecord.from_row(inbound_cdr(call(), T0 + timedelta(seconds=9), DEFAULT))
    assert (gone.outcome, gone.abandoned, gone.agent_id, gone.bridged_at) == ("abandoned", True, None, None)
    assert (float(gone.ring_s or 0), float(gone.talk_s or 0)) == (9.0, 0.0)
    message = CdrRecord.from_row(inbound_cdr(call(service_ended=True), T0 + timedelta(seconds=70), DEFAULT))
    assert (message.outcome, message.abandoned) == ("no_agent", False)
    # A bridge event the router saw but that ended before it counted (bridged flag unset) is no agent.
    assert inbound_cdr(call(bridged_at=T0), T0 + timedelta(seconds=3), DEFAULT)["outcome"] == "abandoned"


def test_campaign_and_retention_when_the_caller_matched_no_campaign() -> None:
    unknown = inbound_cdr(call(request=InboundRequest(None, None), campaign=None, campaign_checked=False), T0, DEFAULT)
    assert unknown["campaign_id"] is None and unknown["retention_until"] == cdr_deadline(T0, DEFAULT)
    # The dialplan named a campaign that does not exist (any more): none, default policy.
    stale = inbound_cdr(call(campaign=None, campaign_checked=True), T0, DEFAULT)
    assert stale["campaign_id"] is None and stale["retention_until"] == cdr_deadline(T0, DEFAULT)
    # Its look-up failed: the campaign stays (the writer checks it), the default policy applies.
    failed = inbound_cdr(call(campaign=None, campaign_checked=False), T0, DEFAULT)
    assert failed["campaign_id"] == 7 and failed["retention_until"] == cdr_deadline(T0, DEFAULT)
    # An end time before the arrival (clock skew between events) never gives negative times.
    skewed = CdrRecord.from_row(inbound_cdr(call(), T0 - timedelta(seconds=1), DEFAULT))
    assert skewed.ended_at == T0 and float(skewed.ring_s or 0) == 0.0


def test_numbers_from_the_channel() -> None:
    assert e164_or_none("0401234567") == "+358401234567"
    assert e164_or_none("+358201234567") == "+358201234567"
    for raw in (None, "", "anonymous", "s", "123"):
        assert e164_or_none(raw) is None
