"""SQL for users, sessions and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ..store.db import Connection, Executor
from .throttle import Window

USER_COLUMNS = """u.id, u.username, u.role, u.disabled, u.failed_logins, u.locked_until,
    u.last_login_at, u.created_at, u.updated_at, (u.password_hash IS NOT NULL) AS has_password"""

TOKEN_COLUMNS = """t.id, t.user_id, t.name, t.prefix, t.scopes, t.created_at, t.expires_at,
    t.revoked_at, t.last_used_at"""  # noqa: S105 - SQL column names, not a credential

_USER_UPDATABLE = frozenset({"role", "disabled", "password_hash", "failed_logins", "locked_until"})


async def list_users(conn: Executor) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {USER_COLUMNS} FROM users u ORDER BY u.id")


async def get_user(conn: Executor, user_id: int, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1{lock}", user_id)


async def user_id_by_name(conn: Executor, username: str) -> int | None:
    return await conn.fetchval("SELECT id FROM users WHERE lower(username) = lower($1)", username)


async def user_for_login(conn: Connection, username: str) -> asyncpg.Record | None:
    """The user with its password hash, locked for the login's transaction."""
    return await conn.fetchrow(
        "SELECT id, username, role, password_hash, disabled, failed_logins, locked_until"
        " FROM users WHERE lower(username) = lower($1) FOR UPDATE",
        username,
    )


async def password_hash(conn: Executor, user_id: int) -> str | None:
    return await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)


async def insert_user(conn: Executor, username: str, role: str, password_hash: str | None) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""WITH u AS (INSERT INTO users (username, role, password_hash) VALUES ($1, $2, $3) RETURNING *)
            SELECT {USER_COLUMNS} FROM u""",
        username,
        role,
        password_hash,
    )
    assert row is not None  # INSERT ... RETURNING yields the one row it inserted
    return row


async def update_user(conn: Executor, user_id: int, changes: dict[str, Any]) -> asyncpg.Record | None:
    unknown = set(changes) - _USER_UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if not changes:
        return await get_user(conn, user_id)
    cols = list(changes)
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    return await conn.fetchrow(
        f"WITH u AS (UPDATE users SET {sets} WHERE id = $1 RETURNING *) SELECT {USER_COLUMNS} FROM u",
        user_id,
        *(changes[c] for c in cols),
    )


async def count_other_active_admins(conn: Executor, user_id: int) -> int:
    return await conn.fetchval("SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled AND id <> $1", user_id)


async def record_login_failure(conn: Executor, user_id: int, failed_logins: int, locked_until: datetime | None) -> None:
    await conn.execute(
        "UPDATE users SET failed_logins = $2, locked_until = COALESCE($3, locked_until) WHERE id = $1",
        user_id,
        failed_logins,
        locked_until,
    )


async def record_login_success(conn: Executor, user_id: int, now: datetime) -> None:
    await conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = $2 WHERE id = $1",
        user_id,
        now,
    )


# ------------------------------------------------------------------- login throttle

_THROTTLE_COLUMNS = "client, username, window_start, failures, locked_at, locked_until, refused"


def _window(row: asyncpg.Record) -> Window:
    return Window(row["window_start"], row["failures"], row["locked_at"], row["locked_until"], row["refused"])


async def throttle_windows(conn: Connection, client: str, username: str, now: datetime) -> tuple[Window, Window]:
    """The (client, every user) and (client, `username`) windows, created when missing and
    locked for the login's transaction (in key order, so logins never deadlock)."""
    await conn.execute(
        """INSERT INTO login_throttle (client, username, window_start) VALUES ($1, '', $3), ($1, $2, $3)
           ON CONFLICT (client, username) DO NOTHING""",
        client,
        username,
        now,
    )
    rows = await conn.fetch(
        f"""SELECT {_THROTTLE_COLUMNS} FROM login_throttle WHERE client = $1 AND username IN ('', $2)
            ORDER BY username FOR UPDATE""",
        client,
        username,
    )
    by_name = {r["username"]: _window(r) for r in rows}
    return by_name[""], by_name[username]


async def save_throttle_window(conn: Executor, client: str, username: str, w: Window) -> None:
    await conn.execute(
        """UPDATE login_throttle SET window_start = $3, failures = $4, locked_at = $5, locked_until = $6, refused = $7
           WHERE client = $1 AND username = $2""",
        client,
        username,
        w.window_start,
        w.failures,
        w.locked_at,
        w.locked_until,
        w.refused,
    )


async def delete_throttle_window(conn: Executor, client: str, username: str) -> None:
    await conn.execute("DELETE FROM login_throttle WHERE client = $1 AND username = $2", client, username)


async def ended_throttle_locks(conn: Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Locks that are over (oldest first), locked for the caller's transaction; skips rows
    another login holds."""
    return await conn.fetch(
        f"""SELECT {_THROTTLE_COLUMNS} FROM login_throttle WHERE locked_until <= $1
            ORDER BY locked_until LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )


async def delete_stale_throttle_windows(conn: Executor, before: datetime, limit: int) -> int:
    """Delete unlocked windows that started before `before` (they count nothing any more)."""
    return await conn.fetchval(
        """WITH d AS (DELETE FROM login_throttle WHERE ctid = ANY(ARRAY(
                         SELECT ctid FROM login_throttle WHERE locked_until IS NULL AND window_start < $1
                         LIMIT $2 FOR UPDATE SKIP LOCKED))
                      RETURNING 1)
           SELECT count(*) FROM d""",
        before,
        limit,
    )


async def clear_user_throttle(conn: Executor, username: str) -> None:
    """Unlock a user name for every client (an admin's unlock or a new password)."""
    await conn.execute("DELETE FROM login_throttle WHERE username = lower($1)", username)


# ------------------------------------------------------------------------ sessions


async def insert_session(
    conn: Executor,
    token_hash: str,
    user_id: int,
    created_at: datetime,
    expires_at: datetime,
    source_ip: str | None,
    user_agent: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at, source_ip, user_agent)
           VALUES ($1, $2, $3, $4, $3, $5::inet, $6)""",
        token_hash,
        user_id,
        created_at,
        expires_at,
        source_ip,
        user_agent,
    )


_PRINCIPAL_COLUMNS = "u.id AS user_id, u.username, u.role, u.disabled, a.id AS agent_id"


async def session_principal(conn: Executor, token_hash: str, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {_PRINCIPAL_COLUMNS}, s.last_seen_at
            FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN agents a ON a.user_id = u.id
            WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2""",
        token_hash,
        now,
    )


async def touch_session(conn: Executor, token_hash: str, now: datetime) -> None:
    await conn.execute("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1", token_hash, now)


async def revoke_session(conn: Executor, token_hash: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL", token_hash, now
    )


async def revoke_user_sessions(conn: Executor, user_id: int, now: datetime, *, keep_hash: str | None = None) -> int:
    status = await conn.execute(
        """UPDATE sessions SET revoked_at = $2
           WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
             AND token_hash IS DISTINCT FROM $3""",
        user_id,
        now,
        keep_hash,
    )
    return int(status.split()[-1])


# ---------------------------------------------------------------------- API tokens


async def insert_token(
    conn: Executor,
    user_id: int,
    name: str,
    token_hash: str,
    prefix: str,
    scopes: list[str],
    created_at: datetime,
    expires_at: datetime | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"""WITH t AS (INSERT INTO api_tokens (user_id, name, token_hash, prefix, scopes, created_at, expires_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *)
            SELECT {TOKEN_COLUMNS} FROM t""",
        user_id,
        name,
        token_hash,
        prefix,
        scopes,
        created_at,
        expires_at,
    )
    assert row is not None  # INSERT ... RETURNING yields the one row it inserted
    return row


async def token_principal(conn: Executor, token_hash: str, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {_PRINCIPAL_COLUMNS}, t.id AS token_id, t.scopes, t.last_used_at
            FROM api_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN agents a ON a.user_id = u.id
            WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)""",
        token_hash,
        now,
    )


async def touch_token(conn: Executor, token_id: int, now: datetime) -> None:
    await conn.execute("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1", token_id, now)


async def list_tokens(conn: Executor, user_id: int | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE $1::bigint IS NULL OR t.user_id = $1 ORDER BY t.id",
        user_id,
    )


async def get_token(conn: Executor, token_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {TOKEN_COLUMNS} FROM api_tokens t WHERE t.id = $1", token_id)


async def revoke_user_tokens(conn: Executor, user_id: int, now: datetime) -> list[int]:
    """Revoke every API token of the user still in force; the ids revoked."""
    rows = await conn.fetch(
        """UPDATE api_tokens SET revoked_at = $2
           WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
           RETURNING id""",
        user_id,
        now,
    )
    return sorted(r["id"] for r in rows)


async def revoke_token(conn: Executor, token_id: int, now: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""WITH t AS (UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *)
            SELECT {TOKEN_COLUMNS} FROM t""",
        token_id,
        now,
    )
