from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitcall_pbx.core.recording_pause import (
    AlreadyPaused,
    NotPaused,
    NotRecorded,
    RecordingPauses,
    span_offsets,
)
from hitcall_pbx.errors import Conflict, ValidationFailed

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def s(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def test_pause_and_resume_make_one_closed_span() -> None:
    r = RecordingPauses("rec-1")
    assert not r.paused and r.current is None
    r, opened = r.pause(s(10), "agent:7")
    assert r.paused and opened.seq == 1 and opened.open and opened.paused_by == "agent:7"
    r, closed = r.resume(s(25), "alice")
    assert not r.paused
    assert (closed.seq, closed.paused_at, closed.resumed_at, closed.resumed_by) == (1, s(10), s(25), "alice")
    assert closed.duration_s() == 15 and not closed.ended_by_call
    r, second = r.pause(s(30), "agent:7")
    assert second.seq == 2 and len(r.spans) == 2


def test_pause_while_paused_and_resume_without_pause_are_distinct_conflicts() -> None:
    r = RecordingPauses("rec-1")
    with pytest.raises(NotPaused) as not_paused:
        r.resume(s(1), "agent:7")
    assert not_paused.value.status == 409 and not_paused.value.code == "recording_not_paused"
    assert not_paused.value.details == {"recording_id": "rec-1", "paused": False, "spans": 0}
    r, _ = r.pause(s(2), "agent:7")
    with pytest.raises(AlreadyPaused) as again:
        r.pause(s(3), "agent:7")
    assert isinstance(again.value, Conflict) and again.value.code == "recording_already_paused"
    assert len(r.spans) == 1, "a refused pause changes nothing"


def test_an_open_span_closes_at_the_call_end_and_nothing_pauses_after_it() -> None:
    r, _ = RecordingPauses("rec-1").pause(s(5), "agent:7")
    r, closed = r.close(s(40))
    assert closed is not None and closed.resumed_at == s(40)
    assert closed.resumed_by == "system" and closed.ended_by_call
    assert r.ended and not r.paused
    with pytest.raises(NotRecorded):
        r.pause(s(41), "agent:7")
    with pytest.raises(NotPaused):
        r.resume(s(41), "agent:7")


def test_close_without_an_open_span_closes_nothing() -> None:
    r, _ = RecordingPauses("rec-1").pause(s(1), "a")
    r, _ = r.resume(s(2), "a")
    r, closed = r.close(s(3))
    assert closed is None and r.ended and r.spans[0].resumed_by == "a"


def test_times_never_go_backwards() -> None:
    r, _ = RecordingPauses("rec-1").pause(s(10), "a")
    r, closed = r.resume(s(9), "a")  # stamped before its pause
    assert closed.resumed_at == s(10)
    r, again = r.pause(s(8), "a")  # before the previous resume
    assert again.paused_at == s(10)


def test_bad_times_and_actors_are_validation_errors() -> None:
    r = RecordingPauses("rec-1")
    with pytest.raises(ValidationFailed) as naive:
        r.pause(datetime(2026, 1, 1), "a")
    assert naive.value.details == {"field": "at"}
    with pytest.raises(ValidationFailed) as actor:
        r.pause(s(1), "a b; drop")
    assert actor.value.details == {"field": "by"}
    assert not r.spans


def test_span_offsets_are_seconds_from_the_recording_start_clipped_to_it() -> None:
    r, _ = RecordingPauses("rec-1").pause(s(3), "a")
    r, _ = r.resume(s(5.5), "a")
    r, _ = r.pause(s(8), "a")
    assert span_offsets(s(1), r.spans, s(10)) == [(2.0, 4.5), (7.0, 9.0)], "the open span runs to the end"
    early, _ = RecordingPauses("rec-2").pause(s(0), "a")
    assert span_offsets(s(1), early.spans, s(4)) == [(0.0, 3.0)], "a pause before the recording started is clipped"


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["pause", "resume"]), st.floats(0, 100)), max_size=30))
def test_any_sequence_keeps_spans_ordered_and_at_most_the_last_open(ops: list[tuple[str, float]]) -> None:
    r = RecordingPauses("rec")
    for op, t in ops:
        try:
            r, _ = r.pause(s(t), "a") if op == "pause" else r.resume(s(t), "a")
        except Conflict:
            pass
    r, _ = r.close(s(200))
    assert all(not span.open for span in r.spans)
    assert [span.seq for span in r.spans] == list(range(1, len(r.spans) + 1))
    for a, b in zip(r.spans, r.spans[1:], strict=False):
        assert a.resumed_at is not None and a.paused_at <= a.resumed_at <= b.paused_at
