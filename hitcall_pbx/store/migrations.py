"""Schema migrations: numbered SQL files applied in order under an advisory lock.

Files are ``migrations/NNNN_name.sql`` (four digits, lower-case name of letters,
digits and ``_``). Each pending file runs in its own transaction together with its
``schema_migrations`` row, so a failing file leaves nothing behind. All of `apply`
runs on one connection holding ``pg_advisory_lock(MIGRATION_LOCK_KEY)``: several
processes migrating at once queue up and each file is applied exactly once.

The checksum is the sha256 of the file with line endings normalised to ``\\n``. An
applied file must never change: `apply` refuses when a checksum differs, when the
database holds a version no file describes (code older than the schema), when a
``.sql`` file name is malformed, or when two files share a number. A file cannot use
statements that refuse to run in a transaction (``CREATE INDEX CONCURRENTLY``).
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import asyncpg

from ..errors import HitCallError
from ..logs import get_logger
from .db import Connection, Executor, unlock_or_drop

_log = get_logger("hitcall.store.migrations")

# Fixed key of the session-level advisory lock ("HitCallM" as a big-endian int64).
MIGRATION_LOCK_KEY = 0x48697443616C6C4D


def _default_directory() -> Path:
    """`migrations/` of the source tree (editable install), else the copy a wheel
    install puts under `<prefix>/share/hitcall/migrations`."""
    source = Path(__file__).resolve().parents[2] / "migrations"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "hitcall" / "migrations"


DEFAULT_DIRECTORY = _default_directory()

_FILE_RE = re.compile(r"^(?P<version>[0-9]{4})_(?P<slug>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY CHECK (version > 0),
    name       text        NOT NULL,
    checksum   text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(HitCallError):
    """The migrations directory or the database's migration history is not consistent."""

    status = 500
    code = "migration_error"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file stem, e.g. "0001_initial"
    path: Path
    checksum: str
    sql: str = field(repr=False)


class MigrationStatus(NamedTuple):
    version: int
    name: str
    applied_at: datetime | None


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def load(directory: Path | str | None = None) -> list[Migration]:
    """The migration files in version order; `MigrationError` on a malformed set."""
    root = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    if not root.is_dir():
        raise MigrationError(f"migrations directory {root} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(root.iterdir()):
        name = path.name
        if name.startswith(".") or not path.is_file():
            continue
        if not (name.lower().endswith(".sql") or name[:1].isdigit()):
            continue  # README and the like
        m = _FILE_RE.match(name)
        if m is None:
            raise MigrationError(
                f"malformed migration file name {name!r} in {root}: expected NNNN_lower_case_name.sql",
                details={"file": str(path)},
            )
        version = int(m["version"])
        if version == 0:
            raise MigrationError(f"migration {name!r}: numbers start at 0001", details={"file": str(path)})
        if version in found:
            raise MigrationError(
                f"migrations {found[version].path.name!r} and {name!r} share number {version:04d}",
                details={"version": version},
            )
        data = path.read_bytes()
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"migration {name!r} is not UTF-8", details={"file": str(path)}) from exc
        found[version] = Migration(version, path.stem, path, _checksum(data), sql)
    return [found[v] for v in sorted(found)]


@asynccontextmanager
async def _connection(target: Executor) -> AsyncIterator[Connection]:
    if isinstance(target, asyncpg.Pool):
        async with target.acquire() as conn:
            yield conn
    else:
        yield target


async def _applied(conn: Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
    return {r["version"]: r for r in rows}


def _verify_history(files: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    by_version = {m.version: m for m in files}
    for version, row in applied.items():
        mig = by_version.get(version)
        if mig is None:
            raise MigrationError(
                f"the database has migration {row['name']} which this version of HitCall does"
                " not know; run a release that includes it",
                details={"version": version, "name": row["name"]},
            )
        if mig.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {mig.path.name} was changed after it was applied"
                f" (checksum {row['checksum'][:12]} in the database, {mig.checksum[:12]} on disk);"
                " add a new migration instead of editing an applied one",
                details={"version": version, "name": mig.name},
            )


async def apply(target: Executor, directory: Path | str | None = None) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    files = load(directory)
    done: list[str] = []
    async with _connection(target) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            # Only when missing: creating needs the schema owner, and a service role without
            # that right may run `apply` on an up-to-date database (it then does nothing).
            if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
                await conn.execute(_CREATE_TABLE)
            applied = await _applied(conn)
            _verify_history(files, applied)
            for mig in files:
                if mig.version in applied:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(mig.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                            mig.version,
                            mig.name,
                            mig.checksum,
                        )
                except asyncpg.PostgresError as exc:
                    hint = (
                        "; migrations run as the schema owner: set HITCALL_MIGRATE_DATABASE_URL"
                        if isinstance(exc, asyncpg.InsufficientPrivilegeError)
                        else ""
                    )
                    raise MigrationError(
                        f"migration {mig.path.name} failed and was rolled back:"
                        f" {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}",
                        details={
                            "version": mig.version,
                            "name": mig.name,
                            "sqlstate": getattr(exc, "sqlstate", None),
                            "applied": list(done),
                        },
                    ) from exc
                done.append(mig.name)
                _log.info("migration_applied", version=mig.version, migration=mig.name)
        finally:
            # The lock is session-level: the session ends if it cannot be given back.
            await unlock_or_drop(conn, MIGRATION_LOCK_KEY)
    return done


async def status(target: Executor, directory: Path | str | None = None) -> list[MigrationStatus]:
    """Every known migration with its applied time (None = pending), in version order.

    Versions present in the database but missing on disk are listed too. Does not
    create anything and does not check checksums (`check` does).
    """
    files = load(directory)
    async with _connection(target) as conn:
        applied = await _applied(conn)
    result = {m.version: MigrationStatus(m.version, m.name, None) for m in files}
    for version, row in applied.items():
        name = result[version].name if version in result else row["name"]
        result[version] = MigrationStatus(version, name, row["applied_at"])
    return [result[v] for v in sorted(result)]


async def check(target: Executor, directory: Path | str | None = None) -> None:
    """Raise `MigrationError` unless the database is exactly at the files' latest version."""
    files = load(directory)
    async with _connection(target) as conn:
        applied = await _applied(conn)
    _verify_history(files, applied)
    pending = [m.name for m in files if m.version not in applied]
    if pending:
        raise MigrationError(
            f"{len(pending)} migration(s) pending: {', '.join(pending)}; run `hitcall migrate`",
            details={"pending": pending},
        )
