"""Asterisk's own CDRs in the live tests: the lines cdr_csv appended to the sandbox's
Master.csv while a test ran (dialplan/cdr.conf), reconciled with the test's database by
`hitcall cdr reconcile`'s own code.

The sandbox's Master.csv holds the records of every earlier test run too, whose
attempts live in databases long dropped: a test reconciles only what was written after
it started. `AsteriskCdrs(sandbox2, ...)` reads the second Asterisk's own Master.csv."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from hitcall_pbx.core.reconcile import DifferenceKind
from hitcall_pbx.records.reconcile import DayResult, Request, reconcile_day
from hitcall_pbx.sandbox import Sandbox


class AsteriskCdrs:
    def __init__(self, sandbox: Sandbox, workdir: Path, *, pool: str | None = None) -> None:
        self.master = sandbox.cdr_csv  # this instance's (sandbox2: the second server's own file)
        self.pool = pool  # with several servers: reconciled with this pool's calls only
        self.offset = self.master.stat().st_size if self.master.exists() else 0
        self.started = datetime.now(UTC)
        self.copy = workdir / (f"Master-{pool}.csv" if pool else "Master.csv")

    def written(self) -> Path:
        """This test's part of Master.csv, as a file of its own."""
        with self.master.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]  # a line still being written
        self.copy.write_bytes(data)
        return self.copy

    def days(self) -> list[date]:
        first, last = self.started.date(), datetime.now(UTC).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    async def reconcile(self, pool: asyncpg.Pool, *, tolerance_s: float = 2.0) -> list[DayResult]:
        path = self.written()
        out = []
        async with pool.acquire() as conn:
            for day in self.days():
                req = Request(day, UTC, UTC, tolerance_s, path, None, "cdr", self.pool)
                out.append(await reconcile_day(conn, req))
        return out

    async def reconcile_settled(self, pool: asyncpg.Pool, *, timeout: float = 10.0) -> list[DayResult]:
        """Reconcile once Asterisk has written the records of the calls HitCall ended (it
        posts a record when the channel is gone, a moment after HitCall's hangup event),
        or after `timeout` with whatever differences remain."""
        deadline = time.monotonic() + timeout
        while True:
            results = await self.reconcile(pool)
            waiting = any(
                r.result.of_kind(DifferenceKind.MISSING_IN_ASTERISK)
                or r.result.of_kind(DifferenceKind.TRANSFER_MISSING_IN_ASTERISK)
                for r in results
            )
            if not waiting or time.monotonic() > deadline:
                return results
            await asyncio.sleep(0.2)


def differences(results: list[DayResult]) -> list[dict[str, object]]:
    return [d.as_dict() for r in results for d in r.result.differences]


def matched(results: list[DayResult]) -> int:
    return sum(r.result.matched for r in results)
