"""Migration runner and the initial schema's constraints, on a real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from hitcall_pbx.errors import Unavailable
from hitcall_pbx.settings import Settings
from hitcall_pbx.store import migrations, roles
from hitcall_pbx.store.db import Database, connect, create_pool
from hitcall_pbx.store.migrations import MIGRATION_LOCK_KEY, MigrationError
from tests.conftest import as_owner

REAL = migrations.load()
REAL_NAMES = [m.name for m in REAL]


def write(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


@pytest.fixture
def mig_dir(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    return d


# ------------------------------------------------------------------------------------------
# Runner
# ------------------------------------------------------------------------------------------


async def test_apply_applies_all_then_nothing(empty_db_dsn: str) -> None:
    assert REAL_NAMES and REAL_NAMES[0] == "0001_initial"
    conn = await connect(empty_db_dsn)
    try:
        assert await migrations.apply(conn) == REAL_NAMES
        assert await migrations.apply(conn) == []
        await migrations.check(conn)
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
        assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
            (m.version, m.name, m.checksum) for m in REAL
        ]
    finally:
        await conn.close()


async def test_upgrade_moves_attempts_in_progress_to_live_attempts(empty_db_dsn: str, tmp_path: Path) -> None:
    """0005 on a database in use: attempts not ended become live attempts, CDRs stay, the
    recordings and preview offers that name them keep their ids."""
    before = tmp_path / "before-0005"
    before.mkdir()
    for m in REAL:
        if m.version < 5:
            shutil.copy(m.path, before)
    conn = await connect(empty_db_dsn)
    try:
        await migrations.apply(conn, before)
        campaign = await _campaign(conn)
        contact = await _contact(conn, await _list(conn))
        live = await _attempt(conn, campaign, contact, table="call_attempts", state="ringing")
        ended = await _attempt(
            conn, campaign, None, table="call_attempts", ended_at=datetime.now(UTC), outcome="busy", state="ended"
        )
        await migrations.apply(conn)
        assert await conn.fetchval("SELECT array_agg(id) FROM live_attempts") == [live]
        assert await conn.fetchval("SELECT array_agg(id) FROM call_attempts") == [ended]
        assert await conn.fetchval("SELECT state FROM live_attempts WHERE id = $1", live) == "ringing"
        # The recording of a call still live can be registered against its attempt.
        await conn.execute(
            """INSERT INTO recordings (attempt_id, campaign_id, path, sha256, size_bytes, duration_s, format,
                                       created_at, retention_until)
               VALUES ($1, $2, 'x/y.wav', $3, 1, 1, 'wav', now(), now() + interval '3 months')""",
            live,
            campaign,
            "ab" * 32,
        )
    finally:
        await conn.close()


async def test_status_reports_pending_then_applied(empty_db_dsn: str) -> None:
    pool = await create_pool(empty_db_dsn, max_size=2)
    try:
        before = await migrations.status(pool)
        assert [(s.version, s.name, s.applied_at) for s in before] == [(m.version, m.name, None) for m in REAL]
        # status only reads: it does not create the bookkeeping table
        assert await pool.fetchval("SELECT to_regclass('schema_migrations')") is None
        with pytest.raises(MigrationError, match="pending"):
            await migrations.check(pool)

        started = await pool.fetchval("SELECT now()")
        await migrations.apply(pool)
        after = await migrations.status(pool)
        assert [s.name for s in after] == REAL_NAMES
        assert all(s.applied_at is not None and s.applied_at >= started for s in after)
    finally:
        await pool.close()


async def _apply_on_own_connection(dsn: str, directory: Path | None) -> list[str]:
    conn = await connect(dsn)
    try:
        return await migrations.apply(conn, directory)
    finally:
        await conn.close()


async def test_concurrent_apply_applies_each_once(empty_db_dsn: str) -> None:
    results = await asyncio.gather(*(_apply_on_own_connection(empty_db_dsn, None) for _ in range(4)))
    applied = [name for r in results for name in r]
    assert sorted(applied) == sorted(REAL_NAMES)
    conn = await connect(empty_db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(REAL)
    finally:
        await conn.close()


async def test_concurrent_apply_with_slow_migrations(empty_db_dsn: str, mig_dir: Path) -> None:
    # Without the lock the second runner would fail on CREATE TABLE or apply a file twice.
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (id int); INSERT INTO a VALUES (1);")
    write(mig_dir, "0002_slow.sql", "SELECT pg_sleep(0.3); CREATE TABLE b (id int); INSERT INTO a VALUES (2);")
    write(mig_dir, "0003_c.sql", "CREATE TABLE c (id int); INSERT INTO a VALUES (3);")
    results = await asyncio.gather(*(_apply_on_own_connection(empty_db_dsn, mig_dir) for _ in range(4)))
    assert sorted(n for r in results for n in r) == ["0001_a", "0002_slow", "0003_c"]
    assert sum(1 for r in results if r) == 1  # one runner did all the work, the others waited
    conn = await connect(empty_db_dsn)
    try:
        assert [r["id"] for r in await conn.fetch("SELECT id FROM a ORDER BY id")] == [1, 2, 3]
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 3
    finally:
        await conn.close()


async def test_lock_is_released_after_apply_and_after_failure(empty_db_dsn: str, mig_dir: Path) -> None:
    write(mig_dir, "0001_bad.sql", "SELECT 1/0;")
    conn = await connect(empty_db_dsn)
    other = await connect(empty_db_dsn)
    try:
        with pytest.raises(MigrationError):
            await migrations.apply(conn, mig_dir)
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
        await other.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        # the failed apply left a usable connection behind
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
        await other.close()


async def test_changed_checksum_is_refused(empty_db_dsn: str, mig_dir: Path) -> None:
    first = write(mig_dir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    conn = await connect(empty_db_dsn)
    try:
        assert await migrations.apply(conn, mig_dir) == ["0001_a"]
        # CRLF line endings (e.g. a Windows checkout) are not a change
        first.write_bytes(b"CREATE TABLE a (id int);\r\n")
        assert await migrations.apply(conn, mig_dir) == []

        first.write_text("CREATE TABLE a (id bigint);\n")
        write(mig_dir, "0002_b.sql", "CREATE TABLE b (id int);")
        with pytest.raises(MigrationError, match=r"0001_a\.sql was changed") as err:
            await migrations.apply(conn, mig_dir)
        assert err.value.code == "migration_error"
        with pytest.raises(MigrationError, match="changed"):
            await migrations.check(conn, mig_dir)
        # nothing after the refusal was applied
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "name",
    ["1_a.sql", "0001-a.sql", "0001_A.sql", "0001_.sql", "00001_a.sql", "0001_a.SQL", "0000_a.sql", "0002a.sql"],
)
async def test_malformed_file_name_is_refused(empty_db_dsn: str, mig_dir: Path, name: str) -> None:
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    write(mig_dir, name, "SELECT 1;")
    with pytest.raises(MigrationError, match=r"malformed|start at 0001"):
        await _apply_on_own_connection(empty_db_dsn, mig_dir)
    conn = await connect(empty_db_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('a')") is None
    finally:
        await conn.close()


def test_other_files_are_ignored(mig_dir: Path) -> None:
    write(mig_dir, "0001_a.sql", "SELECT 1;")
    write(mig_dir, "README.md", "notes")
    write(mig_dir, ".0002_hidden.sql", "SELECT 1;")
    (mig_dir / "archive").mkdir()
    assert [m.name for m in migrations.load(mig_dir)] == ["0001_a"]


async def test_duplicate_number_is_refused(empty_db_dsn: str, mig_dir: Path) -> None:
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    write(mig_dir, "0001_b.sql", "CREATE TABLE b (id int);")
    with pytest.raises(MigrationError, match="share number 0001"):
        await _apply_on_own_connection(empty_db_dsn, mig_dir)


async def test_failing_migration_is_rolled_back(empty_db_dsn: str, mig_dir: Path) -> None:
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    bad = write(mig_dir, "0002_b.sql", "CREATE TABLE b (id int); SELECT 1/0;")
    write(mig_dir, "0003_c.sql", "CREATE TABLE c (id int);")
    conn = await connect(empty_db_dsn)
    try:
        with pytest.raises(MigrationError, match=r"0002_b\.sql failed") as err:
            await migrations.apply(conn, mig_dir)
        assert err.value.details["applied"] == ["0001_a"]
        assert err.value.details["sqlstate"] == "22012"
        assert await conn.fetchval("SELECT to_regclass('b')") is None
        status = await migrations.status(conn, mig_dir)
        assert [(s.name, s.applied_at is not None) for s in status] == [
            ("0001_a", True),
            ("0002_b", False),
            ("0003_c", False),
        ]
        # a file that was never applied may still be fixed
        bad.write_text("CREATE TABLE b (id int);")
        assert await migrations.apply(conn, mig_dir) == ["0002_b", "0003_c"]
    finally:
        await conn.close()


async def test_unknown_applied_version_is_refused(empty_db_dsn: str, mig_dir: Path) -> None:
    write(mig_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    newer = write(mig_dir, "0002_b.sql", "CREATE TABLE b (id int);")
    conn = await connect(empty_db_dsn)
    try:
        await migrations.apply(conn, mig_dir)
        newer.unlink()
        with pytest.raises(MigrationError, match="0002_b which this version"):
            await migrations.apply(conn, mig_dir)
        status = await migrations.status(conn, mig_dir)
        assert [s.name for s in status] == ["0001_a", "0002_b"]
    finally:
        await conn.close()


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        migrations.load(tmp_path / "nope")


# ------------------------------------------------------------------------------------------
# Database / pool
# ------------------------------------------------------------------------------------------


async def test_unreachable_server_is_unavailable_naming_the_host() -> None:
    with pytest.raises(Unavailable) as err:
        await create_pool("postgresql://hitcall:s3cret@127.0.0.1:1/hitcall", connect_timeout=3)
    msg = err.value.message
    assert "127.0.0.1:1" in msg and "\n" not in msg and "s3cret" not in msg
    assert err.value.status == 503

    settings = Settings(database_url="postgresql://hitcall:s3cret@127.0.0.1:1/hitcall")
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
        async with Database(settings):
            pass


async def test_database_with_url_and_json_codecs(empty_db_dsn: str) -> None:
    settings = Settings(database_url=empty_db_dsn)
    async with Database(settings) as database:
        assert database.dsn == empty_db_dsn and not database.embedded
        value = {"crm": {"id": 7}, "tags": ["a", "ö"]}
        assert await database.pool.fetchval("SELECT $1::jsonb", value) == value
        assert await database.pool.fetchval("SELECT '[1, 2]'::json") == [1, 2]
    with pytest.raises(Unavailable):
        _ = database.pool


async def test_database_embedded_in_data_dir_is_shared_and_stopped() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="hitcall-test-db-"))
    try:
        settings = Settings(database_url=None, data_dir=data_dir)
        async with Database(settings) as outer:
            assert outer.embedded and outer.dsn.startswith("postgresql://")
            assert await outer.migrate() == REAL_NAMES  # as the owner role, then the service's grants
            role = await roles.inspect_role(outer.pool)
            assert (role.role, role.superuser, role.owned_tables) == ("hitcall_service", False, [])
            async with Database(settings) as inner:
                assert await inner.pool.fetchval("SELECT count(*) FROM schema_migrations") == len(REAL)
            # the inner handle closing did not stop the server the outer one uses
            assert await outer.pool.fetchval("SELECT 1") == 1
            pidfile = data_dir / "pg" / "postmaster.pid"
            assert pidfile.exists()
        assert not pidfile.exists()  # last user out stopped the server it started
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Schema: good data is accepted ...
# ------------------------------------------------------------------------------------------


async def _campaign(conn: asyncpg.Connection, **fields: object) -> int:
    values = {"name": f"c-{uuid.uuid4().hex[:8]}", "mode": "progressive", "caller_id": "+358912345678"}
    values.update(fields)
    cols = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(f"INSERT INTO campaigns ({cols}) VALUES ({params}) RETURNING id", *values.values())


async def _list(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("INSERT INTO contact_lists (name) VALUES ($1) RETURNING id", f"l-{uuid.uuid4().hex[:8]}")


async def _contact(conn: asyncpg.Connection, list_id: int, phone: str = "+358401234567", **fields: object) -> int:
    values = {"list_id": list_id, "phone_e164": phone}
    values.update(fields)
    cols = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(f"INSERT INTO contacts ({cols}) VALUES ({params}) RETURNING id", *values.values())


async def _attempt(
    conn: asyncpg.Connection,
    campaign_id: int,
    contact_id: int | None,
    *,
    table: str = "live_attempts",
    **fields: object,
) -> uuid.UUID:
    values = {
        "id": uuid.uuid4(),
        "campaign_id": campaign_id,
        "contact_id": contact_id,
        "dialled_number": "+358401234567",
        "caller_id": "+358912345678",
        "mode": "progressive",
        "retention_until": datetime.now(UTC) + timedelta(days=730),
    }
    values.update(fields)
    cols = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(f"INSERT INTO {table} ({cols}) VALUES ({params}) RETURNING id", *values.values())


CALL_DATE = datetime(2025, 8, 31, 10, 0, tzinfo=UTC)


async def _recording(conn: asyncpg.Connection, **fields: object) -> uuid.UUID:
    campaign = await _campaign(conn)
    attempt = await _attempt(conn, campaign, None)
    values = {
        "attempt_id": attempt,
        "campaign_id": campaign,
        "path": f"2025/08/31/{attempt}.wav",
        "sha256": "ab" * 32,
        "size_bytes": 48000,
        "duration_s": 3.0,
        "format": "wav",
        "created_at": CALL_DATE,
    }
    values.update(fields)
    cols = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    retention = fields.get("retention_until")
    if retention is None:
        cols += ", retention_until"
        params += ", hitcall_add_months($8, 6)"
    return await conn.fetchval(f"INSERT INTO recordings ({cols}) VALUES ({params}) RETURNING id", *values.values())


async def test_a_complete_valid_data_set_is_accepted(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        user = await conn.fetchval(
            "INSERT INTO users (username, password_hash, role)"
            " VALUES ('Anna.K', '$argon2id$v=19$m=65536,t=3,p=4$x$y', 'supervisor') RETURNING id"
        )
        with pytest.raises(asyncpg.UniqueViolationError):  # usernames are case-insensitive
            await conn.execute("INSERT INTO users (username, role) VALUES ('anna.k', 'agent')")
        await conn.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, scopes) VALUES ($1, 'crm', $2, $3)",
            user,
            "0" * 64,
            ["calls:read", "contacts:write"],
        )
        await conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at, source_ip)"
            " VALUES ($1, $2, now() + interval '8 hours', '10.0.0.5')",
            "1" * 64,
            user,
        )
        campaign = await _campaign(
            conn,
            mode="predictive",
            state="running",
            info_message_sound="sound:hitcall/info-acme",
            recording_announcement="sound:hitcall/recorded",
            record_calls=True,
            amd_enabled=True,
            window_days=[1, 2, 3, 4, 5, 6],
            company_name="Acme Oy",
            callback_number="+358207654321",
        )
        lst = await _list(conn)
        await conn.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign, lst)
        agent = await conn.fetchval(
            "INSERT INTO agents (number, name, endpoint, user_id, state, pause_code)"
            " VALUES ('1001', 'Anna', 'agent1', $1, 'paused', 'lunch') RETURNING id",
            user,
        )
        await conn.execute("INSERT INTO agent_campaigns VALUES ($1, $2)", agent, campaign)
        await conn.execute(
            "INSERT INTO agent_state_log (agent_id, state, pause_code, campaign_id, started_at)"
            " VALUES ($1, 'paused', 'lunch', $2, now())",
            agent,
            campaign,
        )
        contact = await _contact(
            conn,
            lst,
            name="Matti Meikäläinen",
            email="matti@example.fi",
            timezone="Europe/Helsinki",
            marketing_permission=True,
            extra={"crm_segment": "gold", "score": 3},
            external_id="crm-77",
            status="callback",
            callback_at=datetime.now(UTC) + timedelta(hours=2),
            callback_agent_id=agent,
        )
        assert await conn.fetchval("SELECT extra FROM contacts WHERE id = $1", contact) == {
            "crm_segment": "gold",
            "score": 3,
        }
        await conn.execute("INSERT INTO dnc_entries (phone_e164, source) VALUES ('+358409999999', 'ivr_optout')")
        await conn.execute(
            "INSERT INTO dnc_entries (phone_e164, campaign_id, source) VALUES ('+358409999999', $1, 'agent')", campaign
        )
        await conn.execute("INSERT INTO suppression_hashes (hash) VALUES ($1)", "f" * 64)
        attempt = await _attempt(
            conn,
            campaign,
            contact,
            table="call_attempts",
            agent_id=agent,
            mode="predictive",
            state="ended",
            ended_at=datetime.now(UTC),
            outcome="answered_human",
            ring_s=7.25,
            talk_s=61.5,
            answer_to_bridge_ms=14,
            hangup_cause=16,
            amd_status="HUMAN",
            amd_cause="HUMAN-300-300",
            disposition="sale",
        )
        await conn.execute(
            "INSERT INTO preview_offers"
            " (agent_id, campaign_id, contact_id, attempt_id, expires_at, decided_at, decision)"
            " VALUES ($1, $2, $3, $4, now() + interval '30 s', now(), 'accept')",
            agent,
            campaign,
            contact,
            attempt,
        )
        await conn.execute(
            "INSERT INTO recordings"
            " (attempt_id, campaign_id, path, sha256, size_bytes, duration_s, format, created_at, retention_until)"
            " VALUES ($1, $2, 'a/b.wav', $3, 1000, 1.5, 'wav', $4, hitcall_add_months($4, 6))",
            attempt,
            campaign,
            "0a" * 32,
            CALL_DATE,
        )
        await conn.execute(
            "INSERT INTO audit_log (actor, actor_role, action, object_type, object_id, details, source_ip)"
            " VALUES ('anna.k', 'supervisor', 'recording.download', 'recording', '1', $1, '192.0.2.1')",
            {"bytes": 1000},
        )
        sub = await conn.fetchval(
            "INSERT INTO webhook_subscriptions (url, secret, event_types)"
            " VALUES ('https://crm.example/hooks', $1, $2) RETURNING id",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ["call.ended", "recording.ready"],
        )
        outbox = await conn.fetchval(
            "INSERT INTO webhook_outbox (event_type, subject, payload) VALUES ('call.ended', $1, $2) RETURNING id",
            f"call:{attempt}",
            {"attempt_id": str(attempt)},
        )
        await conn.execute("INSERT INTO webhook_deliveries (outbox_id, subscription_id) VALUES ($1, $2)", outbox, sub)
        await conn.execute("INSERT INTO alarms (name, details) VALUES ('ari.disconnected', $1)", {"since": "now"})
        assert await conn.fetchval("SELECT octet_length(suppression_salt) FROM installation") == 32


# ------------------------------------------------------------------------------------------
# ... and bad data is impossible
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "0401234567",
        "358401234567",
        "+0401234567",
        "+35840",
        "+3584012345678901",
        "+358 40 123 4567",
        "+358-40-1234567",
        "",
    ],
)
async def test_invalid_e164_is_refused(db: asyncpg.Pool, phone: str) -> None:
    async with db.acquire() as conn:
        lst = await _list(conn)
        with pytest.raises(asyncpg.CheckViolationError, match="phone_e164"):
            await _contact(conn, lst, phone)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO dnc_entries (phone_e164, source) VALUES ($1, 'manual')", phone)


async def test_duplicate_phone_in_one_list_is_refused(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        a, b = await _list(conn), await _list(conn)
        await _contact(conn, a, "+358401234567")
        await _contact(conn, b, "+358401234567")  # the same person may be in another list
        with pytest.raises(asyncpg.UniqueViolationError, match="contacts_list_phone_key"):
            await _contact(conn, a, "+358401234567")


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"ring_timeout_s": 10}, False),
        ({"ring_timeout_s": 14}, False),
        ({"ring_timeout_s": 15}, True),
        ({"abandon_cap": 0.5}, False),
        ({"abandon_cap": -0.01}, False),
        ({"abandon_cap": 0.2}, True),
        ({"max_attempts": 0}, False),
        ({"retention_recordings_months": 1}, False),
        ({"retention_recordings_months": 7}, False),
        ({"retention_recordings_months": 2}, True),
        ({"retry_busy_s": 5}, False),
        ({"window_start": "20:00", "window_end": "09:00"}, False),
        ({"window_days": [0, 1]}, False),
        ({"window_days": []}, False),
        ({"mode": "blaster"}, False),
        ({"info_message_sound": "/var/lib/sounds/x.wav"}, False),
        ({"state": "running", "caller_id": None}, False),
        ({"state": "draft", "caller_id": None}, True),
        ({"state": "running", "mode": "predictive"}, False),  # no information message
        ({"state": "running", "mode": "predictive", "info_message_sound": "sound:info"}, True),
    ],
)
async def test_campaign_settings(db: asyncpg.Pool, fields: dict, ok: bool) -> None:
    import datetime as dt

    values = {
        k: (dt.time.fromisoformat(v) if k.startswith("window_") and isinstance(v, str) else v)
        for k, v in fields.items()
    }
    async with db.acquire() as conn:
        if ok:
            await _campaign(conn, **values)
        else:
            with pytest.raises(asyncpg.CheckViolationError):
                await _campaign(conn, **values)


async def test_invalid_role_is_refused(db: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="users_role_check"):
        await db.execute("INSERT INTO users (username, role) VALUES ('eve', 'superuser')")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO users (username, password_hash, role) VALUES ('eve', 'hunter2', 'agent')")


async def test_recording_hold_is_limited_to_18_months(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        rec = await _recording(conn)
        hold = "UPDATE recordings SET held_until = $2, hold_reason = 'complaint', hold_case_id = 'C-1' WHERE id = $1"
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_hold_limit_check"):
            await conn.execute(hold, rec, CALL_DATE + timedelta(days=550))
        await conn.execute(hold, rec, datetime(2027, 2, 28, 10, 0, tzinfo=UTC))  # 18 months exactly
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_hold_limit_check"):
            await conn.execute(hold, rec, datetime(2027, 2, 28, 10, 0, 1, tzinfo=UTC))
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_hold_check"):
            await conn.execute("UPDATE recordings SET hold_reason = NULL WHERE id = $1", rec)
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_purged_not_held_check"):
            await conn.execute("UPDATE recordings SET purged_at = now(), purge_reason = 'retention' WHERE id = $1", rec)


async def test_recording_retention_stays_between_2_and_6_months(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_retention_check"):
            await _recording(conn, retention_until=CALL_DATE + timedelta(days=30))
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_retention_check"):
            await _recording(conn, retention_until=CALL_DATE + timedelta(days=200))
        # 2025-08-31 + 6 months = 2026-02-28 (month end clamped), the same as hitcall_add_months
        rec = await _recording(conn, retention_until=datetime(2026, 2, 28, 10, 0, tzinfo=UTC))
        # purging for retention before the deadline is refused; erasure may purge early
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_purge_deadline_check"):
            await conn.execute(
                "UPDATE recordings SET purged_at = $2, purge_reason = 'retention' WHERE id = $1",
                rec,
                datetime(2026, 1, 1, tzinfo=UTC),
            )
        await conn.execute(
            "UPDATE recordings SET purged_at = $2, purge_reason = 'erasure' WHERE id = $1",
            rec,
            datetime(2025, 9, 1, tzinfo=UTC),
        )
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_path_check"):
            await _recording(conn, path="../../etc/passwd")
        with pytest.raises(asyncpg.CheckViolationError, match="recordings_sha256_check"):
            await _recording(conn, sha256="AB" * 32)


async def test_audit_log_is_append_only(db: asyncpg.Pool, pg_dsn: str) -> None:
    async with db.acquire() as conn:
        row = await conn.fetchval(
            "INSERT INTO audit_log (actor, actor_role, action) VALUES ('admin', 'admin', 'user.login') RETURNING id"
        )
        # The service's role has no right to change it (tests/security has the rest)...
        for sql in ("UPDATE audit_log SET actor = 'someone else' WHERE id = $1", "DELETE FROM audit_log WHERE id = $1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for table audit_log"):
                await conn.execute(sql, row)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE audit_log")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO audit_log (actor, action) VALUES ('admin', 'Drop Table')")
        database = await conn.fetchval("SELECT current_database()")
    # ... and even its owner is stopped by the trigger.
    owner = await asyncpg.connect(as_owner(pg_dsn, database))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = $1", row)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("DELETE FROM audit_log WHERE id = $1", row)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("TRUNCATE audit_log")
        assert await owner.fetchval("SELECT actor FROM audit_log WHERE id = $1", row) == "admin"
    finally:
        await owner.close()


async def test_contact_rules(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        lst = await _list(conn)
        bad = [
            {"email": "not-an-email"},
            {"timezone": "Helsinki time"},
            {"marketing_permission": True, "marketing_prohibited": True},
            {"status": "callback"},  # no callback time
            {"status": "lost"},
            {"attempts": -1},
            {"extra": ["not", "an", "object"]},
        ]
        for i, fields in enumerate(bad):
            with pytest.raises(asyncpg.CheckViolationError):
                await _contact(conn, lst, f"+35840100000{i}", **fields)
        cid = await _contact(conn, lst, "+358401000009", external_id="x1")
        with pytest.raises(asyncpg.UniqueViolationError):
            await _contact(conn, lst, "+358401000010", external_id="x1")
        before = await conn.fetchval("SELECT updated_at FROM contacts WHERE id = $1", cid)
        async with conn.transaction():  # now() is the transaction start
            await conn.execute("UPDATE contacts SET name = 'N' WHERE id = $1", cid)
        assert await conn.fetchval("SELECT updated_at FROM contacts WHERE id = $1", cid) > before


async def test_dnc_is_unique_per_number_and_campaign(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        c1, c2 = await _campaign(conn), await _campaign(conn)
        ins = "INSERT INTO dnc_entries (phone_e164, campaign_id, source) VALUES ('+358401111111', $1, 'manual')"
        await conn.execute(ins, None)
        with pytest.raises(asyncpg.UniqueViolationError, match="dnc_entries_global_key"):
            await conn.execute(ins, None)
        await conn.execute(ins, c1)
        await conn.execute(ins, c2)
        with pytest.raises(asyncpg.UniqueViolationError, match="dnc_entries_campaign_key"):
            await conn.execute(ins, c1)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO dnc_entries (phone_e164, source) VALUES ('+358401111112', 'rumour')")


async def test_live_attempt_and_cdr_rules(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        campaign = await _campaign(conn)
        lst = await _list(conn)
        contact = await _contact(conn, lst)
        live = await _attempt(conn, campaign, contact)
        # never two live attempts for one contact; a live attempt names what exists and is not ended
        with pytest.raises(asyncpg.UniqueViolationError, match="live_attempts_contact_key"):
            await _attempt(conn, campaign, contact, state="originating")
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="live_attempts_campaign_id_fkey"):
            await _attempt(conn, campaign + 1000, None)
        with pytest.raises(asyncpg.CheckViolationError, match="live_attempts_not_ended_check"):
            await conn.execute(
                "UPDATE live_attempts SET state = 'ended', ended_at = now(), outcome = 'busy' WHERE id = $1", live
            )

        async def cdr(contact: int | None = None, **fields: object) -> uuid.UUID:
            return await _attempt(conn, campaign, contact, table="call_attempts", **fields)

        # a CDR is an ended attempt: ended_at, an outcome, abandoned when the outcome says so
        with pytest.raises(asyncpg.CheckViolationError, match="call_attempts_ended_check"):
            await cdr(outcome="busy")
        with pytest.raises(asyncpg.CheckViolationError, match="call_attempts_ended_has_outcome"):
            await cdr(ended_at=datetime.now(UTC))
        with pytest.raises(asyncpg.CheckViolationError, match="call_attempts_is_cdr_check"):
            await cdr(state="ringing")
        with pytest.raises(asyncpg.CheckViolationError, match="call_attempts_abandoned_check"):
            await cdr(ended_at=datetime.now(UTC), outcome="abandoned")
        ended = await cdr(contact, ended_at=datetime.now(UTC), outcome="abandoned", abandoned=True)
        # anonymisation must really remove the personal data
        with pytest.raises(asyncpg.CheckViolationError, match="call_attempts_anonymised_check"):
            await conn.execute("UPDATE call_attempts SET anonymised_at = now() WHERE id = $1", ended)
        await conn.execute(
            "UPDATE call_attempts SET anonymised_at = now(), dialled_number = NULL, contact_id = NULL WHERE id = $1",
            ended,
        )
        for fields in (
            {"outcome": "hung_up"},
            {"hangup_cause": 200},
            {"amd_status": "maybe"},
            {"ring_s": -1},
            {"retention_until": datetime(2000, 1, 1, tzinfo=UTC)},
        ):
            with pytest.raises(asyncpg.CheckViolationError):
                await cdr(**{"ended_at": datetime.now(UTC), "outcome": "busy", **fields})
        # every attempt is in one of the two tables; all_attempts shows both
        assert {r["id"] for r in await conn.fetch("SELECT id FROM all_attempts")} == {live, ended}
        # erasing the contact: the live attempt keeps going without it; a campaign with live
        # attempts cannot be deleted
        await conn.execute("DELETE FROM contacts WHERE id = $1", contact)
        assert await conn.fetchval("SELECT contact_id FROM live_attempts WHERE id = $1", live) is None
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("DELETE FROM campaigns WHERE id = $1", campaign)


async def test_agent_and_offer_rules(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="agents_paused_has_code"):
            await conn.execute("INSERT INTO agents (number, name, state) VALUES ('1', 'A', 'paused')")
        with pytest.raises(asyncpg.CheckViolationError, match="agents_number_check"):
            await conn.execute("INSERT INTO agents (number, name) VALUES ('12a', 'A')")
        agent = await conn.fetchval("INSERT INTO agents (number, name) VALUES ('1', 'A') RETURNING id")
        await conn.execute(
            "INSERT INTO agent_state_log (agent_id, state, started_at) VALUES ($1, 'ready', now())", agent
        )
        with pytest.raises(asyncpg.UniqueViolationError, match="agent_state_log_open_key"):
            await conn.execute(
                "INSERT INTO agent_state_log (agent_id, state, started_at) VALUES ($1, 'on_call', now())", agent
            )
        campaign, lst = await _campaign(conn, mode="preview"), await _list(conn)
        c1, c2 = await _contact(conn, lst, "+358401000001"), await _contact(conn, lst, "+358401000002")
        offer = (
            "INSERT INTO preview_offers (agent_id, campaign_id, contact_id, expires_at)"
            " VALUES ($1, $2, $3, now() + interval '30 s')"
        )
        await conn.execute(offer, agent, campaign, c1)
        with pytest.raises(asyncpg.UniqueViolationError, match="preview_offers_open_agent_key"):
            await conn.execute(offer, agent, campaign, c2)
        with pytest.raises(asyncpg.CheckViolationError, match="preview_offers_skip_reason_check"):
            await conn.execute(
                "UPDATE preview_offers SET decided_at = now(), decision = 'accept', skip_reason = 'x'"
                " WHERE agent_id = $1",
                agent,
            )


async def test_a_list_belongs_to_one_campaign(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        c1, c2, lst = await _campaign(conn), await _campaign(conn), await _list(conn)
        await conn.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", c1, lst)
        with pytest.raises(asyncpg.UniqueViolationError, match="campaign_lists_one_campaign_per_list"):
            await conn.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", c2, lst)


async def test_webhook_and_alarm_rules(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="webhook_subscriptions_secret_check"):
            await conn.execute(
                "INSERT INTO webhook_subscriptions (url, secret, event_types)"
                " VALUES ('https://x.example', 'plain', '{call.ended}')"
            )
        with pytest.raises(asyncpg.CheckViolationError, match="webhook_subscriptions_url_check"):
            await conn.execute(
                "INSERT INTO webhook_subscriptions (url, secret, event_types) VALUES ('ftp://x', $1, '{call.ended}')",
                "whsec_" + "A" * 32,
            )
        out = "INSERT INTO webhook_outbox (event_id, event_type, subject, payload) VALUES ($1, 'call.ended', 's', '{}')"
        eid = uuid.uuid4()
        await conn.execute(out, eid)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(out, eid)
        await conn.execute("INSERT INTO alarms (name) VALUES ('ari.disconnected')")
        with pytest.raises(asyncpg.UniqueViolationError, match="alarms_raised_key"):
            await conn.execute("INSERT INTO alarms (name) VALUES ('ari.disconnected')")
        with pytest.raises(asyncpg.CheckViolationError, match="alarms_cleared_check"):
            await conn.execute("UPDATE alarms SET state = 'cleared' WHERE name = 'ari.disconnected'")


async def test_sql_month_arithmetic_matches_core(db: asyncpg.Pool) -> None:
    """Deadlines computed in Python (core.retention) and in SQL agree, so they pass the CHECKs."""
    from hitcall_pbx.core.retention import add_months

    helsinki = timezone(timedelta(hours=2))
    stamps = []
    for year in (2023, 2024, 2025):
        for month in range(1, 13):
            for day in (1, 28, 29, 30, 31):
                for hh, mm, tz in ((0, 0, UTC), (23, 59, UTC), (0, 30, helsinki)):
                    try:
                        stamps.append(datetime(year, month, day, hh, mm, 59, 999999, tzinfo=tz))
                    except ValueError:
                        continue
    for months in (1, 2, 6, 18, 24):
        got = await db.fetch(
            "SELECT hitcall_add_months(ts, $2) AS d"
            " FROM unnest($1::timestamptz[]) WITH ORDINALITY AS t(ts, n) ORDER BY n",
            stamps,
            months,
        )
        assert [r["d"] for r in got] == [add_months(ts, months) for ts in stamps]


async def test_suppression_salt_fits_core_hash(db: asyncpg.Pool) -> None:
    from hitcall_pbx.core.compliance import salted_number_hash

    salt = await db.fetchval("SELECT suppression_salt FROM installation")
    digest = salted_number_hash("+358401234567", bytes(salt))
    await db.execute("INSERT INTO suppression_hashes (hash) VALUES ($1)", digest)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("INSERT INTO suppression_hashes (hash) VALUES ($1)", digest)
    with pytest.raises(asyncpg.UniqueViolationError):  # exactly one installation row
        await db.execute("INSERT INTO installation (suppression_salt) VALUES ($1)", b"x" * 16)
