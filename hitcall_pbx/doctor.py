"""`hitcall doctor`: is everything HitCall needs there and working?

Operators run it first; monitoring runs it with --json. Each check is one line.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

import aiohttp

from .ari import AriClient, AriError, AriNotFound
from .errors import HitCallError
from .settings import Settings
from .store import migrations, roles
from .store.db import Database

REQUIRED_MODULES = ("res_ari.so", "res_stasis.so", "app_amd.so", "res_stasis_recording.so", "chan_pjsip.so")
REQUIRED_ASTERISK_MAJOR = 22


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def check_database(settings: Settings) -> list[Check]:
    try:
        async with Database(settings) as db, db.pool.acquire() as conn:
            version = await conn.fetchval("SHOW server_version")
            rows = await migrations.status(conn)
            role = await roles.inspect_role(conn)
    except (HitCallError, OSError) as exc:
        msg = exc.message if isinstance(exc, HitCallError) else str(exc)
        return [Check("database", False, msg)]
    pending = [f"{r.version:04d}_{r.name}" for r in rows if r.applied_at is None]
    where = "embedded" if settings.database_url is None else "DATABASE_URL"
    return [
        Check("database", True, f"PostgreSQL {version} ({where})"),
        Check(
            "migrations",
            not pending,
            "up to date" if not pending else f"{len(pending)} pending: {', '.join(pending)} (run `hitcall migrate`)",
        ),
        _role_check(role),
    ]


def _role_check(role: roles.RoleReport) -> Check:
    """A warning when the service's role could change the audit log: a superuser, a table
    owner (the owner of audit_log can drop its trigger), or UPDATE/DELETE on it."""
    problems = role.problems
    if not problems:
        return Check("database_role", True, f"service runs as {role.role}: no superuser, owns no table")
    return Check(
        "database_role",
        False,
        "warning: "
        + "; ".join(problems)
        + " — run the service as a role of its own (DATABASE_URL) and migrate as the owner"
        " (HITCALL_MIGRATE_DATABASE_URL); see the operator guide, Database roles",
    )


async def check_asterisk(settings: Settings) -> list[Check]:
    assert settings.ari_password is not None
    client = AriClient(settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app)
    checks: list[Check] = []
    try:
        await client.start_rest()
        try:
            info = await client.rest.get_info()
        except AriError as exc:
            return [Check("ari", False, f"ARI at {settings.ari_url}: {exc.message}")]
        version = info.system.version if info.system else "unknown"
        checks.append(Check("ari", True, f"reachable at {settings.ari_url} as {settings.ari_user}"))
        major = version.split(".", 1)[0]
        checks.append(
            Check(
                "asterisk_version",
                major.isdigit() and int(major) >= REQUIRED_ASTERISK_MAJOR,
                f"Asterisk {version} (need {REQUIRED_ASTERISK_MAJOR}+)",
            )
        )
        for name in REQUIRED_MODULES:
            try:
                mod = await client.rest.get_module(name)
                ok = (mod.status or "").lower() == "running"
                checks.append(Check(f"module:{name}", ok, mod.status or "unknown"))
            except AriNotFound:
                checks.append(Check(f"module:{name}", False, "not loaded"))
        checks.append(await _check_app(client))
    finally:
        await client.close()
    return checks


async def _check_app(client: AriClient) -> Check:
    try:
        await client.rest.get_application(client.app)
        return Check("stasis_app", True, f"'{client.app}' registered (service connected)")
    except AriNotFound:
        pass
    # The service is not connected: prove that the app can register.
    try:
        await client.start_events(wait=5.0)
        await client.rest.get_application(client.app)
        return Check("stasis_app", True, f"'{client.app}' registers (service not connected now)")
    except (TimeoutError, AriError, aiohttp.ClientError) as exc:
        return Check("stasis_app", False, f"'{client.app}' cannot register: {exc}")


async def run_checks(settings: Settings) -> list[Check]:
    db, ast = await asyncio.gather(check_database(settings), check_asterisk(settings))
    return [Check("settings", True, "valid"), *db, *ast]
