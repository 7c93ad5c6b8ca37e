"""FastAGI scripts for the dialplan: ``lookup`` and ``optout``.

Each script is a thin layer over pure decisions (`lookup_variables`, `menu_action`,
`identification`) and the database functions `find_contact` and `record_opt_out`.

``lookup`` sets channel variables from the contact behind the caller id:
HITCALL_CONTACT_FOUND (1/0), HITCALL_CONTACT_ID, HITCALL_CONTACT_NAME,
HITCALL_CONTACT_EXTERNAL_ID, HITCALL_LIST_ID, HITCALL_CAMPAIGN (campaign id) and
HITCALL_CAMPAIGN_NAME.

``optout`` serves the return-call line that campaign caller ids point to: it sets
the lookup variables, identifies the company, then offers 1 = stop all marketing
calls to this number (sets HITCALL_OPTED_OUT=1), 2 = talk to an agent (sets
HITCALL_ROUTE=agent and returns to the dialplan, which hands the caller to the
service's inbound router in Stasis). HITCALL_CAMPAIGN is the contact's campaign, else
the campaign whose caller id was dialled, so that the router prefers its agents. The opt-out is committed before
the confirmation is played, so it applies before the next dial of every campaign; if
it cannot be recorded (database down) the caller is routed to an agent instead.

A return call that ends in the menu writes its one inbound CDR when the session ends
(`menu_cdr`, `record_menu_call`): outcome ``self_service`` (opted out, or listened and
hung up or gave up), or ``abandoned`` when the caller pressed 2 but hung up before being
handed over. Its id is `records.cdr.inbound_cdr_id` of ``agi_uniqueid``, the Asterisk
channel id the inbound router sees too; a caller handed to the router (key 2) gets no
row from the menu: the router writes it. The row and its ``call.ended`` webhook event are
written in one transaction, ``ON CONFLICT (id) DO NOTHING``, and the call's live row is
deleted in it. The live row (``live_attempts``, direction inbound) is queued through the
call journal when the menu has identified the caller, so that restart recovery closes a
call the service stopped following (`dialer.inbound`); only the dialing process, whose
journal the handlers get, writes live rows (a standalone ``hitcall agi`` writes none).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from ..core.outcomes import CallDirection, Outcome, menu_outcome
from ..core.phone import normalize_e164
from ..core.retention import RetentionPolicy, cdr_deadline
from ..dialer.calls import json_payload
from ..errors import ValidationFailed
from ..hooks.events import enqueue
from ..logs import get_logger
from ..records.cdr import COLUMNS, CdrRecord, inbound_cdr_id
from ..records.journal import CallJournal
from ..store import audit
from ..store.db import Executor
from .protocol import AgiSession
from .server import Handler

AUDIT_ACTOR = "agi"
OPT_OUT_DIGIT = "1"
AGENT_DIGIT = "2"

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

_log = get_logger("hitcall.agi")


@dataclass(frozen=True)
class CallerContact:
    id: int
    name: str | None
    external_id: str | None
    list_id: int
    campaign_id: int | None
    campaign_name: str | None


@dataclass(frozen=True)
class OptOutPrompts:
    """Sound names (Asterisk sounds, without extension) of the return-call line."""

    identify: tuple[str, ...] = ("hello-world",)
    menu: tuple[str, ...] = ("vm-options",)
    opted_out: tuple[str, ...] = ("removed", "vm-goodbye")
    agent: tuple[str, ...] = ("pls-hold-while-try",)
    invalid: tuple[str, ...] = ("pbx-invalid",)
    goodbye: tuple[str, ...] = ("vm-goodbye",)
    digit_timeout_ms: int = 5000
    max_tries: int = 3
    # The CDR deadline of a call that matched no campaign (the inbound router's default too).
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)


@dataclass(frozen=True)
class OptOutResult:
    dnc_entry_id: int
    contact_ids: list[int]
    event_ids: list[str]


class MenuAction(enum.StrEnum):
    OPT_OUT = "opt_out"
    AGENT = "agent"
    RETRY = "retry"
    GIVE_UP = "give_up"


# ------------------------------------------------------------------ pure core ---
def caller_number(raw: str | None) -> str | None:
    """The caller id in E.164, or None when hidden or not a valid number."""
    if not raw:
        return None
    try:
        return normalize_e164(raw, field="caller_id")
    except ValidationFailed:
        return None


def lookup_variables(contact: CallerContact | None) -> dict[str, str]:
    """Channel variables describing the caller's contact (all of them, so stale values are cleared)."""
    if contact is None:
        return {
            "HITCALL_CONTACT_FOUND": "0",
            "HITCALL_CONTACT_ID": "",
            "HITCALL_CONTACT_NAME": "",
            "HITCALL_CONTACT_EXTERNAL_ID": "",
            "HITCALL_LIST_ID": "",
            "HITCALL_CAMPAIGN": "",
            "HITCALL_CAMPAIGN_NAME": "",
        }
    return {
        "HITCALL_CONTACT_FOUND": "1",
        "HITCALL_CONTACT_ID": str(contact.id),
        "HITCALL_CONTACT_NAME": contact.name or "",
        "HITCALL_CONTACT_EXTERNAL_ID": contact.external_id or "",
        "HITCALL_LIST_ID": str(contact.list_id),
        "HITCALL_CAMPAIGN": "" if contact.campaign_id is None else str(contact.campaign_id),
        "HITCALL_CAMPAIGN_NAME": contact.campaign_name or "",
    }


def menu_action(digit: str | None, tries: int, *, max_tries: int, caller_known: bool) -> MenuAction:
    """What the return-call menu does with the key pressed on try number `tries` (1-based).

    Without a usable caller id there is no number to block, so 1 goes to an agent too.
    """
    if digit == AGENT_DIGIT or (digit == OPT_OUT_DIGIT and not caller_known):
        return MenuAction.AGENT
    if digit == OPT_OUT_DIGIT:
        return MenuAction.OPT_OUT
    return MenuAction.RETRY if tries < max_tries else MenuAction.GIVE_UP


def line_variables(contact: CallerContact | None, line_campaign: tuple[int, str] | None) -> dict[str, str]:
    """The lookup variables of the return-call line: the campaign is the contact's,
    else the one whose caller id the caller dialled."""
    variables = lookup_variables(contact)
    if not variables["HITCALL_CAMPAIGN"] and line_campaign is not None:
        variables["HITCALL_CAMPAIGN"], variables["HITCALL_CAMPAIGN_NAME"] = str(line_campaign[0]), line_campaign[1]
    return variables


def identification(info_message_sound: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """The company identification: the campaign's information message when it is an
    Asterisk sound (``sound:<name>``), else the default prompt."""
    if info_message_sound and info_message_sound.startswith("sound:"):
        return (info_message_sound.removeprefix("sound:"),)
    return default


@dataclass(frozen=True)
class MenuCall:
    """What the menu knows of a return call when its session ends."""

    channel_id: str
    started_at: datetime
    ended_at: datetime
    outcome: Outcome
    caller_number: str | None  # E.164, None when withheld or invalid
    line_number: str | None  # the number dialled, E.164
    campaign_id: int | None  # the campaign the caller or the line matched (checked against campaigns)
    contact_id: int | None
    campaign_retention: RetentionPolicy | None  # None: no campaign, the default policy applies


def menu_cdr(call: MenuCall, default_policy: RetentionPolicy) -> CdrRecord:
    """The inbound CDR of a return call that ended in the menu: answered_at = created_at
    (the dialplan answered before the menu), no agent, ring_s 0, talk_s the time in the
    menu; the deadline from the campaign's CDR policy, else `default_policy`."""
    ended = max(call.ended_at, call.started_at)
    return CdrRecord(
        id=inbound_cdr_id(call.channel_id),
        direction=CallDirection.INBOUND.value,
        campaign_id=call.campaign_id,
        contact_id=call.contact_id,
        attempt_no=None,
        dialled_number=None,
        caller_id=call.line_number,
        caller_number=call.caller_number,
        agent_id=None,
        mode=None,
        state="ended",
        created_at=call.started_at,
        answered_at=call.started_at,
        bridged_at=None,
        ended_at=ended,
        ring_s=Decimal(0),
        talk_s=Decimal(str(round((ended - call.started_at).total_seconds(), 3))),
        outcome=call.outcome.value,
        abandoned=call.outcome is Outcome.ABANDONED,
        retention_until=cdr_deadline(call.started_at, call.campaign_retention or default_policy),
    )


# ------------------------------------------------------------------ database ---
_FIND_CONTACT = """
SELECT c.id, c.name, c.external_id, c.list_id, cp.id AS campaign_id, cp.name AS campaign_name
FROM contacts c
LEFT JOIN campaign_lists cl ON cl.list_id = c.list_id
LEFT JOIN campaigns cp ON cp.id = cl.campaign_id
WHERE c.phone_e164 = $1 AND NOT c.processing_restricted
ORDER BY (SELECT max(a.created_at) FROM call_attempts a WHERE a.contact_id = c.id) DESC NULLS LAST,
         cp.state = 'running' DESC NULLS LAST, c.updated_at DESC, c.id DESC
LIMIT 1
"""

_LINE_CAMPAIGN = """
SELECT id, name, info_message_sound FROM campaigns WHERE caller_id = $1
ORDER BY state = 'running' DESC, updated_at DESC LIMIT 1
"""


async def find_contact(conn: Executor, phone_e164: str) -> CallerContact | None:
    """The contact a call from this number most likely concerns: the one called most
    recently, else one in a running campaign. Restricted contacts are never used."""
    row = await conn.fetchrow(_FIND_CONTACT, phone_e164)
    return None if row is None else CallerContact(**dict(row))


async def record_opt_out(pool: asyncpg.Pool, phone_e164: str, *, channel: str | None) -> OptOutResult:
    """Block every marketing call to the number, in one transaction: marketing
    prohibition on each contact with it, a global DNC entry (source ivr_optout), a
    contact.opted_out event per contact (one for the number when none) and an audit row."""
    async with pool.acquire() as conn, conn.transaction():
        contacts = await conn.fetch(
            """UPDATE contacts SET marketing_prohibited = true, marketing_permission = false
               WHERE phone_e164 = $1 RETURNING id, external_id, list_id""",
            phone_e164,
        )
        dnc_id = await conn.fetchval(
            """INSERT INTO dnc_entries (phone_e164, source, reason)
               VALUES ($1, 'ivr_optout', 'opted out on the return-call line')
               ON CONFLICT (phone_e164) WHERE campaign_id IS NULL
               DO UPDATE SET phone_e164 = EXCLUDED.phone_e164
               RETURNING id""",
            phone_e164,
        )
        base: dict[str, Any] = {"phone": phone_e164, "source": "ivr_optout", "dnc_entry_id": dnc_id}
        targets = [
            (f"contact:{c['id']}", {"contact_id": c["id"], "external_id": c["external_id"], "list_id": c["list_id"]})
            for c in sorted(contacts, key=lambda c: c["id"])
        ] or [(f"phone:{phone_e164}", {"contact_id": None, "external_id": None, "list_id": None})]
        event_ids = [
            str(await enqueue(conn, "contact.opted_out", subject, {**fields, **base})) for subject, fields in targets
        ]
        contact_ids = [c["id"] for c in contacts]
        await audit.record(
            conn,
            actor=AUDIT_ACTOR,
            actor_role="system",
            action="contact.opt_out",
            object_type="dnc_entry",
            object_id=dnc_id,
            details={"source": "ivr_optout", "contact_ids": sorted(contact_ids), "channel": channel},
        )
    return OptOutResult(dnc_entry_id=dnc_id, contact_ids=sorted(contact_ids), event_ids=event_ids)


_INSERT_CDR = (
    f"INSERT INTO call_attempts ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)


# The call's live row goes with its CDR (the erasure time when one reached it while live).
_RETIRE_LIVE_ROW = """WITH gone AS (DELETE FROM live_attempts WHERE id = $1 AND direction = 'inbound'
                                    RETURNING anonymised_at)
                      SELECT anonymised_at FROM gone"""
_ANONYMISE_CDR = """UPDATE call_attempts SET caller_number = NULL, contact_id = NULL,
                           anonymised_at = coalesce(anonymised_at, $2) WHERE id = $1"""


async def record_menu_call(
    pool: asyncpg.Pool,
    *,
    channel_id: str,
    started_at: datetime,
    outcome: Outcome,
    caller: str | None,
    line: str | None,
    campaign_id: int | None,
    contact_id: int | None,
    default_policy: RetentionPolicy,
) -> CdrRecord | None:
    """Write the menu call's CDR and its call.ended event in one transaction; None when
    the call already has its row (nothing written). A campaign id that names no campaign
    is dropped (the default policy applies)."""
    async with pool.acquire() as conn, conn.transaction():
        row = (
            await conn.fetchrow(
                "SELECT retention_recordings_months, retention_cdr_months FROM campaigns WHERE id = $1", campaign_id
            )
            if campaign_id is not None
            else None
        )
        record = menu_cdr(
            MenuCall(
                channel_id=channel_id,
                started_at=started_at,
                ended_at=datetime.now(UTC),
                outcome=outcome,
                caller_number=caller,
                line_number=line,
                campaign_id=campaign_id if row is not None else None,
                contact_id=contact_id,
                campaign_retention=RetentionPolicy(row[0], row[1]) if row is not None else None,
            ),
            default_policy,
        )
        inserted = await conn.fetchval(_INSERT_CDR, *record.to_row())
        anonymised_at = await conn.fetchval(_RETIRE_LIVE_ROW, record.id)
        if inserted is None:
            return None
        # As the router's call.ended (`dialer.calls.json_payload`): ids and times as strings, seconds as numbers.
        payload = json_payload(
            {name: float(v) if isinstance(v := getattr(record, name), Decimal) else v for name in COLUMNS}
        )
        if anonymised_at is not None:  # an erasure reached the call while it was live: so does it its CDR
            await conn.execute(_ANONYMISE_CDR, record.id, anonymised_at)
            payload.update(caller_number=None, contact_id=None)
        await enqueue(conn, "call.ended", f"attempt:{record.id}", payload)
    return record


# ------------------------------------------------------------------- scripts ---
async def _set_variables(agi: AgiSession, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        await agi.set_variable(name, value)


async def lookup(agi: AgiSession, pool: asyncpg.Pool) -> None:
    number = caller_number(agi.caller_id)
    await _set_variables(agi, lookup_variables(await find_contact(pool, number) if number else None))


@dataclass
class _MenuState:
    """What the menu did, for the CDR written when its session ends."""

    campaign_id: int | None = None
    contact_id: int | None = None
    asked_for_agent: bool = False
    handed_to_router: bool = False


async def _record_menu_call(
    agi: AgiSession,
    pool: asyncpg.Pool,
    prompts: OptOutPrompts,
    started_at: datetime,
    outcome: Outcome,
    number: str | None,
    state: _MenuState,
) -> None:
    """The menu call's CDR; a failure is logged, never raised into the session's end."""
    assert agi.uniqueid is not None
    try:
        record = await record_menu_call(
            pool,
            channel_id=agi.uniqueid,
            started_at=started_at,
            outcome=outcome,
            caller=number,
            line=caller_number(agi.extension),
            campaign_id=state.campaign_id,
            contact_id=state.contact_id,
            default_policy=prompts.retention,
        )
    except (*_DB_ERRORS, ValidationFailed) as exc:
        _log.error("agi_cdr_failed", channel=agi.uniqueid, error=f"{type(exc).__name__}: {exc}")
        return
    _log.info(
        "agi_cdr_recorded",
        channel=agi.uniqueid,
        attempt_id=None if record is None else str(record.id),
        outcome=str(outcome),
        written=record is not None,
    )


async def _menu_arrival(
    agi: AgiSession,
    pool: asyncpg.Pool,
    journal: CallJournal,
    prompts: OptOutPrompts,
    started_at: datetime,
    number: str | None,
    state: _MenuState,
    home: tuple[str, str] | None = None,
) -> None:
    """Queue the call's live row: its deadline from the campaign's CDR policy (the
    default policy when there is none or it cannot be read now); `home`: the pool and
    node of the process serving the menu (the Asterisk whose dialplan sends it here)."""
    assert agi.uniqueid is not None
    policy, campaign_id = prompts.retention, state.campaign_id
    if campaign_id is not None:
        try:
            row = await pool.fetchrow(
                "SELECT retention_recordings_months, retention_cdr_months FROM campaigns WHERE id = $1", campaign_id
            )
        except _DB_ERRORS as exc:
            _log.warning("agi_campaign_lookup_failed", channel=agi.uniqueid, error=f"{type(exc).__name__}: {exc}")
        else:
            campaign_id = None if row is None else campaign_id
            policy = RetentionPolicy(row[0], row[1]) if row is not None else policy
    journal.inbound_arrival(
        inbound_cdr_id(agi.uniqueid),
        campaign_id=campaign_id,
        contact_id=state.contact_id,
        caller_id=caller_number(agi.extension),
        caller_number=number,
        created_at=started_at,
        retention_until=cdr_deadline(started_at, policy),
        pool=home[0] if home else None,
        node_id=home[1] if home else None,
    )


async def _serve_menu(
    agi: AgiSession,
    pool: asyncpg.Pool,
    prompts: OptOutPrompts,
    number: str | None,
    state: _MenuState,
    arrived: Callable[[], Awaitable[None]] | None = None,
) -> None:
    dialled = caller_number(agi.extension)
    try:
        contact = await find_contact(pool, number) if number else None
        line = await pool.fetchrow(_LINE_CAMPAIGN, dialled) if dialled else None
    except _DB_ERRORS as exc:  # the line still identifies the company and offers an agent
        _log.error("agi_lookup_failed", channel=agi.uniqueid, error=f"{type(exc).__name__}: {exc}")
        contact, line = None, None
    sound = line["info_message_sound"] if line else None
    variables = line_variables(contact, (line["id"], line["name"]) if line else None)
    state.contact_id = contact.id if contact else None
    state.campaign_id = int(variables["HITCALL_CAMPAIGN"]) if variables["HITCALL_CAMPAIGN"] else None
    await _set_variables(agi, variables)
    if arrived is not None:
        await arrived()
    keys = OPT_OUT_DIGIT + AGENT_DIGIT
    digit = await agi.play(identification(sound, prompts.identify), keys)
    tries = 1
    while True:
        if digit is None:
            digit = await agi.play(prompts.menu, keys) or await agi.wait_for_digit(prompts.digit_timeout_ms)
        action = menu_action(digit, tries, max_tries=prompts.max_tries, caller_known=number is not None)
        _log.info(
            "agi_optout_menu",
            channel=agi.uniqueid,
            action=str(action),
            tries=tries,
            contact_id=contact.id if contact else None,
        )
        if action is MenuAction.OPT_OUT:
            assert number is not None
            try:
                result = await record_opt_out(pool, number, channel=agi.uniqueid)
            except _DB_ERRORS as exc:
                # Not recorded: hand the caller to a person rather than drop the request.
                _log.error("agi_opt_out_failed", channel=agi.uniqueid, error=f"{type(exc).__name__}: {exc}")
                action = MenuAction.AGENT
            else:
                _log.info(
                    "agi_opted_out",
                    channel=agi.uniqueid,
                    dnc_entry_id=result.dnc_entry_id,
                    contact_ids=result.contact_ids,
                )
                await agi.set_variable("HITCALL_OPTED_OUT", "1")
                await agi.play(prompts.opted_out)
                return
        if action is MenuAction.AGENT:
            state.asked_for_agent = True
            await agi.set_variable("HITCALL_ROUTE", "agent")
            await agi.play(prompts.agent)
            # Back in the dialplan, which hands the caller to the router (its CDR).
            state.handed_to_router = True
            return
        if action is MenuAction.GIVE_UP:
            await agi.play(prompts.goodbye)
            return
        if digit is not None:
            await agi.play(prompts.invalid)
        digit, tries = None, tries + 1


def optout_script(
    prompts: OptOutPrompts = OptOutPrompts(), journal: CallJournal | None = None, home: tuple[str, str] | None = None
) -> Handler:
    """The return-call line handler with the given prompts; with the dialing process's
    `journal`, each call gets its live row (`home`: its pool and node, see `_menu_arrival`)."""

    async def optout(agi: AgiSession, pool: asyncpg.Pool) -> None:
        started_at = datetime.now(UTC)
        number = caller_number(agi.caller_id)
        state = _MenuState()

        async def arrived() -> None:
            if journal is not None and agi.uniqueid:
                await _menu_arrival(agi, pool, journal, prompts, started_at, number, state, home)

        try:
            await _serve_menu(agi, pool, prompts, number, state, arrived)
        finally:
            # Also when the caller hangs up in the menu (AgiHangup) or the session is cut.
            outcome = menu_outcome(asked_for_agent=state.asked_for_agent, handed_to_router=state.handed_to_router)
            if outcome is not None and agi.uniqueid:
                await _record_menu_call(agi, pool, prompts, started_at, outcome, number, state)

    return optout


def default_handlers(
    prompts: OptOutPrompts = OptOutPrompts(), journal: CallJournal | None = None, home: tuple[str, str] | None = None
) -> dict[str, Handler]:
    """The scripts served by `AgiServer`: ``lookup`` and ``optout`` (`journal`: the
    dialing process's call journal, for the return calls' live rows; `home`: the pool and
    node they are written with: this node's home pool, the Asterisk whose dialplan points
    its FastAGI here)."""
    return {"lookup": lookup, "optout": optout_script(prompts, journal, home)}
