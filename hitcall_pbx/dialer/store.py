"""The SQL the dialer runs outside the call journal: running campaigns, the abandon
history that seeds pacing, preview offers, and restart recovery. Call-path writes
(progress, CDRs, contact bookkeeping, events) go through the journal and the CDR
writer instead, so that a PostgreSQL outage never stops a call."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Protocol

import asyncpg

from ..core import pacing
from ..core.dispositions import contact_effect
from ..core.leases import DEFAULT_POOL, PoolClaim
from ..core.outcomes import ContactUpdate
from ..hooks.events import enqueue
from ..records.cdr import ATTEMPT_TABLES
from ..store import dispositions
from ..store.db import Connection
from .hopper import Hopper
from .models import Attempt, Campaign

# A row of pool $1 (rows written before several nodes have no pool: the default pool's).
IN_POOL = "coalesce(pool, '" + DEFAULT_POOL + "') = $1"

# A contact given back undialled: a scheduled callback stays one.
BACK_TO_HOPPER = "CASE WHEN callback_at IS NOT NULL THEN 'callback' WHEN attempts > 0 THEN 'retry' ELSE 'new' END"


class CallStore(Protocol):
    """What the dialer reads and writes in PostgreSQL outside the call journal (the port
    its parts take; `DialerStore` is the PostgreSQL adapter)."""

    pool: asyncpg.Pool

    async def running_campaigns(self) -> dict[int, Campaign]: ...

    async def campaign(self, campaign_id: int) -> Campaign: ...

    async def abandon_tallies(self, campaign_id: int) -> dict[date, pacing.AbandonTally]: ...

    async def open_offer(
        self, campaign: Campaign, agent_id: int, now: datetime, *, personal_only: bool = False
    ) -> tuple[int, asyncpg.Record, dict[str, Any]] | None: ...

    async def agents_with_callbacks(self, campaign: Campaign, now: datetime, agents: list[int]) -> list[int]: ...

    async def decide_offer(
        self,
        *,
        offer_id: int,
        campaign: Campaign,
        contact_id: int,
        agent_id: int,
        accept: bool,
        decision: str,
        reason: str | None,
        now: datetime,
    ) -> tuple[Attempt | None, str, str | None]: ...

    async def open_attempts(self) -> list[asyncpg.Record]: ...

    async def close_recovered_contact(
        self, contact_id: int, attempt_no: int, update: ContactUpdate, outcome: str
    ) -> None: ...

    async def reset_after_restart(self) -> None: ...


class DialerStore:
    def __init__(self, pool: asyncpg.Pool, hopper: Hopper, *, claim: PoolClaim | None = None) -> None:
        """`claim`: the pool this dialer drives and the node (None: no cluster, the default
        pool): rows it writes carry them, and restart recovery touches only that pool's rows
        (rows without a pool belong to the default pool)."""
        self.pool = pool
        self.hopper = hopper
        self.claim = claim
        self.pool_name = claim.pool if claim is not None else DEFAULT_POOL
        self.node_id = claim.node_id if claim is not None else None

    # ------------------------------------------------------- campaigns ---
    async def running_campaigns(self) -> dict[int, Campaign]:
        rows = await self.pool.fetch("SELECT * FROM campaigns WHERE state = 'running'")
        return {r["id"]: Campaign.from_row(r) for r in rows}

    async def campaign(self, campaign_id: int) -> Campaign:
        return Campaign.from_row(await self.pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id))

    async def abandon_tallies(self, campaign_id: int) -> dict[date, pacing.AbandonTally]:
        """The campaign's abandon counts per UTC day over the last 30 days."""
        rows = await self.pool.fetch(
            """SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                      count(*) FILTER (WHERE abandoned) AS abandoned,
                      count(*) FILTER (WHERE outcome = 'answered_human') AS connected,
                      count(*) FILTER (WHERE outcome = 'answered_machine') AS machines
               FROM call_attempts
               WHERE campaign_id = $1 AND direction = 'outbound' AND created_at >= now() - interval '30 days'
               GROUP BY 1""",
            campaign_id,
        )
        return {r["day"]: pacing.AbandonTally(r["abandoned"], r["connected"], r["machines"]) for r in rows}

    # -------------------------------------------------------- previews ---
    async def open_offer(
        self, campaign: Campaign, agent_id: int, now: datetime, *, personal_only: bool = False
    ) -> tuple[int, asyncpg.Record, dict[str, Any]] | None:
        """Claim the next contact for a preview offer to `agent_id` (`personal_only`: only a
        due personal callback of that agent): the offer row and its `preview.offered` event
        in one transaction. None when nothing is due."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.hopper.claim_one(campaign, now, conn, agent_id, personal_only=personal_only)
            if row is None:
                return None
            offer_id = await conn.fetchval(
                """INSERT INTO preview_offers (agent_id, campaign_id, contact_id, expires_at, pool, node_id)
                   VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6) RETURNING id""",
                agent_id,
                campaign.id,
                row["id"],
                campaign.preview_offer_timeout_s,
                self.pool_name,
                self.node_id,
            )
            contact = {
                "name": row["name"],
                "title": row["title"],
                "organisation": row["organisation"],
                "extra": row["extra"],
            }
            await enqueue(
                conn,
                "preview.offered",
                f"agent:{agent_id}",
                {
                    "offer_id": offer_id,
                    "agent_id": agent_id,
                    "campaign_id": campaign.id,
                    "contact_id": row["id"],
                    "number": row["phone_e164"],
                    "contact": contact,
                    "expires_in_s": campaign.preview_offer_timeout_s,
                    "callback": row["status"] == "callback",
                },
            )
        return offer_id, row, contact

    async def agents_with_callbacks(self, campaign: Campaign, now: datetime, agents: list[int]) -> list[int]:
        """Those of `agents` with a personal callback of the campaign due now."""
        return await self.hopper.agents_with_callbacks(campaign, now, agents)

    async def decide_offer(
        self,
        *,
        offer_id: int,
        campaign: Campaign,
        contact_id: int,
        agent_id: int,
        accept: bool,
        decision: str,
        reason: str | None,
        now: datetime,
    ) -> tuple[Attempt | None, str, str | None]:
        """Close an offer: accepted, its attempt row (committed before originate); else
        the contact goes back to the hopper behind the contacts already due. Returns the
        attempt and the decision and reason as stored."""
        attempt: Attempt | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            open_ = await conn.fetchval(
                "SELECT 1 FROM preview_offers WHERE id = $1 AND decision IS NULL FOR UPDATE", offer_id
            )
            if open_ is None:
                # Closed meanwhile by the pool's next holder (this node lost the pool): its
                # contact is that node's now.
                return None, "timeout", None
            if accept:
                attempt = await self.hopper.attempt_for_contact(conn, campaign, contact_id, now, agent_id)
            if attempt is None:
                skipped = decision == "skip"  # by the agent (an accept that found no call is not postponed)
                decision = "skip" if decision == "accept" else decision
                # A callback the agent skips waits the campaign's delay (it is first in callback
                # order: without it, it would be offered again at once); the skip stays on the offer.
                await conn.execute(
                    f"""UPDATE contacts SET status = {BACK_TO_HOPPER}, next_attempt_at = $2,
                           callback_at = CASE
                               WHEN $3 AND callback_at IS NOT NULL
                               THEN greatest(callback_at, $2::timestamptz + make_interval(secs => $4::float8))
                               ELSE callback_at END
                       WHERE id = $1 AND status = 'in_progress'""",
                    contact_id,
                    now,
                    skipped,
                    float(campaign.callback_skip_delay_s),
                )
            await conn.execute(
                """UPDATE preview_offers SET decision = $2, decided_at = now(), skip_reason = $3, attempt_id = $4
                   WHERE id = $1""",
                offer_id,
                decision,
                reason if decision == "skip" else None,
                attempt.id if attempt else None,
            )
        return attempt, decision, reason

    # -------------------------------------------------------- recovery ---
    async def open_attempts(self) -> list[asyncpg.Record]:
        """Outbound attempts of this pool left open (the inbound router recovers inbound
        calls' rows), taken over by this node (their node_id is now this node's)."""
        rows = await self.pool.fetch(
            f"""UPDATE live_attempts SET pool = $1, node_id = coalesce($2, node_id)
                WHERE direction = 'outbound' AND {IN_POOL} RETURNING *""",
            self.pool_name,
            self.node_id,
        )
        return sorted(rows, key=lambda r: r["created_at"])

    async def close_recovered_contact(
        self, contact_id: int, attempt_no: int, update: ContactUpdate, outcome: str
    ) -> None:
        """The contact of an attempt closed by recovery, by the same rule as a call that
        ended normally: a callback stays scheduled when the call never reached the customer,
        else the callback that was due is done (reached) or missed."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not update.never_reached:
                await conn.execute(
                    """UPDATE callbacks b
                       SET state = CASE WHEN $3 = 'answered_human' THEN 'done' ELSE 'missed' END, closed_at = now()
                       FROM contacts c
                       WHERE b.contact_id = $1 AND c.id = $1 AND b.state = 'scheduled' AND b.due_at <= now()
                         AND c.status = 'in_progress' AND c.attempts = $2""",
                    contact_id,
                    attempt_no,
                    outcome,
                )
            await self._close_contact(conn, contact_id, attempt_no, update, outcome)
            await self._apply_stored_disposition(conn, contact_id, attempt_no)

    @staticmethod
    async def _apply_stored_disposition(conn: Connection, contact_id: int, attempt_no: int) -> None:
        """A disposition the agent gave during the call, before the restart: its rule still
        decides the contact's next step (the engine applies it when a call ends)."""
        for table in ATTEMPT_TABLES:
            r = await conn.fetchrow(
                f"""SELECT id, campaign_id, contact_id, attempt_no, dialled_number, agent_id, disposition
                    FROM {table} WHERE contact_id = $1 AND attempt_no = $2 AND disposition IS NOT NULL""",
                contact_id,
                attempt_no,
            )
            if r is not None:
                break
        else:
            return
        codes = {d.code: d for d in await dispositions.load(conn, r["campaign_id"])}
        d = codes.get(r["disposition"])
        if d is not None:
            ref = dispositions.AttemptRef(
                r["id"], r["campaign_id"], r["contact_id"], r["attempt_no"], r["dialled_number"], r["agent_id"]
            )
            await dispositions.apply_contact_effect(conn, ref, contact_effect(d, datetime.now(UTC)), code=d.code)

    @staticmethod
    async def _close_contact(
        conn: Connection, contact_id: int, attempt_no: int, update: ContactUpdate, outcome: str
    ) -> None:
        await conn.execute(
            """UPDATE contacts SET
                   status = CASE WHEN $4 AND callback_at IS NOT NULL THEN 'callback' ELSE $2 END,
                   next_attempt_at = $3, last_outcome = $6,
                   callback_at = CASE WHEN $4 THEN callback_at END,
                   callback_agent_id = CASE WHEN $4 THEN callback_agent_id END
               WHERE id = $1 AND status = 'in_progress' AND attempts = $5""",
            contact_id,
            update.status.value,
            update.retry_at,
            update.never_reached,
            attempt_no,
            outcome,
        )

    async def reset_after_restart(self) -> None:
        """What a stopped holder of this pool left open and nobody can finish: its offers
        time out, contacts in progress with neither an open attempt nor an open offer whose
        last attempt was on this pool go back to the hopper, the pool's agents' open state
        rows end and its agents are logged out (their phones re-attach at resync). Other
        pools' rows are another node's: untouched."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"""UPDATE preview_offers SET decision = 'timeout', decided_at = now()
                    WHERE decision IS NULL AND {IN_POOL}""",
                self.pool_name,
            )
            # The contact's latest attempt or offer says which pool had it (none, or one
            # without a pool: the default pool's, as before several nodes). A contact of
            # another pool whose call just ended may be in progress for a moment between its
            # CDR and its closing: not this pool's to touch.
            await conn.execute(
                f"""UPDATE contacts c SET status = {BACK_TO_HOPPER}
                   WHERE status = 'in_progress'
                     AND NOT EXISTS (SELECT 1 FROM live_attempts a
                                     WHERE a.contact_id = c.id AND a.direction = 'outbound')
                     AND NOT EXISTS (SELECT 1 FROM preview_offers p
                                     WHERE p.contact_id = c.id AND p.decision IS NULL)
                     AND coalesce((SELECT coalesce(x.pool, $2) FROM (
                                       SELECT a.pool, a.created_at AS at FROM call_attempts a
                                       WHERE a.contact_id = c.id AND a.direction = 'outbound'
                                       UNION ALL
                                       SELECT p.pool, p.offered_at FROM preview_offers p WHERE p.contact_id = c.id
                                   ) x ORDER BY x.at DESC LIMIT 1), $2) = $1""",
                self.pool_name,
                DEFAULT_POOL,
            )
            await conn.execute(
                f"""UPDATE agent_state_log SET ended_at = now()
                    WHERE ended_at IS NULL
                      AND agent_id IN (SELECT id FROM agents WHERE {IN_POOL})""",
                self.pool_name,
            )
            await conn.execute(
                f"""UPDATE agents SET state = 'logged_out', pause_code = NULL, state_since = now()
                    WHERE state <> 'logged_out' AND {IN_POOL}""",
                self.pool_name,
            )
