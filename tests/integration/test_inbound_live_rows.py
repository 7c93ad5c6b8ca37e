"""Inbound calls' live rows on real Postgres (migration 0017): the journal's arrival
operation (replayed, taken over by the router, after the CDR, naming a campaign or contact
that does not exist), the progress of an arrival in the same batch, the CDR writer and the
menu retiring the row, the recovery's read of the rows a stopped process left, and one
live attempt per contact for outbound rows only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hitcall_pbx.agents.sessions import AgentSessions
from hitcall_pbx.agi.scripts import record_menu_call
from hitcall_pbx.ari.client import Resync
from hitcall_pbx.ari.models import Channel
from hitcall_pbx.core.outcomes import Outcome
from hitcall_pbx.core.retention import RetentionPolicy, cdr_deadline
from hitcall_pbx.dialer.inbound import InboundOptions, InboundRouter, open_inbound_calls, untracked_cdr
from hitcall_pbx.errors import ValidationFailed
from hitcall_pbx.records.cdr import CdrRecord, inbound_cdr_id, write_cdrs
from hitcall_pbx.records.journal import CallJournal, InboundArrival, Progress, apply_ops
from tests.ari_fake import FakeAri

CALLER = "+358401234567"
LINE = "+358201234567"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _campaign(db: asyncpg.Pool) -> int:
    return await db.fetchval(
        "INSERT INTO campaigns (name, mode, caller_id) VALUES ($1, 'progressive', $2) RETURNING id",
        f"c-{uuid.uuid4().hex[:8]}",
        LINE,
    )


async def _contact(db: asyncpg.Pool, campaign: int) -> int:
    list_id = await db.fetchval("INSERT INTO contact_lists (name) VALUES ('l') RETURNING id")
    await db.execute("INSERT INTO campaign_lists (campaign_id, list_id) VALUES ($1, $2)", campaign, list_id)
    return await db.fetchval("INSERT INTO contacts (list_id, phone_e164) VALUES ($1, $2) RETURNING id", list_id, CALLER)


def arrival(channel: str, *, campaign: int | None, contact: int | None, at: datetime = T0) -> InboundArrival:
    return InboundArrival(
        attempt_id=inbound_cdr_id(channel),
        campaign_id=campaign,
        contact_id=contact,
        caller_id=LINE,
        caller_number=CALLER,
        created_at=at,
        retention_until=cdr_deadline(at, RetentionPolicy()),
    )


async def _apply(db: asyncpg.Pool, ops: list) -> None:
    async with db.acquire() as conn, conn.transaction():
        await apply_ops(conn, ops)


async def test_an_arrival_writes_the_live_row_and_its_replays_and_the_router_rewrite_keep_one(db: asyncpg.Pool):
    campaign = await _campaign(db)
    contact = await _contact(db, campaign)
    menu = arrival("1772442000.7", campaign=campaign, contact=contact)
    bridged = T0 + timedelta(seconds=9)
    await _apply(db, [menu, menu])  # a replay in the same batch
    await _apply(db, [menu])  # and after it
    router = arrival("1772442000.7", campaign=campaign, contact=contact, at=T0 + timedelta(seconds=6))
    progress = Progress(menu.attempt_id, "bridged", bridged, bridged, None, None)
    await _apply(db, [router, progress])  # the router's arrival and its bridge in one batch
    [row] = await db.fetch("SELECT * FROM live_attempts")
    assert (row["id"], row["direction"], row["state"]) == (menu.attempt_id, "inbound", "bridged")
    assert (row["campaign_id"], row["contact_id"], row["caller_number"], row["caller_id"]) == (
        campaign,
        contact,
        CALLER,
        LINE,
    )
    assert row["created_at"] == T0 + timedelta(seconds=6), "the router's arrival"
    assert row["bridged_at"] == row["answered_at"] == bridged
    assert (row["attempt_no"], row["mode"], row["dialled_number"]) == (None, None, None)


async def test_an_arrival_after_the_cdr_or_naming_nothing_known(db: asyncpg.Pool):
    # A campaign and a contact that do not exist are stored as NULL (the live row keeps its keys).
    await _apply(db, [arrival("chan-unknown", campaign=987654, contact=123456)])
    row = await db.fetchrow(
        "SELECT campaign_id, contact_id FROM live_attempts WHERE id = $1", inbound_cdr_id("chan-unknown")
    )
    assert (row["campaign_id"], row["contact_id"]) == (None, None)
    # The journal's row arriving after the call's CDR does not bring the call back to life.
    late = arrival("chan-late", campaign=None, contact=None)
    record = CdrRecord.from_row(untracked_cdr({**_live_defaults(late), "bridged_at": None}, T0 + timedelta(seconds=30)))
    async with db.acquire() as conn:
        await write_cdrs(conn, [record])
    await _apply(db, [late])
    assert await db.fetchval("SELECT count(*) FROM live_attempts WHERE id = $1", late.attempt_id) == 0


def _live_defaults(a: InboundArrival) -> dict:
    """A live inbound row as the arrival writes it (the columns a CDR record reads)."""
    return {
        "id": a.attempt_id,
        "direction": "inbound",
        "campaign_id": a.campaign_id,
        "contact_id": a.contact_id,
        "attempt_no": None,
        "dialled_number": None,
        "caller_id": a.caller_id,
        "caller_number": a.caller_number,
        "agent_id": None,
        "mode": None,
        "state": "answered",
        "created_at": a.created_at,
        "originated_at": None,
        "ringing_at": None,
        "answered_at": None,
        "bridged_at": None,
        "ended_at": None,
        "ring_s": None,
        "talk_s": None,
        "answer_to_bridge_ms": None,
        "outcome": None,
        "hangup_cause": None,
        "hangup_cause_txt": None,
        "amd_status": None,
        "amd_cause": None,
        "abandoned": False,
        "disposition": None,
        "skip_reason": None,
        "recording_id": None,
        "retention_until": a.retention_until,
    }


async def test_the_cdr_writer_retires_the_row_and_recovery_reads_only_open_calls(db: asyncpg.Pool):
    ended, stale, open_ = (arrival(c, campaign=None, contact=None) for c in ("c-ended", "c-stale", "c-open"))
    await _apply(db, [ended, open_])
    rows = {r["id"]: r for r in await db.fetch("SELECT * FROM live_attempts")}
    now = T0 + timedelta(minutes=2)
    async with db.acquire() as conn:
        await write_cdrs(conn, [CdrRecord.from_row(untracked_cdr(rows[ended.attempt_id], now))])
        # A call whose CDR and live row both exist: the row came in while the CDR was written.
        await write_cdrs(conn, [CdrRecord.from_row(untracked_cdr(_live_defaults(stale), now))])
        await conn.execute(
            "INSERT INTO live_attempts (id, direction, attempt_no, state, created_at, retention_until)"
            " VALUES ($1, 'inbound', NULL, 'answered', $2, $3)",
            stale.attempt_id,
            stale.created_at,
            stale.retention_until,
        )
    assert await db.fetchval("SELECT count(*) FROM live_attempts WHERE id = $1", ended.attempt_id) == 0
    [left] = await open_inbound_calls(db)
    assert left["id"] == open_.attempt_id
    assert await db.fetchval("SELECT count(*) FROM live_attempts WHERE id = $1", stale.attempt_id) == 0
    assert await db.fetchval("SELECT outcome FROM call_attempts WHERE id = $1", stale.attempt_id) == "untracked"


async def test_an_untracked_cdr_keeps_how_far_the_call_got(db: asyncpg.Pool):
    campaign = await _campaign(db)
    agent = await db.fetchval("INSERT INTO agents (number, name, endpoint) VALUES ('1001', 'a', 'a1') RETURNING id")
    a = arrival("c-talking", campaign=campaign, contact=None)
    bridged = T0 + timedelta(seconds=5)
    await _apply(db, [a, Progress(a.attempt_id, "bridged", bridged, bridged, agent, None)])
    row = await db.fetchrow("SELECT * FROM live_attempts WHERE id = $1", a.attempt_id)
    record = CdrRecord.from_row(untracked_cdr(row, T0 + timedelta(seconds=65)))
    assert (record.outcome, record.agent_id, record.bridged_at, record.answered_at) == (
        Outcome.UNTRACKED,
        agent,
        bridged,
        bridged,
    )
    assert (float(record.ring_s), float(record.talk_s), record.abandoned) == (5.0, 60.0, False)
    async with db.acquire() as conn:
        await write_cdrs(conn, [record])
    stored = await db.fetchrow("SELECT * FROM call_attempts WHERE id = $1", a.attempt_id)
    assert (stored["outcome"], stored["direction"], stored["campaign_id"]) == ("untracked", "inbound", campaign)
    assert not await db.fetchval("SELECT count(*) FROM live_attempts")
    # Outbound rows can never say untracked.
    with pytest.raises(ValidationFailed, match="inbound outcome"):
        CdrRecord.from_row(
            {**dict(stored), "direction": "outbound", "attempt_no": 1, "mode": "progressive", "caller_number": None}
        )


async def test_the_menu_retires_its_live_row_and_carries_an_erasure(db: asyncpg.Pool):
    for channel, erased in (("m-1", False), ("m-2", True)):
        a = arrival(channel, campaign=None, contact=None)
        await _apply(db, [a])
        if erased:
            await db.execute(
                "UPDATE live_attempts SET caller_number = NULL, anonymised_at = now() WHERE id = $1", a.attempt_id
            )
        record = await record_menu_call(
            db,
            channel_id=channel,
            started_at=datetime.now(UTC) - timedelta(seconds=8),
            outcome=Outcome.SELF_SERVICE,
            caller=CALLER,
            line=LINE,
            campaign_id=None,
            contact_id=None,
            default_policy=RetentionPolicy(),
        )
        assert record is not None and record.id == a.attempt_id
        assert not await db.fetchval("SELECT count(*) FROM live_attempts WHERE id = $1", a.attempt_id)
        row = await db.fetchrow("SELECT caller_number, anonymised_at FROM call_attempts WHERE id = $1", a.attempt_id)
        assert (row["caller_number"] is None, row["anonymised_at"] is not None) == (erased, erased)
        [payload] = await db.fetch(
            "SELECT payload FROM webhook_outbox WHERE event_type = 'call.ended' AND subject = $1",
            f"attempt:{a.attempt_id}",
        )
        assert (payload["payload"]["caller_number"] is None) is erased


async def test_one_live_attempt_per_contact_guards_outbound_rows_only(db: asyncpg.Pool):
    campaign = await _campaign(db)
    contact = await _contact(db, campaign)
    insert = (
        "INSERT INTO live_attempts (id, campaign_id, contact_id, attempt_no, caller_id, mode, state, created_at,"
        " retention_until) VALUES ($1, $2, $3, 1, $4, 'progressive', 'originating', $5, $6)"
    )
    await db.execute(insert, uuid.uuid4(), campaign, contact, LINE, T0, T0 + timedelta(days=90))
    # The contact calls the return-call line twice while HitCall dials them.
    await _apply(db, [arrival(c, campaign=campaign, contact=contact) for c in ("r-1", "r-2")])
    assert await db.fetchval("SELECT count(*) FROM live_attempts WHERE contact_id = $1", contact) == 3
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, uuid.uuid4(), campaign, contact, LINE, T0, T0 + timedelta(days=90))


class _Cdrs:
    """The router's CDR sink: what it submits."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def submit(self, record: dict) -> None:
        self.records.append(record)


def _stasis_channel(channel_id: str) -> Channel:
    return Channel.model_validate(
        {
            "id": channel_id,
            "protocol_id": "",
            "name": "PJSIP/trunk-00000007",
            "state": "Up",
            "caller": {"name": "", "number": CALLER},
            "connected": {"name": "", "number": ""},
            "accountcode": "",
            "dialplan": {
                "context": "hitcall-inbound",
                "exten": "0201234567",
                "priority": 6,
                "app_name": "Stasis",
                "app_data": "hitcall,inbound,,",
            },
            "creationtime": "2026-03-02T09:00:00.000+0000",
            "language": "en",
        }
    )


async def test_recovery_closes_a_gone_call_and_one_that_hung_up_while_it_was_adopted(db: asyncpg.Pool):
    """The router's recovery with a fake Asterisk: a row whose channel is not in the
    snapshot is closed as untracked; a caller in the snapshot is adopted, and when Asterisk
    no longer lists it right after (it hung up before its events reached the router), it
    is finished as the caller who hung up waiting, its wait from its first arrival."""
    ari = FakeAri()
    journal = CallJournal(db)
    sessions = AgentSessions(ari, db, journal=journal)
    cdrs = _Cdrs()
    router = InboundRouter(ari, db, sessions, InboundOptions(max_wait_s=60), cdr=cdrs)
    now = datetime.now(UTC)
    gone, raced = (
        arrival(c, campaign=None, contact=None, at=now - timedelta(seconds=30)) for c in ("c-gone", "c-raced")
    )
    await _apply(db, [gone, raced])
    snap = Resync(channels=[_stasis_channel("c-raced")], bridges=[], reconnect=False, downtime_s=None)
    await router.recover(snap)  # the fake Asterisk lists no channel when asked again
    by_id = {r["id"]: r for r in cdrs.records}
    assert set(by_id) == {gone.attempt_id, raced.attempt_id}
    assert by_id[gone.attempt_id]["outcome"] == "untracked"
    assert (by_id[raced.attempt_id]["outcome"], by_id[raced.attempt_id]["created_at"]) == (
        "abandoned",
        raced.created_at,
    )
    assert float(by_id[raced.attempt_id]["ring_s"]) >= 30
    assert not router.calls and not router.waiting
    assert [r.method for r in ari.rest.requests].count("channel_states") == 1


async def test_a_live_row_no_one_follows_is_closed_once_its_channel_is_gone_at_two_checks(db: asyncpg.Pool):
    ari = FakeAri()
    up: dict[str, tuple[str, str]] = {"c-menu": ("Up", "AGI")}  # a caller still in the FastAGI menu

    async def channel_states() -> dict[str, tuple[str, str]]:
        return dict(up)

    ari.rest.channel_states = channel_states  # type: ignore[method-assign]  # the channels Asterisk lists
    cdrs = _Cdrs()
    router = InboundRouter(
        ari, db, AgentSessions(ari, db, journal=CallJournal(db)), InboundOptions(orphan_check_s=0), cdr=cdrs
    )
    orphan, menu = (arrival(c, campaign=None, contact=None) for c in ("c-orphan", "c-menu"))
    await _apply(db, [orphan, menu])
    await router.sweep_orphans()
    assert cdrs.records == [], "gone once: not yet"
    await router.sweep_orphans()
    [record] = cdrs.records
    assert (record["id"], record["outcome"]) == (orphan.attempt_id, "untracked")
    await router.sweep_orphans()
    assert len(cdrs.records) == 1, "closed once"
    up.clear()  # the menu's caller hangs up and the menu writes its CDR (its live row goes with it)
    await record_menu_call(
        db,
        channel_id="c-menu",
        started_at=datetime.now(UTC) - timedelta(seconds=5),
        outcome=Outcome.SELF_SERVICE,
        caller=CALLER,
        line=LINE,
        campaign_id=None,
        contact_id=None,
        default_policy=RetentionPolicy(),
    )
    await router.sweep_orphans()
    await router.sweep_orphans()
    assert len(cdrs.records) == 1, "the menu's call has its own CDR"
