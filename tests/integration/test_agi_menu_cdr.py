"""Return calls that end in the FastAGI menu (script ``optout``) write one inbound CDR
(migration 0010, outcome self_service) and its call.ended event; a caller handed to the
inbound router (key 2) gets none from the menu (the router writes it).

The peer is a raw TCP client speaking FastAGI as Asterisk does (as in
tests/security/test_agi_auth.py); the same call through the real Asterisk is in
tests/asterisk/test_agi_optout.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import pytest

from hitcall_pbx.agi import AgiServer, default_handlers
from hitcall_pbx.api.repos.campaigns import abandon_counts
from hitcall_pbx.core.phone import normalize_e164
from hitcall_pbx.core.retention import RetentionPolicy, cdr_deadline
from hitcall_pbx.records.cdr import inbound_cdr_id

SECRET = "integration-test-agi-secret-7"
CALLER = "+358401234567"
LINE_EXTEN = "0291234567"
LINE = normalize_e164(LINE_EXTEN, field="line")
HANGUP = "511 Command Not Permitted on a dead channel or intercepted AGI"

# Answers a command line (and the number of STREAM FILE commands before it) with a reply.
Answer = Callable[[str, int], str]


@asynccontextmanager
async def agi_server(db: asyncpg.Pool) -> AsyncIterator[AgiServer]:
    server = AgiServer(db, "127.0.0.1", 0, default_handlers(), secret=SECRET)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def run_call(port: int, channel: str, answer: Answer, *, caller: str = CALLER) -> list[str]:
    """One return call as Asterisk sends it; `answer` replies to each command. The commands sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"agi_network: yes\nagi_network_script: optout?secret={SECRET}\n"
            f"agi_request: agi://127.0.0.1:4573/optout?secret={SECRET}\n"
            f"agi_channel: Local/{LINE_EXTEN}@hitcall-inbound-0001;2\nagi_callerid: {caller}\n"
            f"agi_extension: {LINE_EXTEN}\nagi_uniqueid: {channel}\n\n"
        ).encode()
    )
    await writer.drain()
    commands: list[str] = []
    streams = 0
    try:
        while line := (await asyncio.wait_for(reader.readline(), 10)).decode().rstrip("\n"):
            commands.append(line)
            reply = answer(line, streams)
            streams += line.startswith("STREAM FILE")
            writer.write(f"{reply}\n".encode())
            await writer.drain()
    finally:
        writer.close()
    return commands


def press(digit: str) -> Answer:
    """The caller presses `digit` at the first prompt, then listens."""
    return lambda line, streams: (
        f"200 result={ord(digit)} endpos=10" if line.startswith("STREAM FILE") and streams == 0 else "200 result=0"
    )


def hang_up_at(stream: int, digit: str | None = None) -> Answer:
    """The caller presses `digit` (if any) at the first prompt and hangs up during prompt number `stream`."""

    def answer(line: str, streams: int) -> str:
        if line.startswith("STREAM FILE") and streams == stream:
            return HANGUP
        if digit is not None and line.startswith("STREAM FILE") and streams == 0:
            return f"200 result={ord(digit)} endpos=10"
        return "200 result=0"

    return answer


@pytest.fixture
async def campaign(db: asyncpg.Pool) -> tuple[int, int]:
    """A campaign with the return line as caller id (CDR policy 36 months) and the caller as its contact."""
    campaign_id = await db.fetchval(
        "INSERT INTO campaigns (name, mode, caller_id, retention_cdr_months) VALUES ('Spring', 'progressive', $1, 36)"
        " RETURNING id",
        LINE,
    )
    list_id = await db.fetchval("INSERT INTO contact_lists (name) VALUES ('spring') RETURNING id")
    await db.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign_id, list_id)
    contact_id = await db.fetchval(
        "INSERT INTO contacts (list_id, phone_e164, name) VALUES ($1, $2, 'Maija') RETURNING id", list_id, CALLER
    )
    return campaign_id, contact_id


async def cdrs(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM call_attempts ORDER BY created_at")


async def ended_events(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return await db.fetch("SELECT subject, payload FROM webhook_outbox WHERE event_type = 'call.ended' ORDER BY id")


async def test_an_opt_out_writes_one_self_service_cdr_and_its_event(db, campaign):
    campaign_id, contact_id = campaign
    before = datetime.now(UTC)
    async with agi_server(db) as server:
        commands = await run_call(server.port, "1700000000.11", press("1"))
        # Asterisk runs the script once per call; a second session of the same channel
        # (a retried request) writes nothing more.
        await run_call(server.port, "1700000000.11", press("1"))
    after = datetime.now(UTC)
    assert 'SET VARIABLE "HITCALL_OPTED_OUT" "1"' in commands

    [row] = await cdrs(db)
    assert row["id"] == inbound_cdr_id("1700000000.11")
    assert (row["direction"], row["outcome"], row["abandoned"], row["state"]) == (
        "inbound",
        "self_service",
        False,
        "ended",
    )
    assert (row["campaign_id"], row["contact_id"], row["caller_number"], row["caller_id"]) == (
        campaign_id,
        contact_id,
        CALLER,
        LINE,
    )
    assert (row["dialled_number"], row["attempt_no"], row["mode"], row["agent_id"], row["bridged_at"]) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert before <= row["created_at"] == row["answered_at"] <= row["ended_at"] <= after
    assert row["ring_s"] == 0
    assert float(row["talk_s"]) == pytest.approx((row["ended_at"] - row["created_at"]).total_seconds(), abs=0.002)
    # The campaign's CDR policy (36 months), not the default (24).
    assert row["retention_until"] == cdr_deadline(row["created_at"], RetentionPolicy(cdr_months=36))

    [event] = await ended_events(db)
    assert event["subject"] == f"attempt:{row['id']}"
    assert event["payload"]["id"] == str(row["id"])
    assert (event["payload"]["direction"], event["payload"]["outcome"]) == ("inbound", "self_service")
    assert event["payload"]["caller_number"] == CALLER
    # Inbound: never in the outbound abandon rate.
    counts = await abandon_counts(db, campaign_id, "UTC")
    assert (counts["day_abandoned"], counts["period_abandoned"], counts["period_connected"]) == (0, 0, 0)


async def test_a_caller_who_hangs_up_in_the_menu_gets_one_cdr(db, campaign):
    async with agi_server(db) as server:
        commands = await run_call(server.port, "1700000000.12", hang_up_at(1))  # during the menu prompt
    assert sum(c.startswith("STREAM FILE") for c in commands) == 2
    [row] = await cdrs(db)
    assert (row["id"], row["outcome"], row["abandoned"], row["campaign_id"]) == (
        inbound_cdr_id("1700000000.12"),
        "self_service",
        False,
        campaign[0],
    )
    assert await db.fetchval("SELECT count(*) FROM dnc_entries") == 0
    assert [e["subject"] for e in await ended_events(db)] == [f"attempt:{row['id']}"]


async def test_an_unknown_caller_who_listens_to_the_end_gets_the_default_policy(db):
    async with agi_server(db) as server:
        commands = await run_call(server.port, "1700000000.13", lambda line, streams: "200 result=0", caller="")
    assert commands[-1] == 'STREAM FILE "vm-goodbye" ""'  # the menu gave up after its tries
    [row] = await cdrs(db)
    assert (row["outcome"], row["campaign_id"], row["contact_id"], row["caller_number"], row["caller_id"]) == (
        "self_service",
        None,
        None,
        None,
        LINE,
    )
    assert row["retention_until"] == cdr_deadline(row["created_at"], RetentionPolicy())


async def test_key_2_hands_the_caller_to_the_router_and_the_menu_writes_nothing(db, campaign):
    async with agi_server(db) as server:
        commands = await run_call(server.port, "1700000000.14", press("2"))
    assert 'SET VARIABLE "HITCALL_ROUTE" "agent"' in commands
    assert await cdrs(db) == []
    assert await ended_events(db) == []


async def test_key_2_then_hanging_up_before_the_handover_is_an_inbound_abandon(db, campaign):
    async with agi_server(db) as server:
        await run_call(server.port, "1700000000.15", hang_up_at(1, digit="2"))  # during "please hold"
    [row] = await cdrs(db)
    assert (row["direction"], row["outcome"], row["abandoned"]) == ("inbound", "abandoned", True)
    counts = await abandon_counts(db, campaign[0], "UTC")
    assert (counts["day_abandoned"], counts["period_abandoned"]) == (0, 0)
