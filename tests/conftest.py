"""Shared fixtures: one PostgreSQL server per test session, one fresh database per test.

`pg_dsn` is the server's admin DSN: an embedded server in a temp dir, or the server
named by ``HITCALL_TEST_DATABASE_URL`` (a role allowed to CREATE DATABASE and CREATEROLE).
The databases use the product's role split (hitcall_pbx.store.roles): the schema owner
role owns them and runs the migrations, then grants the service role; the service role
(no superuser, owns no table) is what `db` connects as, like `hitcall serve`.
`empty_db_dsn` is a new empty database (as the owner, to migrate), `db` a pool as the
service on a new fully migrated one (a clone of a template database migrated once per
session). Both are dropped after the test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.settings import Settings, load_settings
from hitcall_pbx.store import migrations, roles
from hitcall_pbx.store.db import create_pool, dsn_with_database, dsn_with_user
from hitcall_pbx.store.embedded import EmbeddedPostgres

OWNER, SERVICE = roles.EMBEDDED_OWNER, roles.EMBEDDED_SERVICE
ROLE_PASSWORDS = {OWNER: "test-owner-password", SERVICE: "test-service-password"}


def as_owner(server_dsn: str, database: str) -> str:
    """DSN of `database` as the schema owner (what migrations use)."""
    return dsn_with_user(dsn_with_database(server_dsn, database), OWNER, ROLE_PASSWORDS[OWNER])


def as_service(server_dsn: str, database: str) -> str:
    """DSN of `database` as the service role (what `hitcall serve` uses)."""
    return dsn_with_user(dsn_with_database(server_dsn, database), SERVICE, ROLE_PASSWORDS[SERVICE])


@pytest.fixture(scope="session")
async def pg_dsn() -> AsyncIterator[str]:
    url = os.environ.get("HITCALL_TEST_DATABASE_URL")
    if url:
        await _ensure_roles(url)
        yield url
        return
    # Directly under the temp dir (world-traversable), so a root run needs no
    # permission changes outside this directory.
    data_dir = Path(tempfile.mkdtemp(prefix="hitcall-test-pg-"))
    pg = EmbeddedPostgres(data_dir)
    try:
        await asyncio.to_thread(pg.start)
        await _throwaway_durability(pg.uri)
        await _ensure_roles(pg.uri)
        yield pg.uri
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _throwaway_durability(dsn: str) -> None:
    """No fsync on the session's private server: its data is deleted afterwards, and
    CREATE DATABASE per test is several times faster on a busy disk."""
    conn = await asyncpg.connect(dsn)
    try:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def _ensure_roles(server_dsn: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await roles.ensure_roles(
            admin,
            owner=OWNER,
            owner_password=ROLE_PASSWORDS[OWNER],
            service=SERVICE,
            service_password=ROLE_PASSWORDS[SERVICE],
        )
    finally:
        await admin.close()


async def _create_database(server_dsn: str, template: str | None = None) -> str:
    """A new database owned by the owner role (a copy of `template`, which has the owner's
    schema and the service's grants already)."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{OWNER}"{clause}')
    finally:
        await admin.close()
    if template is None:
        admin = await asyncpg.connect(dsn_with_database(server_dsn, name))
        try:
            await roles.prepare_database(admin, owner=OWNER)
        finally:
            await admin.close()
    return name


async def _drop_database(server_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def migrated_template(pg_dsn: str) -> AsyncIterator[str]:
    """Name of a database with every migration applied; `db` clones it."""
    name = await _create_database(pg_dsn)
    try:
        conn = await asyncpg.connect(as_owner(pg_dsn, name))
        try:
            await migrations.apply(conn)
            await roles.grant_service(conn, SERVICE)
        finally:
            await conn.close()
        yield name
    finally:
        await _drop_database(pg_dsn, name)


@pytest.fixture
async def empty_db_dsn(pg_dsn: str) -> AsyncIterator[str]:
    name = await _create_database(pg_dsn)
    try:
        yield as_owner(pg_dsn, name)
    finally:
        await _drop_database(pg_dsn, name)


@pytest.fixture
async def db(pg_dsn: str, migrated_template: str) -> AsyncIterator[asyncpg.Pool]:
    name = await _create_database(pg_dsn, template=migrated_template)
    try:
        pool = await create_pool(as_service(pg_dsn, name), min_size=1, max_size=5)
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        await _drop_database(pg_dsn, name)


@pytest.fixture
async def report_settings(pg_dsn: str, migrated_template: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings for a `hitcall` command run against a fresh migrated database."""
    name = await _create_database(pg_dsn, template=migrated_template)
    try:
        yield load_settings(database_url=dsn_with_database(pg_dsn, name), data_dir=tmp_path)
    finally:
        await _drop_database(pg_dsn, name)


@pytest.fixture
async def stoppable_pg() -> AsyncIterator[EmbeddedPostgres]:
    """An embedded server of its own, migrated, that the test may stop and start again
    (Postgres outages); the session server is never stopped."""
    data_dir = Path(tempfile.mkdtemp(prefix="hitcall-test-pg-own-"))
    pg = await asyncio.to_thread(EmbeddedPostgres(data_dir).start)
    try:
        conn = await asyncpg.connect(pg.uri)
        try:
            await migrations.apply(conn)
        finally:
            await conn.close()
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(data_dir, ignore_errors=True)


# Real-Asterisk fixtures (sandbox, ari, service_settings, ...), shared by every test directory.
from tests.live import (  # noqa: E402,F401
    ari,
    ari2,
    hangup_agents,
    hangup_agents2,
    sandbox,
    sandbox2,
    service_dsn,
    service_settings,
)
