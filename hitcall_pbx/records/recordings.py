"""The recordings store: one file per recording under a root directory, one row per file.

A recording's file lives at ``<root>/<hex[0:2]>/<hex[2:4]>/<uuid>.<format>``; the row
holds that path relative to the root. The file and the row agree: `finalize` writes
the file (temp file in the target directory, fsync, rename, fsync the directory), then
the row; when the row cannot be written the file is removed again. `check` finds rows
whose file is missing or differs and files that no live row claims.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
import wave
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from ..auth import Actor
from ..core.retention import RetentionPolicy, recording_deadline
from ..errors import Conflict, NotFound, ValidationFailed
from ..hooks.events import enqueue
from ..logs import get_logger
from ..store import audit

__all__ = ["CheckReport", "FileProblem", "Recording", "RecordingStore", "audio_duration"]

_log = get_logger("hitcall.records.recordings")

_FORMAT_RE = re.compile(r"^[a-z0-9]{2,10}$")
_TMP_PREFIX = ".incoming-"
_CHUNK = 1 << 20
_CHECK_BATCH = 500

# Constant-bitrate Asterisk formats whose duration follows from the file size.
_BYTES_PER_SECOND = {
    "gsm": 1650,
    "ulaw": 8000,
    "alaw": 8000,
    "g722": 8000,
    "g729": 1000,
    "sln": 16000,
    "sln16": 32000,
}

RECORDER = Actor("recorder", "system")


@dataclass(frozen=True)
class Recording:
    """A stored recording (its row)."""

    id: uuid.UUID
    attempt_id: uuid.UUID
    campaign_id: int
    path: str
    sha256: str
    size_bytes: int
    duration_s: Decimal
    format: str
    created_at: datetime
    retention_until: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Recording:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class FileProblem:
    path: str
    problem: str  # missing | size_mismatch | sha256_mismatch | orphan
    recording_id: str | None = None
    expected: str | None = None
    actual: str | None = None


@dataclass
class CheckReport:
    rows_checked: int = 0
    files_seen: int = 0
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "files_seen": self.files_seen,
            "problems": [asdict(p) for p in self.problems],
        }


def audio_duration(path: Path, fmt: str) -> float:
    """Seconds of audio: from the WAV header for ``wav``, from the size for constant-bitrate
    formats; 0 when neither tells (logged)."""
    if fmt == "wav":
        try:
            with wave.open(str(path), "rb") as w:
                return w.getnframes() / w.getframerate()
        except (wave.Error, EOFError, ZeroDivisionError) as exc:
            _log.warning("recording_duration_unknown", path=str(path), format=fmt, reason=str(exc))
            return 0.0
    rate = _BYTES_PER_SECOND.get(fmt)
    if rate is None:
        _log.warning("recording_duration_unknown", path=str(path), format=fmt, reason="no duration rule")
        return 0.0
    return path.stat().st_size / rate


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _field(message: str, name: str, **extra: Any) -> ValidationFailed:
    return ValidationFailed(message, details={"field": name, **extra})


class RecordingStore:
    """Recording files under `root_dir` (created 0700) and their rows."""

    def __init__(self, root_dir: Path | str) -> None:
        self.root = Path(root_dir)

    # -- paths -----------------------------------------------------------------------
    @staticmethod
    def relative_path(recording_id: uuid.UUID, fmt: str) -> str:
        h = recording_id.hex
        return f"{h[0:2]}/{h[2:4]}/{recording_id}.{fmt}"

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    # -- files (blocking; call through asyncio.to_thread) ----------------------------
    def _install(self, source: Path, relative: str) -> tuple[str, int, float]:
        """Copy `source` to `relative` atomically; return (sha256, size, duration)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.absolute(relative)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        h = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            duration = audio_duration(tmp, target.suffix.lstrip("."))
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return h.hexdigest(), size, duration

    def delete_file(self, relative: str) -> None:
        """Remove a recording's file; a file that is already gone is fine."""
        target = self.absolute(relative)
        try:
            target.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(target.parent)

    # -- finalize --------------------------------------------------------------------
    async def finalize(
        self,
        pool: asyncpg.Pool,
        *,
        source_path: Path | str,
        recording_id: uuid.UUID,
        attempt_id: uuid.UUID,
        campaign_id: int,
        call_at: datetime,
        policy: RetentionPolicy,
        format: str,
    ) -> Recording:
        """Move a finished recording (e.g. Asterisk's ``<spool>/recording/<name>.wav``) into
        the store and write its row (audit row and ``recording.ready`` event in the same
        transaction). Retried after a crash it completes the same recording once."""
        if not isinstance(format, str) or not _FORMAT_RE.fullmatch(format):
            raise _field("format must be 2-10 lower-case letters or digits", "format", value=repr(format))
        if not isinstance(policy, RetentionPolicy):
            raise _field("policy must be a RetentionPolicy", "policy")
        retention_until = recording_deadline(call_at, policy)  # validates call_at
        source = Path(source_path)
        relative = self.relative_path(recording_id, format)

        existing = await pool.fetchrow("SELECT * FROM recordings WHERE id = $1", recording_id)
        if existing is not None:
            return await self._resume(existing, source)
        if not await asyncio.to_thread(source.is_file):
            raise NotFound(f"recording file {source} does not exist", details={"field": "source_path"})

        sha256, size, duration = await asyncio.to_thread(self._install, source, relative)
        try:
            async with pool.acquire() as conn, conn.transaction():
                # The attempt is live or already a CDR (no foreign key spans both tables).
                if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM all_attempts WHERE id = $1)", attempt_id):
                    raise NotFound("attempt_id does not exist", details={"field": "attempt_id"})
                row = await conn.fetchrow(
                    """INSERT INTO recordings (id, attempt_id, campaign_id, path, sha256, size_bytes,
                                               duration_s, format, created_at, retention_until)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
                    recording_id,
                    attempt_id,
                    campaign_id,
                    relative,
                    sha256,
                    size,
                    Decimal(f"{duration:.3f}"),
                    format,
                    call_at,
                    retention_until,
                )
                assert row is not None  # INSERT ... RETURNING returns the inserted row
                recording = Recording.from_row(row)
                await audit.record(
                    conn,
                    **RECORDER.audit_fields(),
                    action="recording.store",
                    object_type="recording",
                    object_id=str(recording_id),
                    details={
                        "attempt_id": str(attempt_id),
                        "campaign_id": campaign_id,
                        "sha256": sha256,
                        "size_bytes": size,
                        "retention_until": retention_until.isoformat(),
                    },
                )
                await enqueue(conn, "recording.ready", f"recording:{recording_id}", _ready_payload(recording))
        except asyncpg.UniqueViolationError:
            # The same recording finalized concurrently: the file is the other call's now.
            raise Conflict(
                "this recording is being stored already",
                details={"field": "recording_id", "recording_id": str(recording_id)},
            ) from None
        except BaseException as exc:
            await asyncio.to_thread(self.delete_file, relative)
            if isinstance(exc, asyncpg.ForeignKeyViolationError):
                raise NotFound("campaign_id does not exist", details={"field": "campaign_id"}) from None
            raise
        await asyncio.to_thread(source.unlink, missing_ok=True)
        _log.info(
            "recording_stored",
            recording_id=str(recording_id),
            attempt_id=str(attempt_id),
            size_bytes=size,
            duration_s=round(duration, 3),
        )
        return recording

    async def _resume(self, row: asyncpg.Record, source: Path) -> Recording:
        """The row exists: a retried finalize. Done when the stored file matches the row."""
        stored = self.absolute(row["path"])
        try:
            sha256, size = await asyncio.to_thread(_digest, stored)
        except FileNotFoundError:
            sha256, size = None, None
        if (sha256, size) != (row["sha256"], row["size_bytes"]):
            raise Conflict(
                "a recording with this id exists and its file differs",
                details={"field": "recording_id", "recording_id": str(row["id"])},
            )
        await asyncio.to_thread(source.unlink, missing_ok=True)
        return Recording.from_row(row)

    # -- check -----------------------------------------------------------------------
    def _verify(self, rows: list[tuple[uuid.UUID, str, str, int]]) -> list[FileProblem]:
        problems: list[FileProblem] = []
        for rid, relative, sha256, size in rows:
            target = self.absolute(relative)
            try:
                actual_size = target.stat().st_size
            except FileNotFoundError:
                problems.append(FileProblem(relative, "missing", str(rid)))
                continue
            if actual_size != size:
                problems.append(FileProblem(relative, "size_mismatch", str(rid), str(size), str(actual_size)))
                continue
            actual_sha, _ = _digest(target)
            if actual_sha != sha256:
                problems.append(FileProblem(relative, "sha256_mismatch", str(rid), sha256, actual_sha))
        return problems

    def _files(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            str(Path(dirpath, name).relative_to(self.root))
            for dirpath, _, names in os.walk(self.root)
            for name in names
        )

    async def check(self, pool: asyncpg.Pool) -> CheckReport:
        """Compare the store with the table: rows not purged whose file is missing or has the
        wrong size or sha256, and files no such row claims (orphans: files of purged rows,
        leftovers of interrupted writes). Findings are confirmed against the current rows at
        the end, so a recording finalized or purged during the check is not reported."""
        report = CheckReport()
        claimed: set[str] = set()
        suspects: list[FileProblem] = []
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            batch: list[tuple[uuid.UUID, str, str, int]] = []
            async for r in conn.cursor("SELECT id, path, sha256, size_bytes FROM recordings WHERE purged_at IS NULL"):
                batch.append((r["id"], r["path"], r["sha256"], r["size_bytes"]))
                claimed.add(r["path"])
                if len(batch) >= _CHECK_BATCH:
                    suspects += await asyncio.to_thread(self._verify, batch)
                    report.rows_checked += len(batch)
                    batch = []
            suspects += await asyncio.to_thread(self._verify, batch)
            report.rows_checked += len(batch)
        files = await asyncio.to_thread(self._files)
        report.files_seen = len(files)
        orphans = [f for f in files if f not in claimed]

        live = await pool.fetch(
            "SELECT id, path, sha256, size_bytes FROM recordings WHERE id = ANY($1::uuid[]) AND purged_at IS NULL",
            [p.recording_id for p in suspects],
        )
        report.problems += await asyncio.to_thread(self._verify, [tuple(r.values()) for r in live])
        claimed_now = {
            r["path"]
            for r in await pool.fetch(
                "SELECT path FROM recordings WHERE path = ANY($1::text[]) AND purged_at IS NULL", orphans
            )
        }
        report.problems += [
            FileProblem(f, "orphan") for f in orphans if f not in claimed_now and self.absolute(f).exists()
        ]
        report.problems.sort(key=lambda p: (p.path, p.problem))
        return report


def _ready_payload(rec: Recording) -> dict[str, Any]:
    return {
        "recording_id": str(rec.id),
        "attempt_id": str(rec.attempt_id),
        "campaign_id": rec.campaign_id,
        "format": rec.format,
        "size_bytes": rec.size_bytes,
        "duration_s": float(rec.duration_s),
        "sha256": rec.sha256,
        "created_at": rec.created_at.isoformat(),
        "retention_until": rec.retention_until.isoformat(),
    }
