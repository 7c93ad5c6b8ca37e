"""parse_event on payloads shaped like Asterisk 22 sends them, on unknown and malformed ones, and on garbage."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hitcall_pbx.ari import EVENT_MODELS, AriEvent, UnknownEvent, parse_event
from hitcall_pbx.ari.events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelVarset,
    Dial,
    PlaybackFinished,
    RecordingFinished,
    StasisStart,
)

CHANNEL: dict[str, Any] = {
    "id": "att-1",
    "protocol_id": "",
    "name": "Local/+358401234567@hitcall-outbound-0000002a;2",
    "state": "Up",
    "caller": {"name": "HitCall", "number": "+358201234567"},
    "connected": {"name": "", "number": "+358401234567"},
    "accountcode": "campaign-7",
    "dialplan": {
        "context": "hitcall-outbound",
        "exten": "+358401234567",
        "priority": 4,
        "app_name": "Stasis",
        "app_data": "hitcall,customer,att-1",
    },
    "creationtime": "2026-11-25T11:40:12.345+0200",
    "language": "fi",
    "channelvars": {"HITCALL_ATTEMPT": "att-1"},
}
BRIDGE: dict[str, Any] = {
    "id": "agent-7",
    "technology": "simple_bridge",
    "bridge_type": "mixing",
    "bridge_class": "stasis",
    "creator": "Stasis",
    "name": "agent-7",
    "channels": ["agent-7-leg", "att-1"],
    "creationtime": "2026-11-25T08:00:00.000+0000",
    "video_mode": "talker",
}


def event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "application": "hitcall",
        "timestamp": "2026-11-25T11:40:19.871+0200",
        "asterisk_id": "52:54:00:12:34:56",
        **fields,
    }


def test_stasis_start_with_full_channel() -> None:
    parsed = parse_event(event("StasisStart", args=["customer", "att-1"], channel=CHANNEL))
    assert isinstance(parsed, StasisStart)
    assert parsed.args == ["customer", "att-1"]
    assert parsed.channel.id == "att-1"
    assert parsed.channel.caller.number == "+358201234567"
    assert parsed.channel.dialplan.priority == 4
    assert parsed.channel.channelvars == {"HITCALL_ATTEMPT": "att-1"}
    assert parsed.replace_channel is None
    assert parsed.timestamp.utcoffset() == timedelta(hours=2)
    assert parsed.timestamp - parsed.channel.creationtime == timedelta(seconds=7, milliseconds=526)


def test_new_asterisk_fields_are_kept() -> None:
    channel = CHANNEL | {"future_field": 1}
    parsed = parse_event(event("StasisEnd", channel=channel, future_event_field="x"))
    assert isinstance(parsed, AriEvent) and parsed.type == "StasisEnd"
    assert parsed.model_extra == {"future_event_field": "x"}


def test_channel_destroyed_busy() -> None:
    parsed = parse_event(event("ChannelDestroyed", cause=17, cause_txt="User busy", tech_cause=486, channel=CHANNEL))
    assert isinstance(parsed, ChannelDestroyed)
    assert (parsed.cause, parsed.cause_txt, parsed.tech_cause) == (17, "User busy", 486)


def test_dtmf_received() -> None:
    parsed = parse_event(event("ChannelDtmfReceived", digit="9", duration_ms=120, channel=CHANNEL))
    assert isinstance(parsed, ChannelDtmfReceived)
    assert (parsed.digit, parsed.duration_ms) == ("9", 120)


def test_optional_channels_may_be_absent() -> None:
    entered = parse_event(event("ChannelEnteredBridge", bridge=BRIDGE))
    assert isinstance(entered, ChannelEnteredBridge) and entered.channel is None
    assert entered.bridge.channels == ["agent-7-leg", "att-1"]
    global_var = parse_event(event("ChannelVarset", variable="HITCALL_MODE", value="predictive"))
    assert isinstance(global_var, ChannelVarset) and global_var.channel is None
    dial = parse_event(event("Dial", peer=CHANNEL, dialstatus="RINGING"))
    assert isinstance(dial, Dial) and dial.caller is None and dial.dialstatus == "RINGING"


def test_playback_and_recording_events() -> None:
    playback = {"id": "pb-1", "media_uri": "sound:hitcall-info", "target_uri": "channel:att-1", "state": "done"}
    assert isinstance(parse_event(event("PlaybackFinished", playback=playback)), PlaybackFinished)
    recording = {"name": "2026/11/att-1", "format": "wav", "target_uri": "bridge:agent-7", "state": "done"}
    parsed = parse_event(event("RecordingFinished", recording=recording | {"duration": 95}))
    assert isinstance(parsed, RecordingFinished) and parsed.recording.duration == 95


def test_dumped_event_parses_back() -> None:
    sample = parse_event(event("StasisStart", args=[], channel=CHANNEL))
    assert isinstance(sample, StasisStart)
    assert parse_event(sample.model_dump(mode="json")) == sample


def test_unknown_type_keeps_raw() -> None:
    raw = event("ChannelTalkingStarted", channel=CHANNEL)
    with capture_logs() as logs:
        parsed = parse_event(raw)
    assert parsed == UnknownEvent(type="ChannelTalkingStarted", raw=raw, error=None)
    assert logs[0]["log_level"] == "warning" and logs[0]["event_type"] == "ChannelTalkingStarted"


def test_malformed_known_type_reports_without_values() -> None:
    raw = event("StasisStart", args=["customer"])
    with capture_logs() as logs:
        parsed = parse_event(raw)
    assert isinstance(parsed, UnknownEvent)
    assert parsed.type == "StasisStart" and parsed.raw is raw
    assert parsed.error is not None and "channel" in parsed.error
    assert logs[0]["log_level"] == "warning" and logs[0]["error"] == parsed.error

    bad_number = copy.deepcopy(CHANNEL)
    bad_number["caller"]["number"] = 358401234567
    parsed = parse_event(event("StasisEnd", channel=bad_number))
    assert isinstance(parsed, UnknownEvent) and parsed.error is not None
    assert "channel.caller.number" in parsed.error and "358401234567" not in parsed.error


def test_timestamp_without_offset_is_rejected() -> None:
    parsed = parse_event(event("StasisEnd", channel=CHANNEL) | {"timestamp": "2026-11-25T11:40:19.871"})
    assert isinstance(parsed, UnknownEvent) and parsed.error is not None and "timestamp" in parsed.error


def test_not_a_dict() -> None:
    garbage: list[Any] = [None, [], "StasisStart", 17, {"type": 5}, {}]
    for raw in garbage:
        parsed = parse_event(raw)
        assert isinstance(parsed, UnknownEvent) and parsed.raw == raw


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
event_types = st.sampled_from(sorted(EVENT_MODELS)) | st.text(max_size=20) | json_values


@settings(max_examples=300)
@given(event_types, st.dictionaries(st.text(max_size=15), json_values, max_size=8))
def test_garbage_never_raises(event_type: Any, fields: dict[str, Any]) -> None:
    with capture_logs():
        parsed = parse_event({**fields, "type": event_type})
    assert isinstance(parsed, AriEvent | UnknownEvent)


@settings(max_examples=300)
@given(
    st.sampled_from([*sorted(CHANNEL), "args", "timestamp", "application", "type"]),
    json_values,
)
def test_one_corrupted_field_never_raises(key: str, value: Any) -> None:
    raw = event("StasisStart", args=["customer"], channel=copy.deepcopy(CHANNEL))
    if key in CHANNEL:
        raw["channel"][key] = value
    else:
        raw[key] = value
    with capture_logs():
        parsed = parse_event(raw)
    assert isinstance(parsed, StasisStart | UnknownEvent)
