"""Login throttling keys on (client, user name), the client taken from X-Forwarded-For only
when the peer is a trusted proxy; refused tries are counted, not written one audit row
each; an unknown user name and a wrong password answer alike."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.auth import Passwords, Role
from hitcall_pbx.core.netaddr import parse_networks
from hitcall_pbx.settings import Settings
from tests.conftest import as_service
from tests.integration.test_api_support import PASSWORD, SYSTEM
from tests.security.service_api import ServiceApi, running_api
from tests.webhook_receiver import free_port

LOGIN = "/api/v1/auth/login"
WRONG = "not the password!"


@pytest.fixture
async def behind_proxy(db: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[ServiceApi]:
    """The API behind a TLS proxy on loopback (the test client is that proxy)."""
    async with running_api(db, tmp_path / "var", trusted_proxies=parse_networks("127.0.0.0/8")) as api:
        yield api


@pytest.fixture
async def untrusted_peer(db: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[ServiceApi]:
    """Only 10.0.0.0/8 is a trusted proxy: the test client on loopback is not."""
    async with running_api(db, tmp_path / "var", trusted_proxies=parse_networks("10.0.0.0/8")) as api:
        yield api


async def login(api: ServiceApi, username: str, password: str, client: str | None = None) -> tuple[int, dict]:
    headers = {"X-Forwarded-For": f"203.0.113.250, {client}"} if client else {}  # first hop: client-supplied junk
    resp = await api.client.post(LOGIN, json={"username": username, "password": password}, headers=headers)
    return resp.status, await resp.json()


async def add_user(api: ServiceApi, name: str, role: Role = Role.SUPERVISOR) -> int:
    row = await api.auth.create_user(username=name, role=role, password=PASSWORD, actor=SYSTEM)
    return row["id"]


async def audit(api: ServiceApi, *actions: str) -> list[asyncpg.Record]:
    return await api.pool.fetch(
        """SELECT action, actor, host(source_ip) AS ip, details FROM audit_log
           WHERE action = ANY($1::text[]) ORDER BY id""",
        list(actions),
    )


async def test_behind_a_trusted_proxy_one_client_locks_only_itself(behind_proxy: ServiceApi) -> None:
    api = behind_proxy
    await add_user(api, "maija")
    await add_user(api, "pekka")
    attacker, colleague = "198.51.100.7", "198.51.100.8"
    for _ in range(api.deps.throttle.max_failures):
        assert (await login(api, "maija", WRONG, attacker))[0] == 401
    status, body = await login(api, "maija", PASSWORD, attacker)
    assert (status, body["error"]) == (429, "login_locked")
    # Another client behind the same proxy, and the same client for another user, log in.
    assert (await login(api, "maija", PASSWORD, colleague))[0] == 200
    assert (await login(api, "pekka", PASSWORD, attacker))[0] == 200

    # 20 failures from one client (any names) lock that client, nobody else.
    for i in range(api.deps.throttle.ip_max_failures):
        await login(api, f"guess{i}", WRONG, attacker)
    status, body = await login(api, "pekka", PASSWORD, attacker)
    assert (status, body["error"]) == (429, "login_throttled")
    assert (await login(api, "pekka", PASSWORD, colleague))[0] == 200
    assert (await login(api, "maija", PASSWORD, "198.51.100.9"))[0] == 200
    # Audit rows name the clients, not the proxy.
    ips = {r["ip"] for r in await audit(api, "auth.login_failed", "auth.login")}
    assert ips == {attacker, colleague, "198.51.100.9"}


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(untrusted_peer: ServiceApi) -> None:
    api = untrusted_peer
    await add_user(api, "maija")
    for i in range(api.deps.throttle.max_failures):
        # Each try claims another client address: all of them are the peer's own.
        assert (await login(api, "maija", WRONG, f"198.51.100.{i + 1}"))[0] == 401
    status, body = await login(api, "maija", PASSWORD, "198.51.100.200")
    assert (status, body["error"]) == (429, "login_locked")
    assert {r["ip"] for r in await audit(api, "auth.login_failed")} == {"127.0.0.1"}


async def test_another_user_is_not_locked_out_by_failures_for_one_user(untrusted_peer: ServiceApi) -> None:
    api = untrusted_peer
    await add_user(api, "maija")
    await add_user(api, "liisa")
    # Far more tries than either limit, all at one user: only that user is locked, for this client.
    for _ in range(api.deps.throttle.ip_max_failures + 5):
        await login(api, "maija", WRONG)
    assert (await login(api, "liisa", PASSWORD))[0] == 200
    # The lock ends: maija logs in again from the same client.
    api.clock.advance(seconds=api.deps.throttle.lock_s + 1)
    assert (await login(api, "maija", PASSWORD))[0] == 200


@pytest.mark.parametrize("spray", [False, True], ids=["one-user", "many-users"])
async def test_refused_tries_are_counted_not_audited_one_row_each(untrusted_peer: ServiceApi, spray: bool) -> None:
    api = untrusted_peer
    policy = api.deps.throttle
    await add_user(api, "maija")
    tries = 200
    for i in range(tries):
        await login(api, f"user{i}" if spray else "maija", WRONG)
    limit = policy.ip_max_failures if spray else policy.max_failures
    failed = await audit(api, "auth.login_failed")
    assert len(failed) == limit
    assert failed[-1]["details"]["locked"] == ["client" if spray else "user"]
    assert await audit(api, "auth.login_throttled") == []  # nothing per refused try while locked
    # The lock is over: the next login anywhere writes its one summary.
    api.clock.advance(seconds=policy.lock_s + 1)
    await add_user(api, "ville")
    assert (await login(api, "ville", PASSWORD))[0] == 200
    [summary] = await audit(api, "auth.login_throttled")
    assert summary["details"]["refused"] == tries - limit
    assert summary["details"]["scope"] == ("client" if spray else "user")
    assert summary["ip"] == "127.0.0.1"
    total = await api.pool.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'auth.login%'")
    assert total == limit + 1 + 1  # the failures up to the lock, the summary, ville's login


async def test_unknown_user_names_and_wrong_passwords_answer_alike(db: asyncpg.Pool, tmp_path: Path) -> None:
    # The service's own password hashing cost, so that the time is the hash's.
    async with running_api(db, tmp_path / "var", passwords=Passwords()) as api:
        await add_user(api, "maija")
        answers: dict[str, list[tuple[int, dict]]] = {"known": [], "unknown": []}
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        ghost = f"ghost-{uuid.uuid4().hex[:6]}"
        for _ in range(api.deps.throttle.max_failures + 1):
            for kind, name in (("known", "maija"), ("unknown", ghost)):
                started = time.perf_counter()
                answers[kind].append(await login(api, name, WRONG))
                times[kind].append(time.perf_counter() - started)
        # Same statuses and bodies, try by try: 401 until the lock, then the same 429.
        assert answers["known"] == answers["unknown"]
        assert [s for s, _ in answers["known"]] == [401] * api.deps.throttle.max_failures + [429]
        # Similar timing: both run one password verification (unknown: against a dummy hash).
        known = statistics.median(times["known"][:-1])
        unknown = statistics.median(times["unknown"][:-1])
        assert 0.6 < known / unknown < 1.6, (known, unknown)


async def test_the_service_takes_its_trusted_proxies_from_the_settings(
    db: asyncpg.Pool, pg_dsn: str, tmp_path: Path
) -> None:
    """`hitcall serve` wires HITCALL_TRUSTED_PROXIES into the API it serves."""
    http_port = free_port()
    settings = Settings(
        database_url=as_service(pg_dsn, await db.fetchval("SELECT current_database()")),
        data_dir=tmp_path / "var",
        http_port=http_port,
        trusted_proxies="127.0.0.0/8",
        agi_enabled=False,
    )
    app = HitCall(settings, Options(dialer=False, http=True, migrate=False, agi=False, webhooks=False))
    await app.start()
    try:
        async with aiohttp.ClientSession() as http:
            for client in ("198.51.100.21", "198.51.100.22"):
                headers = {"X-Forwarded-For": f"10.9.9.9, {client}"}
                body = {"username": "nobody", "password": WRONG}
                async with http.post(f"http://127.0.0.1:{http_port}{LOGIN}", json=body, headers=headers) as resp:
                    assert resp.status == 401
    finally:
        await app.close()
    ips = await db.fetch("SELECT host(source_ip) AS ip FROM audit_log WHERE action = 'auth.login_failed' ORDER BY id")
    assert [r["ip"] for r in ips] == ["198.51.100.21", "198.51.100.22"]


async def test_a_password_typed_as_the_user_name_never_reaches_the_audit_log(untrusted_peer: ServiceApi) -> None:
    api = untrusted_peer
    await add_user(api, "maija")
    typed = "Kissa2026pwd"  # looks like a user name: the old code kept it as the actor
    for _ in range(api.deps.throttle.max_failures + 3):
        await login(api, typed, WRONG)
    api.clock.advance(seconds=api.deps.throttle.lock_s + 1)
    assert (await login(api, "maija", PASSWORD))[0] == 200  # writes the lock's summary
    rows = await api.pool.fetch("SELECT actor, details::text AS details FROM audit_log")
    assert any(r["actor"] == "unknown" for r in rows)
    assert not [r for r in rows if typed.lower() in (r["actor"] + r["details"]).lower()], rows
