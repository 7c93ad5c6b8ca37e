"""Retention operations: complaint holds and their release, per-campaign policy changes
and the explicit recompute of stamped deadlines. Each is one transaction with its
audit row.

A hold never changes a recording's ``retention_until`` (the policy deadline); it sets
``held_until`` (at most 18 months from the call). Releasing it clears the hold, so the
stamped policy deadline applies again; when that has passed the recording is purged at
once. Changing a campaign's policy affects rows written afterwards only: stamped
deadlines change solely through `recompute`, which may shorten them but never below
the minimum (call + 2 months).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg

from ..auth import Actor
from ..core.retention import (
    RetentionPolicy,
    hold_deadline,
    max_hold_deadline,
    purge_eligible,
    recompute_deadline,
    validate_case_id,
)
from ..errors import Conflict, NotFound, Unavailable, ValidationFailed
from ..store import audit
from ..store.db import Connection
from .cdr import ATTEMPT_TABLES
from .purge import purge_recordings
from .recordings import RecordingStore

__all__ = ["HoldState", "PolicyChange", "RecomputeReport", "RetentionOps"]

_RECOMPUTE_CHUNK = 5000
_MAX_TEXT = 500


@dataclass(frozen=True)
class HoldState:
    recording_id: uuid.UUID
    retention_until: datetime
    held_until: datetime | None
    hold_reason: str | None
    hold_case_id: str | None
    purged: bool


@dataclass(frozen=True)
class PolicyChange:
    campaign_id: int
    previous: RetentionPolicy
    policy: RetentionPolicy


@dataclass(frozen=True)
class RecomputeReport:
    campaign_id: int
    policy: RetentionPolicy
    recordings_changed: int
    recordings_shortened: int
    attempts_changed: int
    attempts_shortened: int


def _text(value: object, name: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_TEXT:
        raise ValidationFailed(
            f"{name} must be a non-empty text of at most {_MAX_TEXT} characters", details={"field": name}
        )
    return value.strip()


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValidationFailed("now must be timezone-aware", details={"field": "now"})
    return now


def _policy(row: asyncpg.Record) -> RetentionPolicy:
    return RetentionPolicy(row["retention_recordings_months"], row["retention_cdr_months"])


class RetentionOps:
    """Holds, releases, policy changes and recomputes on the store's recordings."""

    def __init__(self, pool: asyncpg.Pool, store: RecordingStore) -> None:
        self._pool = pool
        self._store = store

    @staticmethod
    async def _locked_recording(conn: Connection, recording_id: uuid.UUID) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM recordings WHERE id = $1 FOR UPDATE", recording_id)
        if row is None:
            raise NotFound("recording not found", details={"field": "recording_id", "value": str(recording_id)})
        if row["purged_at"] is not None:
            raise Conflict(
                "recording is already purged",
                details={"field": "recording_id", "purged_at": row["purged_at"].isoformat()},
            )
        return row

    async def hold(
        self,
        recording_id: uuid.UUID,
        *,
        until: datetime | None,
        reason: str,
        case_id: str | None,
        actor: Actor,
    ) -> HoldState:
        """Put a complaint hold on a recording (or change an existing one) until `until`, at
        most 18 months from the call (None: exactly that long)."""
        reason_text = _text(reason, "reason", required=True)
        case = validate_case_id(case_id)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._locked_recording(conn, recording_id)
            call_at = row["created_at"]
            held_until = hold_deadline(call_at, max_hold_deadline(call_at) if until is None else until)
            if held_until <= datetime.now(UTC):
                raise ValidationFailed("a hold must end in the future", details={"field": "held_until"})
            new = await conn.fetchrow(
                """UPDATE recordings SET held_until = $2, hold_reason = $3, hold_case_id = $4
                   WHERE id = $1 RETURNING *""",
                recording_id,
                held_until,
                reason_text,
                case,
            )
            assert new is not None  # the recording is locked above: the statement finds it
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="recording.hold",
                object_type="recording",
                object_id=str(recording_id),
                details={
                    "held_until": held_until.isoformat(),
                    "case_id": case,
                    "previous_held_until": row["held_until"].isoformat() if row["held_until"] else None,
                },
            )
        return _state(new)

    async def release(
        self,
        recording_id: uuid.UUID,
        *,
        actor: Actor,
        now: datetime | None = None,
    ) -> HoldState:
        """Release a recording's hold: its policy deadline applies again, and a recording past
        that deadline (and the minimum) is purged at once."""
        now = _now(now)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._locked_recording(conn, recording_id)
            if row["held_until"] is None:
                raise Conflict("recording is not on hold", details={"field": "recording_id"})
            new = await conn.fetchrow(
                """UPDATE recordings SET held_until = NULL, hold_reason = NULL, hold_case_id = NULL
                   WHERE id = $1 RETURNING *""",
                recording_id,
            )
            assert new is not None  # the recording is locked above: the statement finds it
            purge = purge_eligible(now, new["created_at"], new["retention_until"], None, None)
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="recording.release",
                object_type="recording",
                object_id=str(recording_id),
                details={
                    "case_id": row["hold_case_id"],
                    "held_until": row["held_until"].isoformat(),
                    "retention_until": row["retention_until"].isoformat(),
                    "purged": purge,
                },
            )
            if purge:  # the file goes last, right before the commit
                _, failed = await purge_recordings(conn, self._store, [new], now=now, reason="retention")
                if failed:
                    raise Unavailable(
                        "the recording's file could not be deleted; the hold is kept", details={"field": "recording_id"}
                    )
                new = await conn.fetchrow("SELECT * FROM recordings WHERE id = $1", recording_id)
                assert new is not None  # the recording is locked above: the statement finds it
        return _state(new)

    async def change_policy(
        self,
        campaign_id: int,
        *,
        recordings_months: int | None = None,
        cdr_months: int | None = None,
        actor: Actor,
    ) -> PolicyChange:
        """Set a campaign's retention policy (recordings 2..6 months, CDRs 1..120). Applies to
        rows written from now on; stamped deadlines stay until an explicit `recompute`."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT retention_recordings_months, retention_cdr_months FROM campaigns WHERE id = $1 FOR UPDATE",
                campaign_id,
            )
            if row is None:
                raise NotFound("campaign not found", details={"field": "campaign_id", "value": campaign_id})
            previous = _policy(row)
            policy = RetentionPolicy(
                previous.recordings_months if recordings_months is None else recordings_months,
                previous.cdr_months if cdr_months is None else cdr_months,
            )
            await conn.execute(
                """UPDATE campaigns SET retention_recordings_months = $2, retention_cdr_months = $3
                   WHERE id = $1""",
                campaign_id,
                policy.recordings_months,
                policy.cdr_months,
            )
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="campaign.retention_policy",
                object_type="campaign",
                object_id=campaign_id,
                details={"previous": asdict(previous), "policy": asdict(policy)},
            )
        return PolicyChange(campaign_id, previous, policy)

    async def recompute(
        self,
        campaign_id: int,
        *,
        actor: Actor,
    ) -> RecomputeReport:
        """Restamp the deadlines of the campaign's recordings (not purged) and CDRs (not
        anonymised) from its current policy. May shorten them, never below call + 2 months."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT retention_recordings_months, retention_cdr_months FROM campaigns WHERE id = $1 FOR SHARE",
                campaign_id,
            )
            if row is None:
                raise NotFound("campaign not found", details={"field": "campaign_id", "value": campaign_id})
            policy = _policy(row)
            rec = await _restamp(conn, "recordings", "purged_at IS NULL", "recording", campaign_id, policy)
            # Live attempts too, first (`ATTEMPT_TABLES`): the CDR writer carries a live
            # row's deadline over to the CDR it writes.
            counts = [
                await _restamp(conn, table, "anonymised_at IS NULL", "cdr", campaign_id, policy)
                for table in ATTEMPT_TABLES
            ]
            cdr = (sum(c[0] for c in counts), sum(c[1] for c in counts))
            report = RecomputeReport(campaign_id, policy, rec[0], rec[1], cdr[0], cdr[1])
            await audit.record(
                conn,
                **actor.audit_fields(),
                action="retention.recompute",
                object_type="campaign",
                object_id=campaign_id,
                details={
                    "policy": asdict(policy),
                    "recordings_changed": rec[0],
                    "recordings_shortened": rec[1],
                    "attempts_changed": cdr[0],
                    "attempts_shortened": cdr[1],
                },
            )
        return report


async def _restamp(
    conn: Connection,
    table: str,
    live: str,
    kind: str,
    campaign_id: int,
    policy: RetentionPolicy,
) -> tuple[int, int]:
    """Apply `recompute_deadline` to every live row of the campaign; (changed, shortened)."""
    changed: list[tuple[uuid.UUID, datetime]] = []
    shortened = 0
    async for r in conn.cursor(
        f"SELECT id, created_at, retention_until FROM {table} WHERE campaign_id = $1 AND {live} FOR UPDATE",
        campaign_id,
    ):
        change = recompute_deadline(r["created_at"], r["retention_until"], policy, kind=kind)
        if change.changed:
            changed.append((r["id"], change.deadline))
            shortened += change.shortened
    for i in range(0, len(changed), _RECOMPUTE_CHUNK):
        chunk = changed[i : i + _RECOMPUTE_CHUNK]
        await conn.execute(
            f"""UPDATE {table} t SET retention_until = c.deadline
                FROM unnest($1::uuid[], $2::timestamptz[]) AS c(id, deadline) WHERE t.id = c.id""",
            [c[0] for c in chunk],
            [c[1] for c in chunk],
        )
    return len(changed), shortened


def _state(row: asyncpg.Record) -> HoldState:
    return HoldState(
        recording_id=row["id"],
        retention_until=row["retention_until"],
        held_until=row["held_until"],
        hold_reason=row["hold_reason"],
        hold_case_id=row["hold_case_id"],
        purged=row["purged_at"] is not None,
    )
