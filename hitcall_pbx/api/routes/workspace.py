"""What an agent's screen shows: the customer card of the agent's call or preview offer,
the agent's notes on that customer, and the agent's own day. An agent sees only its own
card; every card read is audited (personal data)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from ...auth import Role
from ...core.phone import callee_timezone
from ...errors import Conflict, NotFound
from ..registry import V1, Ctx, Registry
from ..repos import agents as agents_repo
from ..types import In, Out

CONTROL = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT})
HISTORY_LIMIT = 20


class CardAttempt(Out):
    attempt_id: uuid.UUID
    at: datetime
    outcome: str | None
    disposition: str | None
    agent_name: str | None
    talk_s: float | None


class CardDisposition(Out):
    code: str
    label_fi: str
    label_en: str
    rule: str = Field(description="final, retry, callback (needs callback_at), do_not_call, wrong_number, recycle")
    phone_key: str | None = None


class Card(Out):
    kind: Literal["call", "offer", "wrap_up"] = Field(
        description="call: the agent's live call; offer: an open preview offer; wrap_up: the call just ended"
    )
    attempt_id: uuid.UUID | None = None
    offer_id: int | None = None
    offered_at: datetime | None = None
    expires_at: datetime | None = Field(default=None, description="preview: when the offer times out")
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    campaign_id: int
    campaign_name: str
    wrap_up_s: int = Field(description="the campaign's wrap-up time after a call")
    contact_id: int | None = Field(description="none: a number the agent dialled by hand (no contact)")
    external_id: str | None
    name: str | None
    title: str | None
    organisation: str | None
    phone: str
    earlier_numbers: list[str]
    email: str | None
    timezone: str = Field(description="the contact's local time zone (a callback is picked in it)")
    marketing_permission: bool
    marketing_prohibited: bool
    extra: dict[str, Any]
    notes: str | None
    disposition: str | None = Field(default=None, description="the disposition given to this call so far")
    callback_at: datetime | None = Field(default=None, description="the contact's scheduled callback")
    history: list[CardAttempt] = Field(description="earlier attempts, newest first (not this call)")
    dispositions: list[CardDisposition] = Field(description="the campaign's disposition codes")


class NotesIn(In):
    notes: str = Field(max_length=4000, description="replaces the agent's notes on the card's contact")


class AgentDay(Out):
    agent_id: int
    day_start: datetime = Field(description="midnight in the caller's time zone")
    calls: int = Field(description="calls put through to the agent today")
    talk_s: float
    callbacks_due: int = Field(description="callbacks reserved for the agent, due by the end of today")


async def _user_zone(ctx: Ctx) -> ZoneInfo:
    name = await ctx.pool.fetchval("SELECT timezone FROM users WHERE id = $1", ctx.me.user_id)
    try:
        return ZoneInfo(name or "Europe/Helsinki")
    except (KeyError, ValueError):
        return ZoneInfo("Europe/Helsinki")


async def _card_source(ctx: Ctx, agent_id: int) -> dict[str, Any]:
    """Which contact the agent's card shows: the live call, the open offer, or (in wrap-up)
    the call that just ended."""
    calls = await ctx.deps.dialer.live_calls(agent_id=agent_id)
    live = next((c for c in calls if c.contact_id is not None), None)
    if live is not None:
        assert live.contact_id is not None
        return {
            "kind": "call",
            "attempt_id": live.attempt_id,
            "campaign_id": live.campaign_id,
            "contact_id": live.contact_id,
            "answered_at": live.answered_at,
            "bridged_at": live.bridged_at,
        }
    if calls:  # a number dialled by hand: a call without a contact
        call = calls[0]
        return {
            "kind": "call",
            "attempt_id": call.attempt_id,
            "campaign_id": call.campaign_id,
            "contact_id": None,
            "number": call.number or "",
            "answered_at": call.answered_at,
            "bridged_at": call.bridged_at,
        }
    offer = await agents_repo.open_offer(ctx.pool, agent_id)
    if offer is not None:
        return {
            "kind": "offer",
            "offer_id": offer["id"],
            "offered_at": offer["offered_at"],
            "expires_at": offer["expires_at"],
            "campaign_id": offer["campaign_id"],
            "contact_id": offer["contact_id"],
        }
    state = await ctx.pool.fetchval("SELECT state FROM agents WHERE id = $1", agent_id)
    if state == "wrap_up":
        last = await ctx.pool.fetchrow(
            """SELECT id, campaign_id, contact_id, dialled_number, answered_at, bridged_at FROM all_attempts
               WHERE agent_id = $1 AND bridged_at IS NOT NULL
               ORDER BY bridged_at DESC LIMIT 1""",
            agent_id,
        )
        if last is not None:
            return {
                "kind": "wrap_up",
                "attempt_id": last["id"],
                "campaign_id": last["campaign_id"],
                "contact_id": last["contact_id"],
                "answered_at": last["answered_at"],
                "bridged_at": last["bridged_at"],
            } | ({"number": last["dialled_number"]} if last["contact_id"] is None else {})
    raise NotFound("the agent has no call, offer or call in wrap-up", code="no_card", details={"agent_id": agent_id})


async def _card_without_contact(ctx: Ctx, agent_id: int, source: dict[str, Any]) -> Card:
    """The card of a number the agent dialled by hand: the number, the campaign and its codes."""
    number = source.pop("number")
    async with ctx.pool.acquire() as conn:
        campaign = await conn.fetchrow("SELECT name, wrap_up_s FROM campaigns WHERE id = $1", source["campaign_id"])
        disposition = await conn.fetchval("SELECT disposition FROM all_attempts WHERE id = $1", source["attempt_id"])
        codes = await conn.fetch(
            """SELECT code, label_fi, label_en, rule, phone_key FROM campaign_dispositions
               WHERE campaign_id = $1 ORDER BY position, code""",
            source["campaign_id"],
        )
        await ctx.audit(conn, "call.view", "call", str(source["attempt_id"]), {"agent_id": agent_id, "card": "call"})
    return Card(
        **source,
        campaign_name=campaign["name"] if campaign else "",
        wrap_up_s=campaign["wrap_up_s"] if campaign else 0,
        external_id=None,
        name=None,
        title=None,
        organisation=None,
        phone=number,
        earlier_numbers=[],
        email=None,
        timezone=callee_timezone(number, None),
        marketing_permission=False,
        marketing_prohibited=False,
        extra={},
        notes=None,
        disposition=disposition,
        history=[],
        dispositions=[CardDisposition.model_validate(dict(d)) for d in codes],
    )


def register(reg: Registry) -> None:
    @reg.add(
        "GET",
        f"{V1}/agents/{{agent_id}}/card",
        summary="The customer card of the agent's call or preview offer",
        tag="agents",
        roles=CONTROL,
        scope="agents:read",
        own_agent=True,
        response=Card,
        description="The contact of the agent's live call, else of its open preview offer, else (in wrap-up) of"
        " the call that just ended, with the history of earlier attempts. 404 no_card otherwise. Each read is"
        " audited as contact.view.",
    )
    async def get_agent_card(ctx: Ctx) -> Card:
        agent_id = ctx.params["agent_id"]
        source = await _card_source(ctx, agent_id)
        if source["contact_id"] is None:
            return await _card_without_contact(ctx, agent_id, source)
        async with ctx.pool.acquire() as conn:
            contact = await conn.fetchrow("SELECT * FROM contacts WHERE id = $1", source["contact_id"])
            if contact is None:
                raise NotFound("the card's contact no longer exists", code="no_card")
            campaign = await conn.fetchrow("SELECT name, wrap_up_s FROM campaigns WHERE id = $1", source["campaign_id"])
            numbers = await conn.fetch(
                "SELECT phone_e164 FROM contact_number_history WHERE contact_id = $1 ORDER BY replaced_at DESC",
                contact["id"],
            )
            history = await conn.fetch(
                """SELECT a.id, coalesce(a.ended_at, a.created_at) AS at, a.outcome, a.disposition, a.talk_s,
                          g.name AS agent_name
                   FROM all_attempts a LEFT JOIN agents g ON g.id = a.agent_id
                   WHERE a.contact_id = $1 AND a.state = 'ended' AND a.id IS DISTINCT FROM $3
                   ORDER BY a.created_at DESC LIMIT $2""",
                contact["id"],
                HISTORY_LIMIT,
                source.get("attempt_id"),
            )
            disposition = None
            if source.get("attempt_id") is not None:
                disposition = await conn.fetchval(
                    "SELECT disposition FROM all_attempts WHERE id = $1", source["attempt_id"]
                )
            codes = await conn.fetch(
                """SELECT code, label_fi, label_en, rule, phone_key FROM campaign_dispositions
                   WHERE campaign_id = $1 ORDER BY position, code""",
                source["campaign_id"],
            )
            await ctx.audit(
                conn, "contact.view", "contact", contact["id"], {"agent_id": agent_id, "card": source["kind"]}
            )
        return Card(
            **source,
            campaign_name=campaign["name"] if campaign else "",
            wrap_up_s=campaign["wrap_up_s"] if campaign else 0,
            external_id=contact["external_id"],
            name=contact["name"],
            title=contact["title"],
            organisation=contact["organisation"],
            phone=contact["phone_e164"],
            earlier_numbers=[r["phone_e164"] for r in numbers],
            email=contact["email"],
            timezone=callee_timezone(contact["phone_e164"], contact["timezone"]),
            marketing_permission=contact["marketing_permission"],
            marketing_prohibited=contact["marketing_prohibited"],
            extra=dict(contact["extra"] or {}),
            notes=contact["notes"],
            disposition=disposition,
            callback_at=contact["callback_at"],
            history=[
                CardAttempt(
                    attempt_id=r["id"],
                    at=r["at"],
                    outcome=r["outcome"],
                    disposition=r["disposition"],
                    agent_name=r["agent_name"],
                    talk_s=None if r["talk_s"] is None else float(r["talk_s"]),
                )
                for r in history
            ],
            dispositions=[CardDisposition.model_validate(dict(d)) for d in codes],
        )

    @reg.add(
        "PUT",
        f"{V1}/agents/{{agent_id}}/card/notes",
        summary="Replace the notes on the card's contact",
        tag="agents",
        roles=CONTROL,
        scope="agents:control",
        own_agent=True,
        body=NotesIn,
        description="The contact of the agent's current card (see GET …/card); audited as contact.notes.",
    )
    async def set_card_notes(ctx: Ctx) -> None:
        agent_id = ctx.params["agent_id"]
        source = await _card_source(ctx, agent_id)
        if source["contact_id"] is None:
            raise Conflict("a number dialled by hand has no contact to keep notes on", code="no_contact")
        notes = ctx.body.notes.strip() or None
        async with ctx.tx() as conn:
            await conn.execute("UPDATE contacts SET notes = $2 WHERE id = $1", source["contact_id"], notes)
            await ctx.audit(conn, "contact.notes", "contact", source["contact_id"], {"agent_id": agent_id})

    @reg.add(
        "GET",
        f"{V1}/agents/{{agent_id}}/day",
        summary="The agent's own day: calls, talk time, callbacks due",
        tag="agents",
        roles=CONTROL,
        scope="agents:read",
        own_agent=True,
        response=AgentDay,
        description="Today is the day in the caller's time zone (the user's setting, default Europe/Helsinki).",
    )
    async def get_agent_day(ctx: Ctx) -> AgentDay:
        agent_id = ctx.params["agent_id"]
        zone = await _user_zone(ctx)
        local = datetime.now(UTC).astimezone(zone)
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # the next local midnight (DST-safe)
        async with ctx.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT count(*) AS calls, coalesce(sum(talk_s), 0) AS talk_s FROM all_attempts
                   WHERE agent_id = $1 AND bridged_at >= $2 AND bridged_at < $3""",
                agent_id,
                start,
                end,
            )
            due = await conn.fetchval(
                """SELECT count(*) FROM contacts
                   WHERE callback_agent_id = $1 AND status = 'callback' AND callback_at < $2""",
                agent_id,
                end,
            )
        assert row is not None  # an aggregate: always one row
        return AgentDay(
            agent_id=agent_id, day_start=start, calls=row["calls"], talk_s=float(row["talk_s"]), callbacks_due=due
        )
