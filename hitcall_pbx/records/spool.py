"""Durable local spool: an on-disk FIFO of JSON objects for when Postgres is unreachable.

Layout of the spool directory (mode 0700, files 0600; it holds personal data):

* ``NNNNNNNNNNNN.jsonl`` segments, replayed in name order. One JSON object per line.
  `append` writes a whole batch with one ``write`` and one ``fsync``; a failed write is
  truncated away. Segments are append-only and never reopened after `seal` or a
  restart, so only the last line of a segment can be torn (a crash mid-write): `read`
  skips it, and any line that is not a JSON object, without losing the others.
* ``rejected-YYYY-MM-DD.jsonl``: items the database refused as invalid, kept for the
  operator, one file per UTC day. They hold phone numbers outside the database, where
  purge and erasure do not reach, so they are kept for the CDR minimum retention only
  (``MIN_CDR_MONTHS``): `expire_rejected` deletes a day's file once its last possible
  item is that old. It runs when a spool is opened and in every purge run
  (`PurgeWorker` with ``spool_dir``). ``rejected.jsonl`` from earlier versions is
  judged by its modification time.
* ``.lock``: held (``flock``) while a process has the spool open; a second process on
  the same directory is refused.

Blocking file I/O: call from async code through ``asyncio.to_thread``, one call at a
time; `backlog` may be read from any thread meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..core.retention import MIN_CDR_MONTHS, add_months
from ..errors import Conflict
from ..logs import get_logger

_log = get_logger("hitcall.records.spool")

_SEGMENT_RE = re.compile(r"^[0-9]{12}\.jsonl$")
_REJECTED_RE = re.compile(r"^rejected-([0-9]{4}-[0-9]{2}-[0-9]{2})\.jsonl$")
_LEGACY_REJECTED = "rejected.jsonl"


def _now() -> datetime:
    return datetime.now(UTC)


def expire_rejected(directory: Path | str, now: datetime, *, months: int = MIN_CDR_MONTHS) -> list[Path]:
    """Delete the files of rejected items whose newest possible item is at least `months`
    calendar months older than `now`; return the files deleted. Safe while a writer has
    the spool open: it only ever appends to the current day's file."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in sorted(directory.iterdir()):
        match = _REJECTED_RE.match(path.name)
        try:
            if match:
                newest = datetime.fromisoformat(match[1]).replace(tzinfo=UTC) + timedelta(days=1)
            elif path.name == _LEGACY_REJECTED:
                newest = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            else:
                continue
        except (ValueError, FileNotFoundError):
            continue
        if add_months(newest, months) <= now:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        _fsync_directory(directory)
        _log.info("spool_rejected_expired", spool_dir=str(directory), files=[p.name for p in removed])
    return removed


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SegmentRead:
    items: list[dict[str, Any]]
    skipped: int
    """Lines that were torn or not a JSON object."""


def _dump(items: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(item, separators=(",", ":"), ensure_ascii=False) + "\n" for item in items).encode("utf-8")


class Spool:
    """A directory of append-only segment files; see the module docstring."""

    def __init__(
        self, directory: Path | str, *, segment_items: int = 10_000, clock: Callable[[], datetime] = _now
    ) -> None:
        if segment_items < 1:
            raise ValueError("segment_items must be >= 1")
        self.directory = Path(directory)
        self._clock = clock
        self._segment_items = segment_items
        self._counts: dict[Path, int] = {}
        self._counts_lock = threading.Lock()
        self._open_path: Path | None = None
        self._open_fd: int | None = None
        self._lock_fd: int | None = None
        self._next_seq = 1

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Lock the directory and index the segments left by earlier runs."""
        if self._lock_fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise Conflict(
                f"spool directory {self.directory} is in use by another process",
                details={"spool_dir": str(self.directory)},
            ) from None
        self._lock_fd = lock_fd
        expire_rejected(self.directory, self._clock())
        counts = {
            path: path.read_bytes().count(b"\n")
            for path in sorted(self.directory.iterdir())
            if _SEGMENT_RE.match(path.name)
        }
        with self._counts_lock:
            self._counts = counts
        if counts:
            self._next_seq = int(max(counts).name[:12]) + 1
            _log.info("spool_found", spool_dir=str(self.directory), segments=len(counts), items=sum(counts.values()))

    def close(self) -> None:
        self.seal()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def backlog(self) -> int:
        """Items waiting in segments (torn lines not counted)."""
        with self._counts_lock:
            return sum(self._counts.values())

    # -- writing ---------------------------------------------------------------------
    def append(self, items: Sequence[Mapping[str, Any]]) -> Path | None:
        """Append the items durably (one write, one fsync); all or nothing. Return the
        segment that holds them (one segment, never split), None when there are none."""
        if not items:
            return None
        self._require_open()
        if self._open_fd is None or self._open_path is None or self._counts[self._open_path] >= self._segment_items:
            self._start_segment()
        fd, path = self._open_fd, self._open_path
        assert fd is not None and path is not None
        data = _dump(items)
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                self.seal()  # cannot clean up: never append after the torn bytes
            raise
        with self._counts_lock:
            self._counts[path] += len(items)
        return path

    def reject(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Keep items the database refused in today's ``rejected-YYYY-MM-DD.jsonl`` (durable,
        outside the backlog)."""
        if not items:
            return
        self._require_open()
        path = self.directory / f"rejected-{self._clock().astimezone(UTC).date().isoformat()}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, _dump(items))
            os.fsync(fd)
        finally:
            os.close(fd)

    def seal(self) -> None:
        """Close the segment being appended to; the next `append` starts a new one."""
        if self._open_fd is not None:
            os.close(self._open_fd)
            self._open_fd = None
            self._open_path = None

    # -- replay ----------------------------------------------------------------------
    def segments(self) -> list[Path]:
        """Seal the open segment; every segment, oldest first."""
        self.seal()
        with self._counts_lock:
            return sorted(self._counts)

    def read(self, segment: Path) -> SegmentRead:
        lines = segment.read_bytes().split(b"\n")
        skipped = 0
        if lines[-1]:
            skipped += 1
            _log.warning("spool_torn_line", segment=segment.name, line=len(lines))
        items: list[dict[str, Any]] = []
        for number, line in enumerate(lines[:-1], start=1):
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            if isinstance(item, dict):
                items.append(item)
            else:
                skipped += 1
                _log.warning("spool_bad_line", segment=segment.name, line=number)
        return SegmentRead(items, skipped)

    def remove(self, segment: Path) -> None:
        """Delete a segment whose items are safely stored elsewhere."""
        if segment == self._open_path:
            self.seal()
        segment.unlink(missing_ok=True)
        with self._counts_lock:
            self._counts.pop(segment, None)
        self._fsync_directory()

    # -- helpers ---------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError("spool is not open")

    def _start_segment(self) -> None:
        self.seal()
        path = self.directory / f"{self._next_seq:012d}.jsonl"
        self._next_seq += 1
        self._open_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._open_path = path
        with self._counts_lock:
            self._counts[path] = 0
        self._fsync_directory()

    def _fsync_directory(self) -> None:
        _fsync_directory(self.directory)
