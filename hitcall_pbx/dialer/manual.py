"""Manual dial: an agent dials a number, or one contact of a campaign, and the call is
that agent's.

The number passes the pre-dial rules every attempt passes (`core.manual_dial`, on top of
`core.compliance.check_dial`), read in the transaction that creates the attempt row; a
refusal writes nothing and dials nothing. The agent must be logged in and ready or
paused: a paused agent is unpaused for the call. The agent is reserved for the attempt
before the row commits (nothing else can take the agent meanwhile), and the call goes
through the engine's one originate path (`Dialer._originate`): the same outbound
dialplan, one originate per attempt id, the live row for restart recovery and resync,
a CDR (mode ``manual``) and the webhook events of any call. When the customer answers,
only that agent takes the call (`connect.AnswerPath`); if the agent has gone, the
customer hears the campaign's information message like any customer no agent took.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from ..agents.sessions import AgentSession
from ..core.compliance import salted_number_hash
from ..core.manual_dial import NumberFacts, manual_dial_verdict, refusal_message
from ..core.outcomes import CallMode
from ..core.retention import cdr_deadline
from ..core.states import AgentState
from ..errors import Conflict, NotFound, Unavailable, ValidationFailed
from ..logs import get_logger
from ..store.db import Connection
from .hopper import claim_values, inserted_rows, lease_held, stale
from .models import Attempt, Campaign

if TYPE_CHECKING:
    from .engine import Dialer

log = get_logger("hitcall.dialer")

# What the store knows about a number, for the pre-dial check (the hopper reads the same
# facts for its candidates): do-not-call entries, an objection or a restriction on any
# contact with the number, the last abandoned call to it.
_NUMBER_FACTS = """
SELECT EXISTS (SELECT 1 FROM dnc_entries d WHERE d.phone_e164 = $1 AND d.campaign_id IS NULL) AS dnc_global,
       EXISTS (SELECT 1 FROM dnc_entries d WHERE d.phone_e164 = $1 AND d.campaign_id = $2) AS dnc_campaign,
       EXISTS (SELECT 1 FROM contacts o WHERE o.phone_e164 = $1 AND o.marketing_prohibited) AS marketing_prohibited,
       EXISTS (SELECT 1 FROM contacts o WHERE o.phone_e164 = $1 AND o.processing_restricted) AS processing_restricted,
       (SELECT max(coalesce(a.ended_at, a.answered_at)) FROM call_attempts a
         WHERE a.dialled_number = $1 AND a.abandoned) AS last_abandoned_at
"""
_CONTACT = """
SELECT c.id, c.phone_e164, c.timezone, c.status, c.attempts, c.lost_attempts, c.name, c.title, c.organisation,
       c.extra, cl.campaign_id
FROM contacts c LEFT JOIN campaign_lists cl ON cl.list_id = c.list_id
WHERE c.id = $1
FOR UPDATE OF c
"""


@dataclass(frozen=True)
class ManualTarget:
    """What the agent asked to dial: a number in a campaign, or a contact (its campaign
    is the one its list belongs to; `campaign_id`, when given too, must be that one)."""

    campaign_id: int | None = None
    number: str | None = None
    contact_id: int | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class ManualDial:
    def __init__(self, dialer: Dialer) -> None:
        self.d = dialer

    def _available(self, agent_id: int) -> AgentSession:
        """The agent's session, free for a manual call (ready or paused), else 409."""
        session = self.d.sessions.by_agent.get(agent_id)
        if session is None or session.pin_pending:
            raise Conflict(
                "the agent is not logged in on a phone", code="agent_not_available", details={"agent_id": agent_id}
            )
        if session.state not in (AgentState.READY, AgentState.PAUSED):
            raise Conflict(
                f"the agent is {session.state.value.replace('_', ' ')}: a manual dial needs a ready or paused agent",
                code="agent_not_available",
                details={"agent_id": agent_id, "state": session.state.value},
            )
        return session

    async def dial(self, agent_id: int, target: ManualTarget) -> Attempt:
        """Check, write the attempt, reserve the agent and dial; the attempt dialled."""
        d = self.d
        if target.number is None and target.contact_id is None:
            raise ValidationFailed("give a number or a contact_id", details={"field": "number"})
        if target.number is not None and target.contact_id is not None:
            raise ValidationFailed("give a number or a contact_id, not both", details={"field": "contact_id"})
        why_not = d.fenced()
        if why_not is None and (not d.ari.connected.is_set() or not d.recovery.recovered):
            why_not = "not connected to Asterisk"
        if why_not is not None:
            raise Unavailable(f"the dialer cannot dial now: {why_not}", code="dialer_unavailable")
        self._available(agent_id)
        pause_code: str | None = None
        reserved: str | None = None
        try:
            async with d.pool.acquire() as conn, conn.transaction():
                campaign, number, contact = await self._resolve(conn, target)
                if campaign.id not in self._available(agent_id).campaigns:
                    raise ValidationFailed(
                        f"agent {agent_id} does not work on campaign {campaign.id}",
                        details={"field": "campaign_id", "agent_id": agent_id, "campaign_id": campaign.id},
                    )
                now = _now()
                await self._check(conn, campaign, number, contact, now)
                attempt = await self._insert(conn, campaign, number, contact, agent_id, now)
                # No await from here to the reservation: nothing else can take the agent.
                session = self._available(agent_id)
                if session.state is AgentState.PAUSED:
                    pause_code = session.fsm.pause_code
                    if d.sessions.unpause(agent_id) is not AgentState.READY or session.attempt_id is not None:
                        # it took a waiting customer on becoming ready
                        raise Conflict(
                            "the agent took another call", code="agent_not_available", details={"agent_id": agent_id}
                        )
                d.sessions.reserve(session, attempt.channel_id, campaign.id)
                reserved = attempt.channel_id
        except BaseException as exc:
            self._give_back(agent_id, reserved, pause_code)
            if isinstance(exc, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                raise Unavailable(f"the database is unavailable: {exc}", code="database_unavailable") from None
            raise
        try:
            await d.pacer.track(campaign)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("manual.stats_unavailable", campaign_id=campaign.id)
        session_now = d.sessions.by_agent.get(agent_id)
        if session_now is not session or session.attempt_id != attempt.channel_id:
            # The agent went away while the row committed: the attempt ends undialled.
            d._cancel_undialled(campaign, attempt)
            raise Conflict("the agent logged out", code="agent_not_available", details={"agent_id": agent_id})
        log.info(
            "manual.dial", agent_id=agent_id, attempt_id=str(attempt.id), campaign_id=campaign.id, contact_id=contact
        )
        d._originate(campaign, attempt, session)
        return attempt

    def _give_back(self, agent_id: int, attempt_id: str | None, pause_code: str | None) -> None:
        """Undo the reservation of a dial that did not happen; a paused agent is paused again."""
        session = self.d.sessions.by_agent.get(agent_id)
        if session is None:
            return
        if attempt_id is not None and session.state is AgentState.RESERVED and session.attempt_id == attempt_id:
            self.d.sessions.release(session)
        if pause_code is not None and session.state is AgentState.READY:
            self.d.sessions.pause(agent_id, pause_code)

    async def _resolve(self, conn: Connection, target: ManualTarget) -> tuple[Campaign, str, Any]:
        """(campaign, E.164 number, contact row or None), or 404/422/409 naming the field."""
        contact = None
        campaign_id = target.campaign_id
        if target.contact_id is not None:
            contact = await conn.fetchrow(_CONTACT, target.contact_id)
            if contact is None:
                raise NotFound(f"contact {target.contact_id} not found", details={"field": "contact_id"})
            if contact["campaign_id"] is None or (campaign_id is not None and campaign_id != contact["campaign_id"]):
                raise ValidationFailed(
                    "the contact is in no list of this campaign"
                    if campaign_id is not None
                    else "the contact's list belongs to no campaign",
                    details={"field": "contact_id"},
                )
            if contact["status"] == "in_progress":
                raise Conflict(
                    "the contact is being called or offered right now",
                    code="contact_busy",
                    details={"field": "contact_id"},
                )
            campaign_id = contact["campaign_id"]
        if campaign_id is None:
            raise ValidationFailed("campaign_id is required to dial a number", details={"field": "campaign_id"})
        row = await conn.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
        if row is None:
            raise NotFound(f"campaign {campaign_id} not found", details={"field": "campaign_id"})
        if row["state"] not in ("running", "paused") or row["caller_id"] is None:
            raise Conflict(
                f"campaign {campaign_id} is {row['state']}: manual dials need a running or paused campaign",
                code="campaign_not_active",
                details={"field": "campaign_id"},
            )
        number = contact["phone_e164"] if contact is not None else target.number
        assert number is not None
        return Campaign.from_row(row), number, contact

    async def _check(self, conn: Connection, campaign: Campaign, number: str, contact: Any, now: datetime) -> None:
        row = await conn.fetchrow(_NUMBER_FACTS, number, campaign.id)
        assert row is not None  # a SELECT without FROM returns one row
        salt = bytes(await conn.fetchval("SELECT suppression_salt FROM installation"))
        suppressed = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM suppression_hashes WHERE hash = $1)", salted_number_hash(number, salt)
        )
        facts = NumberFacts(
            suppressed=suppressed,
            processing_restricted=row["processing_restricted"],
            dnc_global=row["dnc_global"],
            marketing_prohibited=row["marketing_prohibited"],
            dnc_campaign=row["dnc_campaign"],
            last_abandoned_at=row["last_abandoned_at"],
            contact_tz=contact["timezone"] if contact is not None else None,
        )
        verdict = manual_dial_verdict(number, now, facts, campaign.window)
        if verdict.allowed:
            return
        assert verdict.reason is not None
        details: dict[str, Any] = {
            "field": "contact_id" if contact is not None else "number",
            "reason": verdict.reason.value,
        }
        if verdict.retry_at is not None:
            details["retry_at"] = verdict.retry_at.isoformat()
        raise Conflict(f"not dialled: {refusal_message(verdict.reason)}", code="dial_refused", details=details)

    async def _insert(
        self, conn: Connection, campaign: Campaign, number: str, contact: Any, agent_id: int, now: datetime
    ) -> Attempt:
        attempt = Attempt(
            id=uuid.uuid4(),
            campaign_id=campaign.id,
            contact_id=contact["id"] if contact is not None else None,
            attempt_no=contact["attempts"] + 1 if contact is not None else 1,
            lost_before=contact["lost_attempts"] if contact is not None else 0,
            number=number,
            caller_id=campaign.caller_id or "",
            agent_id=agent_id,
            mode=CallMode.MANUAL,
            created_at=now,
            retention_until=cdr_deadline(now, campaign.retention),
            contact={k: contact[k] for k in ("name", "title", "organisation", "extra")} if contact is not None else {},
        )
        claim = self.d.hopper.claim
        pool, node, token, lease = claim_values(claim)
        status = await conn.execute(
            """INSERT INTO live_attempts (id, campaign_id, contact_id, attempt_no, dialled_number, caller_id,
                                          agent_id, mode, state, created_at, retention_until, pool, node_id)
               SELECT $1::uuid, $2::bigint, $3::bigint, $4::int, $5::text, $6::text, $7::bigint, 'manual',
                      'originating', $8::timestamptz, $9::timestamptz, $10::text, $11::text
               WHERE """
            + lease_held("$13", "$11", "$12"),
            attempt.id,
            campaign.id,
            attempt.contact_id,
            attempt.attempt_no,
            number,
            attempt.caller_id,
            agent_id,
            now,
            attempt.retention_until,
            pool,
            node,
            token,
            lease,
        )
        error = stale(claim, inserted_rows(status), 1)
        if error is not None:
            raise error  # the transaction rolls back; the agent is given back
        if contact is not None:
            await conn.execute(
                "UPDATE contacts SET status = 'in_progress', attempts = attempts + 1 WHERE id = $1", contact["id"]
            )
        return attempt
