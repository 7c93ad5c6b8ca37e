"""The hopper: the next contacts to dial, taken from Postgres with SKIP LOCKED.

Several service processes can take from the same campaign at once and never
take the same contact. Due callbacks come first; a callback that names an agent is
taken only for that agent while they are ready (its attempt carries the agent id, and
the dialer reserves that agent for it). Every candidate passes the pure pre-dial check
(core.compliance.check_dial) inside the same transaction that creates its
attempt row, so the attempt id exists in Postgres before anything is dialled.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from ..core.compliance import DialContext, DialReason, DialVerdict, check_dial, salted_number_hash
from ..core.leases import PoolClaim
from ..core.retention import cdr_deadline
from ..errors import Unavailable
from ..hooks.events import enqueue
from ..logs import get_logger
from ..store.db import Connection
from .models import Attempt, Campaign

log = get_logger("hitcall.hopper")

# Reasons that end the contact for good, and the contact status they leave.
_FINAL_STATUS = {
    DialReason.SUPPRESSED: "dnc",
    DialReason.PROCESSING_RESTRICTED: "dnc",
    DialReason.DNC_GLOBAL: "dnc",
    DialReason.MARKETING_PROHIBITED: "dnc",
    DialReason.DNC_CAMPAIGN: "dnc",
    DialReason.MAX_ATTEMPTS: "failed",
}

# A callback names an agent who can take it here (assigned to the campaign, not disabled,
# and logged in or the callback not yet past the campaign's grace, $5 seconds), else it is
# for any agent of the campaign: it must not wait for someone who never comes
# (core.callbacks.personal_holds).
_CALLBACK_AGENT_HERE = """EXISTS (SELECT 1 FROM agent_campaigns ac JOIN agents ag ON ag.id = ac.agent_id
                             WHERE ac.agent_id = {c}.callback_agent_id AND ac.campaign_id = $1 AND NOT ag.disabled
                               AND (ag.state <> 'logged_out'
                                    OR {c}.callback_at + make_interval(secs => $5::float8) > $2::timestamptz))"""
_CANDIDATES_TEMPLATE = (
    """
SELECT c.id, c.phone_e164, c.name, c.timezone, c.attempts, c.lost_attempts, c.next_attempt_at, c.status,
       CASE WHEN """
    + _CALLBACK_AGENT_HERE.format(c="c")
    + """ THEN c.callback_agent_id END AS callback_agent_id,
       c.marketing_prohibited, c.processing_restricted, c.extra, c.title, c.organisation,
       EXISTS (SELECT 1 FROM dnc_entries d WHERE d.phone_e164 = c.phone_e164 AND d.campaign_id IS NULL)
           AS dnc_global,
       EXISTS (SELECT 1 FROM dnc_entries d WHERE d.phone_e164 = c.phone_e164 AND d.campaign_id = $1)
           AS dnc_campaign,
       EXISTS (SELECT 1 FROM contacts o WHERE o.phone_e164 = c.phone_e164 AND o.id <> c.id
               AND (o.marketing_prohibited OR o.processing_restricted)) AS prohibited_elsewhere,
       (SELECT max(coalesce(a.ended_at, a.answered_at)) FROM call_attempts a
         WHERE a.dialled_number = c.phone_e164 AND a.abandoned) AS last_abandoned_at
FROM contacts c
WHERE c.id IN (
    SELECT c2.id FROM contacts c2
    JOIN campaign_lists cl ON cl.list_id = c2.list_id AND cl.campaign_id = $1
    WHERE {where}
    ORDER BY (c2.status = 'callback') DESC, c2.callback_at NULLS LAST, c2.next_attempt_at NULLS FIRST, c2.id
    LIMIT $3
    FOR UPDATE OF c2 SKIP LOCKED
)
ORDER BY (c.status = 'callback') DESC, c.next_attempt_at NULLS FIRST, c.id
"""
)
# Due contacts of the campaign; callbacks first, those for one agent only while that agent is ready ($4).
_CANDIDATES = _CANDIDATES_TEMPLATE.format(
    where="(c2.status IN ('new', 'retry') AND (c2.next_attempt_at IS NULL OR c2.next_attempt_at <= $2))"
    " OR (c2.status = 'callback' AND c2.callback_at <= $2"
    " AND (c2.callback_agent_id IS NULL OR c2.callback_agent_id = ANY($4::bigint[])"
    " OR NOT " + _CALLBACK_AGENT_HERE.format(c="c2") + "))"
)
# One contact already held by a preview offer.
_OFFERED = _CANDIDATES_TEMPLATE.format(where="c2.id = $4 AND c2.status = 'in_progress' AND $2::timestamptz IS NOT NULL")
# Due personal callbacks of the agents $4 (offered to their agent in every mode).
_PERSONAL = _CANDIDATES_TEMPLATE.format(
    where="c2.status = 'callback' AND c2.callback_at <= $2 AND c2.callback_agent_id = ANY($4::bigint[]) AND "
    + _CALLBACK_AGENT_HERE.format(c="c2")
)
_AGENTS_WITH_CALLBACKS = (
    """SELECT DISTINCT c.callback_agent_id FROM contacts c
       JOIN campaign_lists cl ON cl.list_id = c.list_id AND cl.campaign_id = $1
       WHERE c.status = 'callback' AND c.callback_at <= $2 AND c.callback_agent_id = ANY($4::bigint[]) AND """
    + _CALLBACK_AGENT_HERE.format(c="c")
    + " LIMIT $3"
)


class StaleLease(Unavailable):
    """The pool's lease is no longer this node's with this token: nothing may be dialled."""

    code = "stale_lease"


# The originate claim's fencing check (in the INSERT of the live attempt itself): the row is
# inserted only while the pool's lease has this node and token ($lease, $node, $token; a
# NULL token: no cluster, as in tests of one part). One primary-key look-up per statement.
def lease_held(lease: str, node: str, fence: str) -> str:
    """The check, with the statement's parameters for the lease name, node id and token."""
    return (
        f"({fence}::bigint IS NULL OR EXISTS (SELECT 1 FROM leases l WHERE l.name = {lease} AND l.node_id = {node}"
        f" AND l.token = {fence} AND l.lease_until > now()))"
    )


def claim_values(claim: PoolClaim | None) -> tuple[str | None, str | None, int | None, str | None]:
    """(pool, node id, token, lease name) for the originate claim's statement."""
    if claim is None:
        return None, None, None, None
    return claim.pool, claim.node_id, claim.token, claim.lease


def stale(claim: PoolClaim | None, inserted: int, expected: int) -> StaleLease | None:
    """The error when the claim's statement inserted fewer rows than it was given (logged)."""
    if inserted == expected:
        return None
    pool, node, token, _ = claim_values(claim)
    log.error("dialer.stale_lease", pool=pool, node_id=node, token=token, not_dialled=expected - inserted)
    return StaleLease(
        f"pool {pool}: this node no longer holds the pool's lease with token {token}; nothing is dialled",
        details={"pool": pool, "node_id": node, "token": token},
    )


def inserted_rows(status: str) -> int:
    """The row count of an INSERT's command status ("INSERT 0 <n>")."""
    return int(status.rsplit(" ", 1)[-1])


@dataclass
class TakeResult:
    attempts: list[Attempt] = field(default_factory=list)
    blocked: dict[str, int] = field(default_factory=dict)
    candidates: int = 0


class Hopper:
    def __init__(self, pool: asyncpg.Pool, *, claim: PoolClaim | None = None) -> None:
        """`claim`: the pool this hopper dials on, the node and its fencing token (None: no
        cluster, tests of one part): every attempt row carries the pool and node, and is
        inserted only while the pool's lease still has that node and token."""
        self.pool = pool
        self.claim = claim
        self._salt: bytes | None = None

    async def _suppression_salt(self, conn: Connection) -> bytes:
        if self._salt is None:
            self._salt = bytes(await conn.fetchval("SELECT suppression_salt FROM installation"))
        return self._salt

    async def take(self, campaign: Campaign, n: int, now: datetime, *, ready_agents: Sequence[int] = ()) -> TakeResult:
        """Create up to `n` attempts (rows committed) for contacts that may be dialled now.

        A callback for one of `ready_agents` gets an attempt with that agent's id (at most
        one per agent); callbacks for other agents wait."""
        result = TakeResult()
        if n <= 0:
            return result
        async with self.pool.acquire() as conn, conn.transaction():
            allowed = await self._select(conn, campaign, n, now, result, ready_agents)
            result.attempts = await self._create_attempts(
                conn,
                campaign,
                [(r, r["callback_agent_id"] if r["status"] == "callback" else None) for r in allowed],
                now,
            )
        return result

    async def agents_with_callbacks(self, campaign: Campaign, now: datetime, agents: Sequence[int]) -> list[int]:
        """Those of `agents` who have a personal callback of the campaign due now."""
        if not agents:
            return []
        rows = await self.pool.fetch(
            _AGENTS_WITH_CALLBACKS, campaign.id, now, len(agents), list(agents), float(campaign.callback_grace_s)
        )
        return [r[0] for r in rows]

    async def claim_one(
        self, campaign: Campaign, now: datetime, conn: Connection, agent_id: int, *, personal_only: bool = False
    ) -> asyncpg.Record | None:
        """Lock one dialable contact for `agent_id` in the caller's transaction (preview
        offers; `personal_only`: only a due personal callback of that agent) and mark it in
        progress."""
        result = TakeResult()
        if personal_only:
            rows = await conn.fetch(_PERSONAL, campaign.id, now, 1, [agent_id], float(campaign.callback_grace_s))
            allowed = await self._check(conn, campaign, rows, 1, now, result)
        else:
            allowed = await self._select(conn, campaign, 1, now, result, [agent_id])
        if not allowed:
            return None
        row = allowed[0]
        await conn.execute("UPDATE contacts SET status = 'in_progress' WHERE id = $1", row["id"])
        return row

    async def attempt_for_contact(
        self, conn: Connection, campaign: Campaign, contact_id: int, now: datetime, agent_id: int
    ) -> Attempt | None:
        """An accepted preview offer: the contact is re-checked (an opt-out may have
        arrived while the agent looked at it) and its attempt row created."""
        rows = await conn.fetch(_OFFERED, campaign.id, now, 1, contact_id, float(campaign.callback_grace_s))
        result = TakeResult()
        allowed = await self._check(conn, campaign, rows, 1, now, result)
        return (await self._create_attempts(conn, campaign, [(allowed[0], agent_id)], now))[0] if allowed else None

    async def _select(
        self,
        conn: Connection,
        campaign: Campaign,
        n: int,
        now: datetime,
        result: TakeResult,
        ready_agents: Sequence[int],
    ) -> list[asyncpg.Record]:
        # Take a few more than needed: some candidates may be blocked by the checks.
        rows = await conn.fetch(
            _CANDIDATES, campaign.id, now, n + max(2, n // 2), list(ready_agents), float(campaign.callback_grace_s)
        )
        return await self._check(conn, campaign, rows, n, now, result)

    async def _check(
        self,
        conn: Connection,
        campaign: Campaign,
        rows: list[asyncpg.Record],
        n: int,
        now: datetime,
        result: TakeResult,
    ) -> list[asyncpg.Record]:
        result.candidates = len(rows)
        salt = await self._suppression_salt(conn)
        hashes = {r["id"]: salted_number_hash(r["phone_e164"], salt) for r in rows}
        suppressed = set()
        if hashes:
            found = await conn.fetch(
                "SELECT hash FROM suppression_hashes WHERE hash = ANY($1::text[])", list(hashes.values())
            )
            suppressed = {r["hash"] for r in found}
        allowed: list[asyncpg.Record] = []
        agents_taken: set[int] = set()
        for r in rows:
            callback = r["status"] == "callback"
            if callback and r["callback_agent_id"] is not None:
                if r["callback_agent_id"] in agents_taken:
                    continue  # one callback per agent at a time; the next waits for the agent
                agents_taken.add(r["callback_agent_id"])
            verdict = check_dial(
                DialContext(
                    phone=r["phone_e164"],
                    now=now,
                    mode=campaign.mode,
                    max_attempts=campaign.max_attempts,
                    # An attempt HitCall lost track of does not count against the customer; nor
                    # do the attempts before a callback the customer asked for.
                    attempts=0 if callback else r["attempts"] - r["lost_attempts"],
                    contact_tz=r["timezone"],
                    marketing_prohibited=r["marketing_prohibited"] or r["prohibited_elsewhere"],
                    processing_restricted=r["processing_restricted"],
                    dnc_global=r["dnc_global"],
                    dnc_campaign=r["dnc_campaign"],
                    suppressed=hashes[r["id"]] in suppressed,
                    # A callback is due at its own time, whatever the retry delay said.
                    next_attempt_at=None if callback else r["next_attempt_at"],
                    last_abandoned_at=r["last_abandoned_at"],
                    window=campaign.window,
                )
            )
            if verdict.allowed:
                if len(allowed) < n:
                    allowed.append(r)
                continue
            await self._block(conn, campaign, r, verdict, now)
            key = verdict.reason.value if verdict.reason else "blocked"
            result.blocked[key] = result.blocked.get(key, 0) + 1
        return allowed

    async def _block(
        self, conn: Connection, campaign: Campaign, r: asyncpg.Record, verdict: DialVerdict, now: datetime
    ) -> None:
        assert verdict.reason is not None
        status = _FINAL_STATUS.get(verdict.reason)
        if status is not None:
            await conn.execute("UPDATE contacts SET status = $2 WHERE id = $1", r["id"], status)
            # a callback of a contact that may no longer be dialled will not be made
            for cb in await conn.fetch(
                """UPDATE callbacks SET state = 'cancelled', closed_at = $2
                   WHERE contact_id = $1 AND state = 'scheduled' RETURNING id, campaign_id, agent_id, kind, due_at""",
                r["id"],
                now,
            ):
                await enqueue(
                    conn,
                    "callback.cancelled",
                    f"contact:{r['id']}",
                    {
                        "callback_id": cb["id"],
                        "campaign_id": cb["campaign_id"],
                        "contact_id": r["id"],
                        "agent_id": cb["agent_id"],
                        "kind": cb["kind"],
                        "due_at": cb["due_at"].isoformat(),
                        "state": "cancelled",
                        "reason": verdict.reason.value,
                    },
                )
        elif r["status"] == "callback":
            # Not now (e.g. outside the window): the callback moves to the first time it may be made.
            await conn.execute(
                "UPDATE contacts SET callback_at = greatest(callback_at, $2) WHERE id = $1", r["id"], verdict.retry_at
            )
        else:
            await conn.execute("UPDATE contacts SET next_attempt_at = $2 WHERE id = $1", r["id"], verdict.retry_at)
        await conn.execute(
            """INSERT INTO dial_blocks (campaign_id, day, reason, blocked)
               VALUES ($1, ($2::timestamptz AT TIME ZONE 'UTC')::date, $3, 1)
               ON CONFLICT (campaign_id, day, reason) DO UPDATE SET blocked = dial_blocks.blocked + 1""",
            campaign.id,
            now,
            verdict.reason.value,
        )

    async def _create_attempts(
        self, conn: Connection, campaign: Campaign, rows: list[tuple[Any, int | None]], now: datetime
    ) -> list[Attempt]:
        """Attempt rows for (contact row, agent id) pairs: one multi-row statement per table
        (the dialer emits call.originated once Asterisk took the originate)."""
        attempts = [
            Attempt(
                id=uuid.uuid4(),
                campaign_id=campaign.id,
                contact_id=r["id"],
                attempt_no=r["attempts"] + 1,
                lost_before=r["lost_attempts"],
                number=r["phone_e164"],
                caller_id=campaign.caller_id or "",
                agent_id=agent_id,
                mode=campaign.mode,
                created_at=now,
                retention_until=cdr_deadline(now, campaign.retention),
                contact={
                    "name": r["name"],
                    "title": r["title"],
                    "organisation": r["organisation"],
                    "extra": r["extra"],
                },
            )
            for r, agent_id in rows
        ]
        if not attempts:
            return attempts
        pool, node, token, lease = claim_values(self.claim)
        status = await conn.execute(
            """INSERT INTO live_attempts (id, campaign_id, contact_id, attempt_no, dialled_number, caller_id,
                                          agent_id, mode, state, created_at, retention_until, pool, node_id)
               SELECT v.id, $2, v.contact_id, v.attempt_no, v.number, $3, v.agent_id, $4, 'originating', $5, $6,
                      $11, $12
               FROM unnest($1::uuid[], $7::bigint[], $8::int[], $9::text[], $10::bigint[])
                    AS v(id, contact_id, attempt_no, number, agent_id)
               WHERE """
            + lease_held("$14", "$12", "$13"),
            [a.id for a in attempts],
            campaign.id,
            attempts[0].caller_id,
            campaign.mode.value,
            now,
            attempts[0].retention_until,
            [a.contact_id for a in attempts],
            [a.attempt_no for a in attempts],
            [a.number for a in attempts],
            [a.agent_id for a in attempts],
            pool,
            node,
            token,
            lease,
        )
        error = stale(self.claim, inserted_rows(status), len(attempts))
        if error is not None:
            raise error  # the caller's transaction rolls back: no contact is taken
        await conn.execute(
            "UPDATE contacts SET status = 'in_progress', attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
            [a.contact_id for a in attempts],
        )
        return attempts
