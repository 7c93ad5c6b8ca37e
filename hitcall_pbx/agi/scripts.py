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
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..core.phone import normalize_e164
from ..errors import ValidationFailed
from ..hooks.events import enqueue
from ..logs import get_logger
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


# ------------------------------------------------------------------- scripts ---
async def _set_variables(agi: AgiSession, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        await agi.set_variable(name, value)


async def lookup(agi: AgiSession, pool: asyncpg.Pool) -> None:
    number = caller_number(agi.caller_id)
    await _set_variables(agi, lookup_variables(await find_contact(pool, number) if number else None))


def optout_script(prompts: OptOutPrompts = OptOutPrompts()) -> Handler:
    """The return-call line handler with the given prompts."""

    async def optout(agi: AgiSession, pool: asyncpg.Pool) -> None:
        number = caller_number(agi.caller_id)
        dialled = caller_number(agi.extension)
        try:
            contact = await find_contact(pool, number) if number else None
            line = await pool.fetchrow(_LINE_CAMPAIGN, dialled) if dialled else None
        except _DB_ERRORS as exc:  # the line still identifies the company and offers an agent
            _log.error("agi_lookup_failed", channel=agi.uniqueid, error=f"{type(exc).__name__}: {exc}")
            contact, line = None, None
        sound = line["info_message_sound"] if line else None
        await _set_variables(agi, line_variables(contact, (line["id"], line["name"]) if line else None))
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
                await agi.set_variable("HITCALL_ROUTE", "agent")
                await agi.play(prompts.agent)
                return
            if action is MenuAction.GIVE_UP:
                await agi.play(prompts.goodbye)
                return
            if digit is not None:
                await agi.play(prompts.invalid)
            digit, tries = None, tries + 1

    return optout


def default_handlers(prompts: OptOutPrompts = OptOutPrompts()) -> dict[str, Handler]:
    """The scripts served by `AgiServer`: ``lookup`` and ``optout``."""
    return {"lookup": lookup, "optout": optout_script(prompts)}
