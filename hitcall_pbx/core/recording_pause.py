"""Recording pauses: the spans of a call's recording in which nothing was recorded (an
agent takes a card number, say). Pure: the adapter mutes and unmutes the live recording
and stores each span; this module decides what is allowed and what a span holds.

A recording is either recording or paused. `pause` opens a span, `resume` closes it,
`close` ends an open span when the call (and so the recording) ends. Pausing a paused
recording, or resuming one that is not paused, is a conflict with a stable error code,
so that an API client can tell the cases apart. Times never go backwards within a span:
a resume stamped before its pause (clocks of different sources) is recorded at the pause.

The recording keeps its length: a paused span is silence in the file, so a span's offset
in the file is its distance from the recording's start (`offsets`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from hitcall_pbx.errors import Conflict, ValidationFailed

__all__ = [
    "ACTOR",
    "AlreadyPaused",
    "NotPaused",
    "NotRecorded",
    "PauseSpan",
    "RecordingPauses",
    "span_offsets",
]

# Who paused or resumed: "agent:<id>", a user name, "token:<id>", or "system" (the call's end).
ACTOR = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


class AlreadyPaused(Conflict):
    code = "recording_already_paused"


class NotPaused(Conflict):
    code = "recording_not_paused"


class NotRecorded(Conflict):
    code = "call_not_recorded"


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationFailed(f"{name} must be a timezone-aware datetime", details={"field": name})
    return at


def _actor(by: str, name: str) -> str:
    if not ACTOR.fullmatch(by):
        raise ValidationFailed(f"{name} must be 1-128 of A-Z a-z 0-9 _ . : @ -", details={"field": name})
    return by


@dataclass(frozen=True)
class PauseSpan:
    """One paused span of a recording; `seq` counts the recording's spans from 1."""

    seq: int
    paused_at: datetime
    paused_by: str
    resumed_at: datetime | None = None
    resumed_by: str | None = None
    ended_by_call: bool = False  # the call ended while paused: the span closes at its end

    @property
    def open(self) -> bool:
        return self.resumed_at is None

    def duration_s(self) -> float | None:
        return None if self.resumed_at is None else (self.resumed_at - self.paused_at).total_seconds()


@dataclass(frozen=True)
class RecordingPauses:
    """The pause spans of one recording, oldest first; at most the last is open."""

    recording_id: str
    spans: tuple[PauseSpan, ...] = ()
    ended: bool = False  # the call ended: no more pauses

    @property
    def paused(self) -> bool:
        return bool(self.spans) and self.spans[-1].open

    @property
    def current(self) -> PauseSpan | None:
        return self.spans[-1] if self.paused else None

    def pause(self, at: datetime, by: str) -> tuple[RecordingPauses, PauseSpan]:
        """Open a span at `at`; AlreadyPaused while one is open, NotRecorded after the call's end."""
        _aware(at, "at")
        _actor(by, "by")
        if self.ended:
            raise NotRecorded("the call has ended: its recording cannot be paused", details=self._details())
        if self.paused:
            raise AlreadyPaused("the recording is already paused", details=self._details())
        if self.spans and self.spans[-1].resumed_at is not None:
            at = max(at, self.spans[-1].resumed_at)
        span = PauseSpan(seq=len(self.spans) + 1, paused_at=at, paused_by=by)
        return replace(self, spans=(*self.spans, span)), span

    def resume(self, at: datetime, by: str) -> tuple[RecordingPauses, PauseSpan]:
        """Close the open span at `at`; NotPaused when none is open."""
        _aware(at, "at")
        _actor(by, "by")
        span = self.current
        if span is None:
            raise NotPaused("the recording is not paused", details=self._details())
        closed = replace(span, resumed_at=max(at, span.paused_at), resumed_by=by)
        return replace(self, spans=(*self.spans[:-1], closed)), closed

    def close(self, at: datetime) -> tuple[RecordingPauses, PauseSpan | None]:
        """The call ended at `at`: an open span closes there (by "system"); no pause after it."""
        _aware(at, "at")
        span = self.current
        if span is None:
            return replace(self, ended=True), None
        closed = replace(span, resumed_at=max(at, span.paused_at), resumed_by="system", ended_by_call=True)
        return replace(self, spans=(*self.spans[:-1], closed), ended=True), closed

    def _details(self) -> dict[str, object]:
        return {"recording_id": self.recording_id, "paused": self.paused, "spans": len(self.spans)}


def span_offsets(started_at: datetime, spans: tuple[PauseSpan, ...], ended_at: datetime) -> list[tuple[float, float]]:
    """Each span as (start, end) seconds from the recording's start, clipped to the
    recording; an open span runs to `ended_at`."""
    _aware(started_at, "started_at")
    _aware(ended_at, "ended_at")
    total = max(0.0, (ended_at - started_at).total_seconds())
    out: list[tuple[float, float]] = []
    for s in spans:
        start = min(total, max(0.0, (s.paused_at - started_at).total_seconds()))
        end_at = s.resumed_at if s.resumed_at is not None else ended_at
        end = min(total, max(start, (end_at - started_at).total_seconds()))
        out.append((round(start, 3), round(end, 3)))
    return out
