"""Query and export CDRs (ended calls) by campaign, agent, time range, outcome and direction.

Inbound CDRs (``direction = 'inbound'``) are included unless a direction is asked for; they
may have no campaign (a filter by campaign leaves those out).

Pages are in a stable order, ``(created_at, id)``, with keyset cursors: a cursor names the
last row of a page, so paging neither skips nor repeats rows when new calls arrive.
Exports stream page by page (a connection is held per page, never for the whole export)
as CSV (RFC 4180: CRLF, quotes doubled, a header row) or a JSON array.

CSV cells are safe to open in a spreadsheet: text starting with ``= + - @``, tab or CR is
prefixed with ``'`` so it is not taken as a formula. A plain number such as an E.164
phone number (``+358401234567``) is not a formula and is left as it is.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from ..core.outcomes import CallDirection, Outcome
from ..errors import ValidationFailed
from .cdr import COLUMNS, CdrRecord

MAX_PAGE_SIZE = 1000
EXPORT_FORMATS = ("csv", "json")

_OUTCOMES = frozenset(o.value for o in Outcome)
_DIRECTIONS = frozenset(d.value for d in CallDirection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def _bad(field: str, message: str, value: Any) -> ValidationFailed:
    return ValidationFailed(f"{field} {message}", details={"field": field, "value": repr(value)})


def _id(value: Any, field: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63):
        raise _bad(field, "must be a positive integer", value)


@dataclass(frozen=True)
class CdrQuery:
    """Filters; every one optional. ``since`` <= created_at < ``until``."""

    campaign_id: int | None = None
    agent_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    direction: str | None = None

    def __post_init__(self) -> None:
        _id(self.campaign_id, "campaign_id")
        _id(self.agent_id, "agent_id")
        for field in ("since", "until"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
                raise _bad(field, "must be a timezone-aware datetime", value)
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise _bad("until", "must be after since", self.until)
        if self.outcome is not None and self.outcome not in _OUTCOMES:
            raise _bad("outcome", "must be one of " + ", ".join(sorted(_OUTCOMES)), self.outcome)
        if self.direction is not None and self.direction not in _DIRECTIONS:
            raise _bad("direction", "must be one of " + ", ".join(sorted(_DIRECTIONS)), self.direction)

    def _where(self, args: list[Any]) -> str:
        conditions = ["state = 'ended'"]
        for column, op, value in (
            ("campaign_id", "=", self.campaign_id),
            ("agent_id", "=", self.agent_id),
            ("created_at", ">=", self.since),
            ("created_at", "<", self.until),
            ("outcome", "=", self.outcome),
            ("direction", "=", self.direction),
        ):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} {op} ${len(args)}")
        return " AND ".join(conditions)


@dataclass(frozen=True)
class CdrPage:
    items: list[CdrRecord]
    next_cursor: str | None
    """Pass to the next `query_cdrs` call; None on the last page."""


def encode_cursor(record: CdrRecord) -> str:
    return keyset_cursor(record.created_at, record.id)


def keyset_cursor(created_at: datetime, ident: UUID) -> str:
    """An opaque page cursor for keyset pagination on (created_at, id)."""
    raw = f"{created_at.isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, ident = raw.partition("|")
        when = datetime.fromisoformat(created)
        if when.utcoffset() is None:
            raise ValueError("naive")
        return when, UUID(ident)
    except (ValueError, UnicodeDecodeError, binascii.Error, TypeError):
        raise _bad("cursor", "is not a cursor returned by a previous page", cursor) from None


async def query_cdrs(
    db: asyncpg.Pool | asyncpg.Connection,
    query: CdrQuery,
    *,
    limit: int = 100,
    cursor: str | None = None,
) -> CdrPage:
    """One page of CDRs matching `query`, oldest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise _bad("limit", f"must be an integer between 1 and {MAX_PAGE_SIZE}", limit)
    args: list[Any] = []
    where = query._where(args)
    if cursor is not None:
        args.extend(decode_cursor(cursor))
        where += f" AND (created_at, id) > (${len(args) - 1}, ${len(args)})"
    args.append(limit + 1)
    rows = await db.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM call_attempts WHERE {where} ORDER BY created_at, id LIMIT ${len(args)}",
        *args,
    )
    items = [CdrRecord.from_row(row) for row in rows[:limit]]
    more = len(rows) > limit
    return CdrPage(items, encode_cursor(items[-1]) if more else None)


def csv_cell(value: Any) -> str:
    """One CSV cell's text: ISO 8601 times, true/false, formula-safe text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class CdrExport:
    """Async iterator of text chunks (one per page); `rows` counts the records so far.

    ``async for chunk in CdrExport(pool, query, "csv"): response.write(chunk)``
    """

    def __init__(
        self,
        db: asyncpg.Pool | asyncpg.Connection,
        query: CdrQuery,
        format: str = "csv",
        *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if format not in EXPORT_FORMATS:
            raise _bad("format", "must be csv or json", format)
        self._db = db
        self._query = query
        self._format = format
        self._page_size = page_size
        self.rows = 0

    async def _pages(self) -> AsyncIterator[list[CdrRecord]]:
        cursor: str | None = None
        while True:
            page = await query_cdrs(self._db, self._query, limit=self._page_size, cursor=cursor)
            if page.items:
                self.rows += len(page.items)
                yield page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def __aiter__(self) -> AsyncIterator[str]:
        if self._format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\r\n")
            writer.writerow(COLUMNS)
            yield buffer.getvalue()
            async for items in self._pages():
                buffer.seek(0)
                buffer.truncate()
                writer.writerows([csv_cell(v) for v in item.to_row()] for item in items)
                yield buffer.getvalue()
            return
        separator = "[\n"
        async for items in self._pages():
            yield separator + ",\n".join(
                json.dumps(dict(zip(COLUMNS, item.to_row())), default=_json_value) for item in items
            )
            separator = ",\n"
        yield "[]\n" if separator == "[\n" else "\n]\n"
