"""The records as the REST API sees them (api.deps.CdrQuery and RecordingsService)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg

from ..api import deps
from ..auth import Actor
from ..errors import NotFound
from .cdr_query import CdrExport, CdrQuery, decode_cursor, keyset_cursor, query_cdrs
from .recordings import RecordingStore
from .retention_ops import RetentionOps

_CONTENT_TYPES = {"wav": "audio/wav", "gsm": "audio/x-gsm", "ulaw": "audio/basic", "sln": "audio/L16"}


def _query(flt: deps.CdrFilter) -> CdrQuery:
    return CdrQuery(
        campaign_id=flt.campaign_id,
        agent_id=flt.agent_id,
        since=flt.since,
        until=flt.until,
        outcome=flt.outcome,
        direction=flt.direction,
    )


class ApiCdrs:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def query(self, flt: deps.CdrFilter, *, limit: int, cursor: str | None) -> deps.CdrPage:
        page = await query_cdrs(self.pool, _query(flt), limit=limit, cursor=cursor)
        items = [deps.Cdr.model_validate({**r.to_json(), "anonymised_at": None}) for r in page.items]
        return deps.CdrPage(items=items, next_cursor=page.next_cursor)

    async def export_csv(self, flt: deps.CdrFilter) -> AsyncIterator[bytes]:
        async for chunk in CdrExport(self.pool, _query(flt), "csv"):
            yield chunk.encode()


def _recording(row: Any) -> deps.Recording:
    return deps.Recording.model_validate({k: row[k] for k in deps.Recording.model_fields if k != "pauses"})


class ApiRecordings:
    def __init__(self, pool: asyncpg.Pool, store: RecordingStore) -> None:
        self.pool = pool
        self.store = store
        self.ops = RetentionOps(pool, store)

    async def list(self, flt: deps.RecordingFilter, *, limit: int, cursor: str | None) -> deps.RecordingPage:
        args: list[Any] = []
        where = ["true"]
        for column, op, value in (
            ("campaign_id", "=", flt.campaign_id),
            ("attempt_id", "=", flt.attempt_id),
            ("created_at", ">=", flt.since),
            ("created_at", "<", flt.until),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} {op} ${len(args)}")
        if flt.held is not None:
            where.append("held_until IS NOT NULL" if flt.held else "held_until IS NULL")
        if cursor is not None:
            args.extend(decode_cursor(cursor))
            where.append(f"(created_at, id) > (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        rows = await self.pool.fetch(
            f"SELECT * FROM recordings WHERE {' AND '.join(where)} ORDER BY created_at, id LIMIT ${len(args)}", *args
        )
        items = [_recording(r) for r in rows[:limit]]
        more = len(rows) > limit
        return deps.RecordingPage(
            items=items, next_cursor=keyset_cursor(items[-1].created_at, items[-1].id) if more else None
        )

    async def _row(self, recording_id: uuid.UUID) -> Any:
        row = await self.pool.fetchrow("SELECT * FROM recordings WHERE id = $1", recording_id)
        if row is None:
            raise NotFound("no such recording", details={"recording_id": str(recording_id)})
        return row

    async def get(self, recording_id: uuid.UUID) -> deps.Recording:
        recording = _recording(await self._row(recording_id))
        spans = await self.pool.fetch(
            "SELECT * FROM recording_pauses WHERE recording_id = $1 ORDER BY seq", recording_id
        )
        recording.pauses = [deps.RecordingPauseSpan.model_validate(dict(s)) for s in spans]
        return recording

    async def open(self, recording_id: uuid.UUID) -> deps.RecordingFile:
        row = await self._row(recording_id)
        if row["purged_at"] is not None:
            raise NotFound("the recording was purged", details={"recording_id": str(recording_id)})
        path = self.store.absolute(row["path"])
        if not path.is_file():
            raise NotFound("the recording file is missing", details={"recording_id": str(recording_id)})
        fmt = row["format"]
        return deps.RecordingFile(
            path=path,
            content_type=_CONTENT_TYPES.get(fmt, "application/octet-stream"),
            filename=f"{recording_id}.{fmt}",
        )

    async def hold(
        self, recording_id: uuid.UUID, *, reason: str, case_id: str | None, until: datetime | None, actor: Actor
    ) -> deps.Recording:
        await self.ops.hold(recording_id, until=until, reason=reason, case_id=case_id, actor=actor)
        return await self.get(recording_id)

    async def release(self, recording_id: uuid.UUID, *, actor: Actor) -> deps.Recording:
        await self.ops.release(recording_id, actor=actor)
        return await self.get(recording_id)
