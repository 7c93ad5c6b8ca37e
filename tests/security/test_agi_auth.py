"""FastAGI needs the shared secret the dialplan passes (``agi://…/<script>?secret=…``):
without it, or with another one, a request gets nothing (no lookup, no opt-out) and is
logged without the secret. Idle connections cannot block a real request (per-peer and
server-wide caps on connections that have not sent their request, oldest closed first),
and a peer that does not send its request in time is cut.

The peers here are raw TCP clients: what an attacker on the network has. The same
requests through the real Asterisk are in tests/asterisk/test_agi_optout.py."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from structlog.testing import capture_logs

from hitcall_pbx.agi import AgiServer, default_handlers
from hitcall_pbx.agi import command as agi_command
from hitcall_pbx.app import HitCall, Options
from hitcall_pbx.errors import ConfigError
from hitcall_pbx.settings import load_settings

SECRET = "security-test-agi-secret-42"
CALLER = "+358401234567"


@asynccontextmanager
async def agi_server(db: asyncpg.Pool, **options: float) -> AsyncIterator[AgiServer]:
    server = AgiServer(db, "127.0.0.1", 0, default_handlers(), secret=SECRET, **options)  # type: ignore[arg-type]  # timeouts and caps by name
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def contact(db: asyncpg.Pool) -> int:
    list_id = await db.fetchval("INSERT INTO contact_lists (name) VALUES ('spring') RETURNING id")
    return await db.fetchval(
        "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'Maija') RETURNING id", list_id, CALLER
    )


def env(script: str) -> bytes:
    return (
        f"agi_network: yes\nagi_network_script: {script}\nagi_request: agi://127.0.0.1:4573/{script}\n"
        f"agi_channel: Local/0291234567@hitcall-inbound-0001;2\nagi_callerid: {CALLER}\n"
        "agi_extension: 0291234567\nagi_uniqueid: 1700000000.1\n\n"
    ).encode()


async def run_request(port: int, script: str, *, local: str = "127.0.0.1", press: str = "1") -> list[str]:
    """Send one request like Asterisk does and answer every command (the caller presses
    `press` at the first prompt); the commands the server sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    writer.write(env(script))
    await writer.drain()
    commands: list[str] = []
    try:
        while line := (await asyncio.wait_for(reader.readline(), 10)).decode().rstrip("\n"):
            commands.append(line)
            first_prompt = line.startswith("STREAM FILE") and not any(c.startswith("STREAM") for c in commands[:-1])
            writer.write(f"200 result={ord(press)} endpos=10\n".encode() if first_prompt else b"200 result=1\n")
            await writer.drain()
    finally:
        writer.close()
    return commands


def refusals(logs: list[dict]) -> list[str]:
    return [e["reason"] for e in logs if e["event"] == "agi_refused"]


@pytest.mark.parametrize("script", ["lookup", "optout"])
@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "missing_secret"), ("?secret=", "wrong_secret"), ("?secret=guessed-agi-secret-0001", "wrong_secret")],
    ids=["no-secret", "empty-secret", "wrong-secret"],
)
async def test_a_request_without_the_secret_gets_nothing(db, contact, script, query, reason):
    with capture_logs() as logs:
        async with agi_server(db) as server:
            assert await run_request(server.port, script + query) == []  # not one command: no lookup
    assert await db.fetchval("SELECT count(*) FROM dnc_entries") == 0  # no opt-out
    assert await db.fetchval("SELECT marketing_prohibited FROM contacts WHERE id = $1", contact) is False
    assert refusals(logs) == [reason]
    assert SECRET not in repr(logs) and "guessed-agi-secret" not in repr(logs)


async def test_a_request_with_the_secret_is_served(db, contact):
    with capture_logs() as logs:
        async with agi_server(db) as server:
            lookup = await run_request(server.port, f"lookup?secret={SECRET}")
            optout = await run_request(server.port, f"optout?secret={SECRET}", press="1")
    assert lookup[:2] == ['SET VARIABLE "HITCALL_CONTACT_FOUND" "1"', f'SET VARIABLE "HITCALL_CONTACT_ID" "{contact}"']
    assert 'SET VARIABLE "HITCALL_OPTED_OUT" "1"' in optout
    assert await db.fetchval("SELECT count(*) FROM dnc_entries WHERE phone_e164 = $1", CALLER) == 1
    assert refusals(logs) == []
    assert SECRET not in repr(logs)


async def idle_connection(port: int, local: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    writer.write(b"agi_network: yes\n")  # starts a request and never finishes it
    await writer.drain()
    return reader, writer


async def test_many_idle_connections_do_not_block_a_real_request(db, contact):
    # A long request timeout: the caps alone must keep the line open.
    async with agi_server(db, env_timeout=60) as server:
        peers = ["127.0.0.1"] + [f"127.0.0.{i}" for i in range(2, 40)]
        idle = [await idle_connection(server.port, peers[i % len(peers)]) for i in range(400)]
        try:
            started = time.monotonic()
            # From an address of its own, and from the same address as the idle ones.
            for local in ("127.0.0.99", "127.0.0.1"):
                served = await asyncio.wait_for(run_request(server.port, f"lookup?secret={SECRET}", local=local), 5)
                assert served[0] == 'SET VARIABLE "HITCALL_CONTACT_FOUND" "1"'
            assert time.monotonic() - started < 5
            # Most idle connections were closed to make room; the server holds a bounded number.
            closed = 0
            for reader, _ in idle:
                try:
                    closed += await asyncio.wait_for(reader.read(), 0.01) == b""
                except (TimeoutError, ConnectionError):
                    pass
            assert closed >= 400 - 256
        finally:
            for _, writer in idle:
                writer.close()


@pytest.mark.parametrize("behaviour", ["silent", "partial", "trickle"])
async def test_a_slow_or_idle_peer_is_cut_after_the_timeout(db, behaviour):
    async with agi_server(db) as server:  # the service's own request timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        if behaviour == "partial":
            writer.write(b"agi_network: yes\nagi_network_script: lookup?secret=")
        stop = asyncio.Event()

        async def trickle() -> None:
            for line in (b"agi_network: yes\n", b"agi_callerid: 1\n") * 100:
                if stop.is_set():
                    return
                try:
                    writer.write(line)
                    await writer.drain()
                except ConnectionError:
                    return
                await asyncio.sleep(0.1)

        task = asyncio.create_task(trickle()) if behaviour == "trickle" else None
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it, sending nothing
        except ConnectionError:
            pass
        finally:
            stop.set()
            if task:
                await task
            writer.close()
        assert 1.5 < time.monotonic() - started < 3.5  # 2 s


async def test_fastagi_does_not_run_without_a_secret(tmp_path, capsys):
    settings = load_settings(data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    assert settings.agi_secret is None and settings.agi_host == "127.0.0.1"
    with pytest.raises(ConfigError, match="HITCALL_AGI_SECRET is required"):
        await HitCall(settings, Options(agi=True)).start()
    args = argparse.Namespace(host=None, port=None)
    assert await agi_command.run(settings, args) == 2
    assert "HITCALL_AGI_SECRET is required" in capsys.readouterr().err
    with pytest.raises(ValueError, match="secret"):
        AgiServer(None, "127.0.0.1", 0, default_handlers(), secret="")  # type: ignore[arg-type]  # refused before the pool is used
