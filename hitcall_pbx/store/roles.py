"""Database roles: the schema owner runs migrations, the service runs as a role with only
what it needs.

* The **owner** role owns the schema ``public`` and every object in it; migrations run as
  it (``HITCALL_MIGRATE_DATABASE_URL``). It is no superuser either.
* The **service** role (``DATABASE_URL``) is no superuser, owns no table and may only
  read and write rows: SELECT, INSERT, UPDATE, DELETE on the tables, except the
  append-only ones (``audit_log``: SELECT and INSERT only) and ``schema_migrations``
  (SELECT). Without superuser it cannot switch the audit log's trigger off
  (``session_replication_role``), and without UPDATE / DELETE / TRUNCATE on the audit log
  its rows cannot change whatever the trigger does.

`grant_service` is the post-migrate grants step, run by the owner after every migration
run: it grants on every table there is and sets the owner's default privileges, so that
tables a later migration creates are covered too (the append-only list is applied again
each time). `ensure_roles` and `prepare_database` are the superuser's one-time set-up
(the embedded server does it at every start; docker/postgres does it at init).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import asyncpg

from .embedded import EMBEDDED_OWNER, EMBEDDED_SERVICE

if TYPE_CHECKING:
    from .db import Connection, Executor

__all__ = ["EMBEDDED_OWNER", "EMBEDDED_SERVICE", "RESTRICTED", "RoleReport", "ensure_roles", "grant_service"]

ROW_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Tables the service may not change freely: only these privileges.
RESTRICTED: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "audit_log": ("SELECT", "INSERT"),  # append-only: rows are never changed or deleted
        "schema_migrations": ("SELECT",),  # the owner's record of what is applied
    }
)
# Fixed key of the advisory lock around role set-up ("HitCallR").
ROLES_LOCK_KEY = 0x48697443616C6C52

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _ident(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid role or table name {name!r}")
    return f'"{name}"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def ensure_roles(
    admin: Connection, *, owner: str, owner_password: str, service: str, service_password: str
) -> None:
    """Create (or reset) the owner and service login roles: no superuser, no CREATEDB,
    CREATEROLE, REPLICATION or BYPASSRLS, and the service not a member of the owner.
    Needs a superuser (or CREATEROLE) connection."""
    await admin.execute("SELECT pg_advisory_lock($1)", ROLES_LOCK_KEY)
    try:
        for name, password in ((owner, owner_password), (service, service_password)):
            verb = "ALTER" if await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name) else "CREATE"
            await admin.execute(
                f"{verb} ROLE {_ident(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                f" INHERIT PASSWORD {_literal(password)}"
            )
        if await admin.fetchval(
            "SELECT pg_has_role($1, $2, 'MEMBER')", service, owner
        ):  # a member could act as the owner
            await admin.execute(f"REVOKE {_ident(owner)} FROM {_ident(service)}")
    finally:
        await admin.execute("SELECT pg_advisory_unlock($1)", ROLES_LOCK_KEY)


async def prepare_database(admin: Connection, *, owner: str) -> None:
    """In the database `admin` is connected to: the owner owns schema ``public`` and every
    table, sequence, view and function in it (an install from before the roles were split
    has them owned by the superuser), and nobody else may create objects there. Needs a
    superuser connection. Idempotent."""
    own = _ident(owner)
    await admin.execute(f"ALTER SCHEMA public OWNER TO {own}")
    await admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    relations = await admin.fetch(
        """SELECT c.relname, c.relkind FROM pg_class c
           WHERE c.relnamespace = 'public'::regnamespace AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)
             AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             AND NOT EXISTS (SELECT 1 FROM pg_depend d
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
           ORDER BY c.relkind <> 'S', c.relname""",
        owner,
    )
    for rel in relations:
        kind = {"S": "SEQUENCE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}.get(
            rel["relkind"], "TABLE"
        )
        await admin.execute(f'ALTER {kind} public."{rel["relname"]}" OWNER TO {own}')
    functions = await admin.fetch(
        """SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
           WHERE p.pronamespace = 'public'::regnamespace
             AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)""",
        owner,
    )
    for fn in functions:
        await admin.execute(f"ALTER ROUTINE {fn['signature']} OWNER TO {own}")


async def grant_service(owner_conn: Executor, service: str) -> None:
    """The post-migrate grants step, run as the owner: the service may read and write the
    rows of every table (but `RESTRICTED` ones), use the sequences and call the functions;
    the owner's default privileges give the same on tables created later."""
    svc = _ident(service)
    restricted = {
        r["relname"]
        for r in await owner_conn.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname = ANY($1::text[])",
            list(RESTRICTED),
        )
    }
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {svc}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {svc}",
        f"GRANT {', '.join(ROW_PRIVILEGES)} ON ALL TABLES IN SCHEMA public TO {svc}",
        *(f"REVOKE ALL ON public.{_ident(t)} FROM {svc}" for t in sorted(restricted)),
        *(f"GRANT {', '.join(RESTRICTED[t])} ON public.{_ident(t)} TO {svc}" for t in sorted(restricted)),
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {svc}",
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {svc}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {', '.join(ROW_PRIVILEGES)} ON TABLES TO {svc}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {svc}",
    ]
    if isinstance(owner_conn, asyncpg.Pool):
        async with owner_conn.acquire() as conn, conn.transaction():
            for sql in statements:
                await conn.execute(sql)
    else:
        async with owner_conn.transaction():
            for sql in statements:
                await owner_conn.execute(sql)


@dataclass(frozen=True)
class RoleReport:
    """What `hitcall doctor` says about the role the service connects as."""

    role: str
    superuser: bool
    owned_tables: list[str]
    audit_log_writable: list[str]  # UPDATE / DELETE / TRUNCATE it holds on audit_log

    @property
    def problems(self) -> list[str]:
        out = []
        if self.superuser:
            out.append(f"role {self.role} is a superuser (it could switch the audit log's protection off)")
        if self.owned_tables:
            shown = ", ".join(self.owned_tables[:5]) + (", ..." if len(self.owned_tables) > 5 else "")
            out.append(f"role {self.role} owns {len(self.owned_tables)} table(s) ({shown})")
        if self.audit_log_writable and not self.superuser:
            out.append(f"role {self.role} may {'/'.join(self.audit_log_writable)} audit_log")
        return out


async def inspect_role(conn: Executor) -> RoleReport:
    """The connected role: superuser?, tables it owns, what it may do to audit_log beyond
    SELECT and INSERT."""
    row = await conn.fetchrow(
        """SELECT current_user AS role, r.rolsuper AS superuser,
                  ARRAY(SELECT c.relname::text FROM pg_class c
                        WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p')
                          AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                        ORDER BY 1) AS owned,
                  ARRAY(SELECT p FROM unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) AS p
                        WHERE to_regclass('public.audit_log') IS NOT NULL
                          AND has_table_privilege('public.audit_log', p)) AS audit
           FROM pg_roles r WHERE r.rolname = current_user"""
    )
    assert row is not None
    return RoleReport(row["role"], row["superuser"], list(row["owned"]), list(row["audit"]))
