"""Inbound calls a stopped process left: the CDR of one found gone (`untracked_cdr`), the
CDR id the dialplan computes too (`inbound_cdr_id`), an agent's phone told from a SIP
caller in the agent's bridge (`is_agent_phone`), and the daily report's inbound counts."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hitcall_pbx.core.retention import RetentionPolicy, cdr_deadline
from hitcall_pbx.dialer.calls import agent_bridges, is_agent_phone
from hitcall_pbx.dialer.inbound import UNTRACKED_CAUSE, untracked_cdr
from hitcall_pbx.records.cdr import CdrRecord, inbound_cdr_id
from hitcall_pbx.report.compute import CSV_COLUMNS, inbound_day

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def live_row(**fields: object) -> dict[str, object]:
    """An inbound live row as the journal's arrival writes it."""
    row: dict[str, object] = dict(
        id=inbound_cdr_id("1733412345.17"),
        direction="inbound",
        campaign_id=7,
        contact_id=42,
        attempt_no=None,
        dialled_number=None,
        caller_id="+358201234567",
        caller_number="+358401234567",
        agent_id=None,
        mode=None,
        state="answered",
        created_at=T0,
        originated_at=None,
        ringing_at=None,
        answered_at=None,
        bridged_at=None,
        ended_at=None,
        ring_s=None,
        talk_s=None,
        answer_to_bridge_ms=None,
        outcome=None,
        hangup_cause=None,
        hangup_cause_txt=None,
        amd_status=None,
        amd_cause=None,
        abandoned=False,
        disposition=None,
        skip_reason=None,
        recording_id=None,
        retention_until=cdr_deadline(T0, RetentionPolicy(cdr_months=12)),
    )
    row.update(fields)
    return row


def test_a_waiting_caller_found_gone_is_untracked_with_its_whole_wait() -> None:
    record = CdrRecord.from_row(untracked_cdr(live_row(), T0 + timedelta(seconds=40)))
    assert (record.direction, record.outcome, record.abandoned, record.agent_id) == (
        "inbound",
        "untracked",
        False,
        None,
    )
    assert (record.created_at, record.ended_at, record.bridged_at, record.answered_at) == (
        T0,
        T0 + timedelta(seconds=40),
        None,
        None,
    )
    assert (float(record.ring_s), float(record.talk_s)) == (40.0, 0.0)
    assert record.hangup_cause_txt == UNTRACKED_CAUSE and "restart" in UNTRACKED_CAUSE
    assert (record.campaign_id, record.contact_id, record.caller_number) == (7, 42, "+358401234567")
    assert record.retention_until == cdr_deadline(T0, RetentionPolicy(cdr_months=12))


def test_a_caller_with_an_agent_found_gone_keeps_the_agent_and_the_bridge_time() -> None:
    bridged = T0 + timedelta(seconds=3)
    row = live_row(state="bridged", agent_id=5, answered_at=bridged, bridged_at=bridged)
    record = CdrRecord.from_row(untracked_cdr(row, T0 + timedelta(seconds=63)))
    assert (record.outcome, record.agent_id, record.bridged_at, record.answered_at) == (
        "untracked",
        5,
        bridged,
        bridged,
    )
    assert (float(record.ring_s), float(record.talk_s)) == (3.0, 60.0)
    # A clock that stepped back: the end is never before the start, the bridge never after the end.
    odd = CdrRecord.from_row(untracked_cdr(row, T0 - timedelta(seconds=5)))
    assert odd.ended_at == odd.bridged_at == T0 and float(odd.talk_s) == 0.0


def test_the_inbound_cdr_id_is_the_dialplans_layout_of_sha1() -> None:
    # [hitcall-inbound]: SHA1("hitcall-inbound:${UNIQUEID}") as 8-4-(5)3-(8)3-12 hex digits.
    h = hashlib.sha1(b"hitcall-inbound:1733412345.17").hexdigest()
    expected = f"{h[0:8]}-{h[8:12]}-5{h[13:16]}-8{h[17:20]}-{h[20:32]}"
    got = inbound_cdr_id("1733412345.17")
    assert str(got) == expected
    assert got.version == 5 and got.variant == uuid.RFC_4122
    assert inbound_cdr_id("1733412345.17") != inbound_cdr_id("1733412345.18")


def _channel(cid: str, name: str, app: str = "Stasis", data: str = "") -> SimpleNamespace:
    return SimpleNamespace(id=cid, name=name, dialplan=SimpleNamespace(app_name=app, app_data=data))


def test_a_sip_caller_in_an_agents_bridge_is_not_the_agents_phone() -> None:
    phone = _channel("p1", "PJSIP/agent1-00000001", data="hitcall,agent-login,agent1")
    trunk_caller = _channel("c1", "PJSIP/trunk-00000002", data="hitcall,inbound,7,42")
    local_caller = _channel("c2", "Local/0201234567@hitcall-inbound-00000003;2", data="hitcall,inbound,,")
    assert is_agent_phone(phone) and not is_agent_phone(trunk_caller) and not is_agent_phone(local_caller)
    assert is_agent_phone(_channel("p2", "PJSIP/agent2-00000004", app="", data=""))
    live = {c.id: c for c in (phone, trunk_caller)}
    bridge = SimpleNamespace(id="hitcall-agent-3", channels=["c1", "p1"])
    assert agent_bridges([bridge], live) == {3: (["p1"], ["c1"])}


def test_the_daily_report_counts_self_service_and_untracked_return_calls() -> None:
    rows = [
        {"outcome": "answered_human", "ring_s": 3, "talk_s": 60},
        {"outcome": "abandoned", "ring_s": 9, "talk_s": 0},
        {"outcome": "no_agent", "ring_s": 60, "talk_s": 0},
        {"outcome": "self_service", "ring_s": 0, "talk_s": 12},
        {"outcome": "self_service", "ring_s": 0, "talk_s": 7},
        {"outcome": "untracked", "ring_s": 20, "talk_s": 0},
    ]
    day = inbound_day(rows)
    assert (day.calls, day.connected, day.abandoned, day.no_agent, day.self_service, day.untracked) == (
        6,
        1,
        1,
        1,
        2,
        1,
    )
    assert {"inbound_self_service", "inbound_untracked"} <= set(CSV_COLUMNS)
