"""What a node command carries, as JSON and back: each method's arguments and answer, and
the errors (kind, status, code, message, details)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from hitcall_pbx.api.deps import RecordingPauseSpan, RecordingPauseStatus, TransferStatus
from hitcall_pbx.auth.service import LoginThrottled
from hitcall_pbx.cluster.commands import decode_error, encode_error
from hitcall_pbx.cluster.methods import METHODS
from hitcall_pbx.core.callbacks import CallbackKind
from hitcall_pbx.core.monitoring import MonitorMode
from hitcall_pbx.core.recording_pause import NotRecorded
from hitcall_pbx.errors import Conflict, Forbidden, HitCallError, NotFound, Unavailable, ValidationFailed

ATTEMPT = uuid.UUID("0b0e5b4e-7a35-4c1e-9b2a-3f4f3c0a0001")
AT = datetime(2026, 12, 6, 9, 30, 15, 123456, tzinfo=UTC)

ARGS: dict[str, dict[str, Any]] = {
    "agent.pause": {"agent_id": 7, "pause_code": "lunch"},
    "agent.unpause": {"agent_id": 7},
    "agent.end_wrap_up": {"agent_id": 7},
    "agent.log_out": {"agent_id": 7},
    "agent.set_disposition": {
        "agent_id": 7,
        "disposition": "callback",
        "attempt_id": ATTEMPT,
        "callback_at": datetime(2026, 12, 7, 14, 0),  # naive: the contact's local time
        "callback_kind": CallbackKind.ANYONE,
    },
    "preview.accept": {"agent_id": 7},
    "preview.skip": {"agent_id": 7, "reason": None},
    "call.hang_up": {"attempt_id": ATTEMPT},
    "call.transfer": {"agent_id": 7, "kind": "attended", "target": {"number": "+358401234567"}},
    "call.transfer_action": {"agent_id": 7, "action": "conference"},
    "call.manual_dial": {"agent_id": 7, "campaign_id": 3, "number": "+358401234567", "contact_id": None},
    "recording.pause": {"agent_id": 7},
    "recording.resume": {"agent_id": 7},
    "monitor.start": {
        "user_id": 2,
        "username": "anna",
        "role": "supervisor",
        "attempt_id": str(ATTEMPT),
        "mode": MonitorMode.WHISPER,
    },
    "monitor.change": {"monitor_id": 5, "mode": MonitorMode.BARGE, "user_id": 2, "role": "admin"},
    "monitor.stop": {"monitor_id": 5, "user_id": 2, "role": "admin"},
    "peer.reserve": {"pool": "ast2", "campaign_id": 3, "wrap_up_s": 10.0, "from_pool": "ast1"},
    "peer.release": {"pool": "ast2", "token": "0123456789abcdef01234567"},
}


def test_every_method_has_an_example_here() -> None:
    assert set(ARGS) == set(METHODS)


@pytest.mark.parametrize("name", sorted(ARGS))
def test_arguments_travel_as_json_unchanged(name: str) -> None:
    method = METHODS[name]
    wire = json.loads(json.dumps(method.encode_args(ARGS[name])))
    assert method.decode_args(wire).model_dump() == ARGS[name]


def test_a_naive_callback_time_stays_naive_and_an_aware_one_keeps_its_offset() -> None:
    method = METHODS["agent.set_disposition"]
    naive = method.decode_args(json.loads(json.dumps(method.encode_args(ARGS["agent.set_disposition"]))))
    assert naive.callback_at is not None and naive.callback_at.tzinfo is None
    aware = method.decode_args(method.encode_args({**ARGS["agent.set_disposition"], "callback_at": AT}))
    assert aware.callback_at == AT and aware.callback_at.utcoffset() is not None


def test_unknown_or_missing_arguments_are_refused() -> None:
    with pytest.raises(ValidationError):
        METHODS["agent.pause"].encode_args({"agent_id": 7})
    with pytest.raises(ValidationError):
        METHODS["agent.pause"].decode_args({"agent_id": 7, "pause_code": "x", "extra": 1})


def _answer(name: str, value: Any) -> Any:
    codec = METHODS[name].result
    return codec.decode(json.loads(json.dumps(codec.encode(value))))


def test_answers_travel_as_json_unchanged() -> None:
    assert _answer("agent.pause", None) is None
    assert _answer("preview.accept", ATTEMPT) == ATTEMPT
    transfer = TransferStatus(
        attempt_id=ATTEMPT, kind="attended", state="consulting", from_agent_id=7, target="agent", to_agent_id=8
    )
    assert _answer("call.transfer", transfer) == transfer
    paused = RecordingPauseStatus(
        attempt_id=ATTEMPT,
        recording_id=uuid.uuid4(),
        paused=False,
        spans=[RecordingPauseSpan(seq=1, paused_at=AT, paused_by="agent:7", resumed_at=AT, resumed_by="system")],
    )
    assert _answer("recording.resume", paused) == paused
    view = {
        "id": 5,
        "supervisor": "anna",
        "supervisor_user_id": 2,
        "phone_agent_id": 9,
        "attempt_id": str(ATTEMPT),
        "campaign_id": 3,
        "agent_id": 7,
        "mode": "whisper",
        "modes": [{"mode": "listen", "at": AT}, {"mode": "whisper", "at": AT}],
        "started_at": AT,
        "ended_at": None,
        "end_reason": None,
    }
    assert _answer("monitor.change", view) == view
    offer = {"token": "0123456789abcdef01234567", "agent_id": 7, "pool": "ast2", "node_id": "node-b"}
    assert _answer("peer.reserve", offer) == offer
    assert _answer("peer.reserve", None) is None
    assert _answer("peer.release", True) is True


@pytest.mark.parametrize(
    "error",
    [
        ValidationFailed("callback_at is needed", details={"field": "callback_at"}),
        NotFound("agent 7 is not logged in", details={"agent_id": 7}),
        Conflict("busy", details={"agent_id": 7, "state": "on_call"}, code="agent_busy"),
        Forbidden("not yours", code="not_own_session", details={"monitor_id": 5}),
        Unavailable("recording pause is not available", code="recording_pause_unavailable"),
        HitCallError("something broke", details={"error_id": "ab"}),
    ],
)
def test_errors_travel_as_their_kind_with_status_code_message_and_details(error: HitCallError) -> None:
    back = decode_error(json.loads(json.dumps(encode_error(error))))
    assert type(back) is type(error)
    assert (back.status, back.code, back.message, back.details) == (
        error.status,
        error.code,
        error.message,
        error.details,
    )


def test_an_error_of_a_subclass_travels_as_its_kind_and_keeps_an_unusual_status() -> None:
    back = decode_error(encode_error(NotRecorded("the call is not recorded", code="call_not_recorded")))
    assert type(back) is Conflict and (back.status, back.code) == (409, "call_not_recorded")
    throttled = decode_error(encode_error(LoginThrottled("slow down", details={"retry_after_s": 3})))
    assert isinstance(throttled, HitCallError) and throttled.status == 429
    assert throttled.details == {"retry_after_s": 3}


def test_details_that_are_not_json_become_text() -> None:
    error = Conflict("x", details={"attempt_id": ATTEMPT, "at": AT, "mode": MonitorMode.LISTEN, "ids": (1, 2)})
    assert encode_error(error)["details"] == {
        "attempt_id": str(ATTEMPT),
        "at": AT.isoformat(),
        "mode": "listen",
        "ids": [1, 2],
    }
