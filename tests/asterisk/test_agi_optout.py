"""FastAGI scripts driven by the real sandboxed Asterisk.

A call is originated into the product's [hitcall-inbound] context (the return-call
line, ``AGI(agi://127.0.0.1:4573/optout?secret=${HITCALL_AGI_SECRET})``, the sandbox's
secret) as ``Local/<number>@hitcall-inbound``
with the caller id under test; the ;1 half sits in our Stasis app and plays the
caller: it presses keys with ARI send_dtmf.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import pytest
from structlog.testing import capture_logs

from hitcall_pbx.agi import AgiServer, AgiSession, default_handlers
from hitcall_pbx.agi.scripts import lookup
from hitcall_pbx.ari import AriNotFound
from hitcall_pbx.core.retention import RetentionPolicy, cdr_deadline
from hitcall_pbx.records.cdr import inbound_cdr_id
from hitcall_pbx.settings import SANDBOX_AGI_SECRET

pytestmark = pytest.mark.asterisk

CALLER = "+358401234567"
RETURN_LINE = "0291234567"
AGI_PORT = 4573  # HITCALL_AGI in dialplan/extensions.conf


async def add_contact(db, list_name: str, *, name: str, permission: bool = False) -> int:
    list_id = await db.fetchval("INSERT INTO contact_lists (name) VALUES ($1) RETURNING id", list_name)
    return await db.fetchval(
        """INSERT INTO contacts (list_id, phone_e164, name, external_id, marketing_permission)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        list_id,
        CALLER,
        name,
        f"crm-{list_name}",
        permission,
    )


@asynccontextmanager
async def serve(db, handlers: Mapping, *, secret: str = SANDBOX_AGI_SECRET) -> AsyncIterator[AgiServer]:
    server = AgiServer(db, "127.0.0.1", AGI_PORT, handlers, secret=secret)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def call_return_line(ari, caller: str) -> str:
    cid = f"t-agi-{uuid.uuid4().hex[:10]}"
    await ari.rest.originate(
        f"Local/{RETURN_LINE}@hitcall-inbound",
        cid,
        app=ari.app,
        caller_id=caller,
        other_channel_id=f"{cid}-2",
        timeout=10,
    )
    await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == cid)
    return cid


async def press_until(ari, cid: str, digit: str, done: Callable[[], Awaitable[bool]]) -> None:
    """The caller presses `digit` every half second until the line has acted on it
    (keys pressed before the script listens are lost, as on a real phone)."""
    for _ in range(40):
        if await done():
            return
        with contextlib.suppress(AriNotFound):  # the line may hang up right after acting
            await ari.rest.send_dtmf(cid, digit)
        await asyncio.sleep(0.5)
    raise AssertionError(f"the line did not act on key {digit}")


async def test_caller_presses_1_and_every_campaign_stops_calling(ari, db):
    first = await add_contact(db, "spring", name="Maija", permission=True)
    second = await add_contact(db, "autumn", name="Maija M")
    other = await db.fetchval(
        "INSERT INTO contacts (list_id, phone_e164) SELECT id, '+358401111111' FROM contact_lists LIMIT 1 RETURNING id"
    )

    async with serve(db, default_handlers()):
        cid = await call_return_line(ari, CALLER)
        await press_until(ari, cid, "1", lambda: db.fetchval("SELECT count(*) > 0 FROM dnc_entries"))
        # The script confirms, returns to the dialplan, and the dialplan hangs up.
        await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid, timeout=20)

    contacts = await db.fetch("SELECT id, marketing_prohibited, marketing_permission FROM contacts ORDER BY id")
    assert [(r["id"], r["marketing_prohibited"], r["marketing_permission"]) for r in contacts] == [
        (first, True, False),
        (second, True, False),
        (other, False, False),
    ]

    [dnc] = await db.fetch("SELECT * FROM dnc_entries")
    assert (dnc["phone_e164"], dnc["campaign_id"], dnc["source"]) == (CALLER, None, "ivr_optout")

    [audit] = await db.fetch("SELECT * FROM audit_log WHERE action = 'contact.opt_out'")
    assert (audit["actor"], audit["actor_role"], audit["object_type"], audit["object_id"]) == (
        "agi",
        "system",
        "dnc_entry",
        str(dnc["id"]),
    )
    assert audit["details"]["contact_ids"] == [first, second]
    assert audit["details"]["channel"] == f"{cid}-2"
    assert CALLER not in str(audit["details"])  # no phone numbers in the append-only log

    # The call leaves exactly one inbound CDR, written by the menu (no agent, no router):
    # its id is that of the AGI's channel, the one Stasis would see.
    [cdr] = await db.fetch("SELECT * FROM call_attempts")
    assert cdr["id"] == inbound_cdr_id(f"{cid}-2")
    assert (cdr["direction"], cdr["outcome"], cdr["abandoned"], cdr["agent_id"], cdr["bridged_at"]) == (
        "inbound",
        "self_service",
        False,
        None,
        None,
    )
    assert (cdr["caller_number"], cdr["contact_id"], cdr["campaign_id"], cdr["dialled_number"]) == (
        CALLER,
        second,  # the lookup's contact: none called yet, the latest updated; neither list is in a campaign
        None,
        None,
    )
    assert cdr["created_at"] == cdr["answered_at"] < cdr["ended_at"]
    assert cdr["retention_until"] == cdr_deadline(cdr["created_at"], RetentionPolicy())

    events = await db.fetch("SELECT event_type, subject, payload FROM webhook_outbox ORDER BY id")
    assert [(e["event_type"], e["subject"]) for e in events] == [
        ("contact.opted_out", f"contact:{first}"),
        ("contact.opted_out", f"contact:{second}"),
        ("call.ended", f"attempt:{cdr['id']}"),
    ]
    assert (events[2]["payload"]["direction"], events[2]["payload"]["outcome"]) == ("inbound", "self_service")
    payload = events[0]["payload"]
    assert payload.pop("list_id") == await db.fetchval("SELECT list_id FROM contacts WHERE id = $1", first)
    assert payload == {
        "contact_id": first,
        "external_id": "crm-spring",
        "phone": CALLER,
        "source": "ivr_optout",
        "dnc_entry_id": dnc["id"],
    }


async def test_caller_presses_2_and_is_routed_to_an_agent(ari, db):
    contact = await add_contact(db, "spring", name="Maija")
    route: list[str | None] = []
    handlers = default_handlers()
    optout = handlers["optout"]

    async def optout_then_report(agi: AgiSession, pool) -> None:
        await optout(agi, pool)
        route.append(await agi.get_variable("HITCALL_ROUTE"))

    async with serve(db, {"optout": optout_then_report}):
        cid = await call_return_line(ari, CALLER)

        async def routed() -> bool:
            return bool(route)

        await press_until(ari, cid, "2", routed)
        # The dialplan hands the caller to the service's inbound router (test_inbound_route.py).
        handed = await ari.events_log.wait_for("StasisStart", lambda e: e.channel.id == f"{cid}-2", timeout=20)
        assert handed.args == ["inbound", "", str(contact)]
        await ari.rest.hangup(cid)
        await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid, timeout=20)
    assert route == ["agent"]
    # Handed to the router (not running here), which writes that call's CDR: none from the menu.
    assert await db.fetchval("SELECT count(*) FROM call_attempts") == 0
    assert await db.fetchval("SELECT count(*) FROM webhook_outbox WHERE event_type = 'call.ended'") == 0
    assert await db.fetchval("SELECT count(*) FROM dnc_entries") == 0
    assert await db.fetchval("SELECT bool_or(marketing_prohibited) FROM contacts") is False


async def test_lookup_sets_channel_variables_for_known_and_unknown_callers(ari, db):
    contact = await add_contact(db, "spring", name='Maija "M" Meikäläinen')
    campaign = await db.fetchval("INSERT INTO campaigns (name, mode) VALUES ('Spring', 'progressive') RETURNING id")
    await db.execute("INSERT INTO campaign_lists (campaign_id, list_id) SELECT $1, list_id FROM contacts", campaign)
    ready: asyncio.Queue[str] = asyncio.Queue()

    async def lookup_and_hold(agi: AgiSession, pool) -> None:
        await lookup(agi, pool)
        await ready.put(agi.uniqueid or "")
        await agi.wait_for_digit(15000)

    async with serve(db, {"optout": lookup_and_hold}):
        known = await call_return_line(ari, "0401234567")  # national form of CALLER
        channel = await asyncio.wait_for(ready.get(), 10)
        assert channel == f"{known}-2"
        values = {
            name: await ari.rest.get_variable(channel, name)
            for name in (
                "HITCALL_CONTACT_FOUND",
                "HITCALL_CONTACT_ID",
                "HITCALL_CONTACT_NAME",
                "HITCALL_CONTACT_EXTERNAL_ID",
                "HITCALL_CAMPAIGN",
                "HITCALL_CAMPAIGN_NAME",
            )
        }
        assert values == {
            "HITCALL_CONTACT_FOUND": "1",
            "HITCALL_CONTACT_ID": str(contact),
            "HITCALL_CONTACT_NAME": 'Maija "M" Meikäläinen',
            "HITCALL_CONTACT_EXTERNAL_ID": "crm-spring",
            "HITCALL_CAMPAIGN": str(campaign),
            "HITCALL_CAMPAIGN_NAME": "Spring",
        }
        await ari.rest.send_dtmf(known, "#")

        unknown = await call_return_line(ari, "+358409999999")
        channel = await asyncio.wait_for(ready.get(), 10)
        assert await ari.rest.get_variable(channel, "HITCALL_CONTACT_FOUND") == "0"
        assert await ari.rest.get_variable(channel, "HITCALL_CONTACT_ID") == ""
        await ari.rest.send_dtmf(unknown, "#")
        for cid in (known, unknown):
            await ari.events_log.wait_for("ChannelDestroyed", lambda e, c=cid: e.channel.id == c, timeout=20)


async def test_a_dialplan_with_another_secret_gets_nothing(ari, db):
    """The server's secret differs from the dialplan's: Asterisk's request is refused (and
    logged without either secret), nothing is looked up or opted out, and the dialplan goes
    on without HitCall's variables: the caller is hung up."""
    await add_contact(db, "spring", name="Maija")
    ran: list[str] = []

    async def must_not_run(agi: AgiSession, pool) -> None:
        ran.append(agi.script)

    with capture_logs() as logs:
        async with serve(db, {"optout": must_not_run, "lookup": must_not_run}, secret="not-the-dialplans-secret"):
            cid = await call_return_line(ari, CALLER)
            await ari.events_log.wait_for("ChannelDestroyed", lambda e: e.channel.id == cid, timeout=20)
    assert ran == []
    assert [e["reason"] for e in logs if e["event"] == "agi_refused"] == ["wrong_secret"]
    assert SANDBOX_AGI_SECRET not in repr(logs) and "not-the-dialplans-secret" not in repr(logs)
    assert await db.fetchval("SELECT count(*) FROM dnc_entries") == 0
