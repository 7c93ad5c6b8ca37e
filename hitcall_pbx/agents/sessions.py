"""Agent sessions: an agent's SIP phone call parked in its own holding bridge for the shift.

Login: the agent dials the login extension; the channel enters Stasis with
args ``agent-login,<endpoint>``; the agent is identified by endpoint (and asked
for the PIN by DTMF when the agent has one). The channel joins the agent's
holding bridge and stays there; customers are added to that bridge. Hanging up
the phone logs the agent out.

State changes go through the pure machine in core.states; every transition is
stored (agent_state_log, agents.state) and published (agent.state_changed) by
an ordered background writer, off the call path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from ..ari import AriClient, AriError, AriNotFound
from ..core.states import Agent, AgentEffect, AgentEvent, AgentState, AgentTransition, agent_transition
from ..errors import Conflict, NotFound
from ..hooks.events import enqueue
from ..logs import get_logger

log = get_logger("hitcall.agents")

PIN_TIMEOUT_S = 15.0
WRITE_BATCH = 200
DEFAULT_PAUSE_CODE = "break"

# Phone keys while logged in (documented in dialplan/README.md).
KEY_HANGUP_CUSTOMER = "0"
KEY_PAUSE = "1"
KEY_READY = "2"  # unpause, or end wrap-up
DISPOSITION_KEYS = {"3": "sale", "4": "callback", "5": "not_interested", "6": "wrong_number",
                    "7": "do_not_call", "8": "other", "9": "no_decision"}
KEY_PREVIEW_ACCEPT = "#"
KEY_PREVIEW_SKIP = "*"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AgentSession:
    agent_id: int
    number: str
    name: str
    endpoint: str | None
    channel_id: str
    bridge_id: str
    campaigns: frozenset[int]
    fsm: Agent = field(default_factory=Agent)
    ready_since: float = 0.0  # monotonic: longest-idle agent gets the next call
    attempt_id: str | None = None  # reserved for / talking to this attempt
    campaign_id: int | None = None
    wrap_timer: asyncio.TimerHandle | None = None
    pin_pending: bool = False
    pin_hash: str | None = None
    digits: str = ""

    @property
    def state(self) -> AgentState:
        return self.fsm.state


class AgentSessions:
    """Live agent sessions, keyed by agent id and by the agent's channel id."""

    def __init__(self, ari: AriClient, pool: asyncpg.Pool, *, hasher: PasswordHasher | None = None) -> None:
        self.ari = ari
        self.pool = pool
        self.by_agent: dict[int, AgentSession] = {}
        self.by_channel: dict[str, AgentSession] = {}
        self._hasher = hasher or PasswordHasher()
        self._writes: asyncio.Queue[tuple[AgentSession, AgentTransition, int | None] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[AgentSession, AgentTransition], None]] = []
        self._dtmf_handlers: list[Callable[[AgentSession, str], bool]] = []

    # ---------------------------------------------------------- wiring ---
    def on_transition(self, fn: Callable[[AgentSession, AgentTransition], None]) -> None:
        """Called synchronously after every state change (the dialer reacts to 'ready')."""
        self._listeners.append(fn)

    def on_dtmf(self, fn: Callable[[AgentSession, str], bool]) -> None:
        """Extra phone keys (the dialer handles preview accept/skip and hang-up)."""
        self._dtmf_handlers.append(fn)

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="agent-state-writer")

    async def close(self) -> None:
        if self._writer is not None:
            await self._writes.put(None)
            await self._writer
            self._writer = None

    async def drain(self) -> None:
        """Wait until every state change so far is stored."""
        await self._writes.join()

    # ----------------------------------------------------------- login ---
    _AGENT_SQL = """SELECT a.id, a.number, a.name, a.endpoint, a.pin_hash, a.disabled,
                      coalesce(array_agg(ac.campaign_id) FILTER (WHERE ac.campaign_id IS NOT NULL), '{{}}') AS campaigns
               FROM agents a LEFT JOIN agent_campaigns ac ON ac.agent_id = a.id
               WHERE {where} GROUP BY a.id"""

    async def adopt(self, channel_id: str, agent_id: int) -> AgentSession | None:
        """Take over an agent's phone call still parked in its holding bridge (after a
        service restart): the agent stays logged in without calling back."""
        row = await self.pool.fetchrow(self._AGENT_SQL.format(where="a.id = $1"), agent_id)
        if row is None or row["disabled"] or agent_id in self.by_agent:
            return None
        session = AgentSession(
            agent_id=row["id"], number=row["number"], name=row["name"], endpoint=row["endpoint"],
            channel_id=channel_id, bridge_id=f"hitcall-agent-{row['id']}", campaigns=frozenset(row["campaigns"]),
        )
        self.by_agent[session.agent_id] = session
        self.by_channel[channel_id] = session
        self._apply(session, AgentEvent.LOGIN)
        log.info("agent.adopted", agent_id=agent_id, channel_id=channel_id)
        return session

    async def refresh_campaigns(self) -> None:
        """Pick up changed campaign assignments of logged-in agents."""
        if not self.by_agent:
            return
        rows = await self.pool.fetch(
            "SELECT agent_id, array_agg(campaign_id) AS campaigns FROM agent_campaigns "
            "WHERE agent_id = ANY($1::bigint[]) GROUP BY agent_id", list(self.by_agent))
        found = {r["agent_id"]: frozenset(r["campaigns"]) for r in rows}
        for agent_id, session in self.by_agent.items():
            session.campaigns = found.get(agent_id, frozenset())

    async def login(self, channel_id: str, endpoint: str) -> AgentSession | None:
        row = await self.pool.fetchrow(self._AGENT_SQL.format(where="a.endpoint = $1"), endpoint)
        if row is None or row["disabled"]:
            log.warning("agent.login_refused", endpoint=endpoint, reason="unknown or disabled endpoint")
            await self._hangup(channel_id)
            return None
        old = self.by_agent.get(row["id"])
        if old is not None:
            # A second login from the same agent replaces the first session.
            await self.logout(old.channel_id, reason="replaced")
        bridge_id = f"hitcall-agent-{row['id']}"
        session = AgentSession(
            agent_id=row["id"], number=row["number"], name=row["name"], endpoint=row["endpoint"],
            channel_id=channel_id, bridge_id=bridge_id, campaigns=frozenset(row["campaigns"]),
            pin_pending=row["pin_hash"] is not None, pin_hash=row["pin_hash"],
        )
        self.by_agent[session.agent_id] = session
        self.by_channel[channel_id] = session
        try:
            try:
                await self.ari.rest.create_bridge(bridge_id=bridge_id, type="mixing", name=bridge_id)
            except AriError:
                pass  # left over from before a restart: reuse it
            await self.ari.rest.add_channel(bridge_id, channel_id)
        except AriNotFound:
            self._forget(session)
            return None
        if session.pin_pending:
            await self._play(channel_id, "sound:agent-pass")
            asyncio.get_running_loop().call_later(PIN_TIMEOUT_S, self._pin_timeout, session)
            return session
        self._apply(session, AgentEvent.LOGIN)
        log.info("agent.logged_in", agent_id=session.agent_id, endpoint=endpoint, channel_id=channel_id)
        return session

    def _pin_timeout(self, session: AgentSession) -> None:
        if session.pin_pending and self.by_channel.get(session.channel_id) is session:
            log.warning("agent.pin_timeout", agent_id=session.agent_id)
            asyncio.ensure_future(self.logout(session.channel_id, reason="pin_timeout"))

    def _pin_digit(self, session: AgentSession, digit: str) -> None:
        if digit != "#":
            session.digits = (session.digits + digit)[-16:]
            return
        pin, session.digits = session.digits, ""
        try:
            self._hasher.verify(session.pin_hash or "", pin)
        except VerificationError:
            log.warning("agent.pin_wrong", agent_id=session.agent_id)
            asyncio.ensure_future(self._play(session.channel_id, "sound:auth-incorrect"))
            return
        session.pin_pending = False
        self._apply(session, AgentEvent.LOGIN)
        asyncio.ensure_future(self._play(session.channel_id, "sound:agent-loginok"))
        log.info("agent.logged_in", agent_id=session.agent_id, endpoint=session.endpoint, pin=True)

    async def logout(self, channel_id: str, *, reason: str = "hangup") -> None:
        session = self.by_channel.get(channel_id)
        if session is None:
            return
        self._forget(session)
        if session.wrap_timer:
            session.wrap_timer.cancel()
        if session.state is not AgentState.LOGGED_OUT and not session.pin_pending:
            self._apply(session, AgentEvent.LOGOUT)
        await self._hangup(channel_id)
        try:
            await self.ari.rest.destroy_bridge(session.bridge_id)
        except AriError:
            pass
        log.info("agent.logged_out", agent_id=session.agent_id, reason=reason)

    def _forget(self, session: AgentSession) -> None:
        if self.by_agent.get(session.agent_id) is session:
            del self.by_agent[session.agent_id]
        self.by_channel.pop(session.channel_id, None)

    # ---------------------------------------------------------- states ---
    def _apply(self, session: AgentSession, event: AgentEvent, *, pause_code: str | None = None,
               wrap_s: float = 0) -> AgentTransition:
        tr = agent_transition(session.fsm, event, _now(), pause_code=pause_code, wrap_s=wrap_s)
        session.fsm = tr.agent
        if tr.agent.state is AgentState.READY:
            session.ready_since = time.monotonic()
            session.attempt_id = None
        if AgentEffect.CANCEL_WRAP_TIMER in tr.effects and session.wrap_timer:
            session.wrap_timer.cancel()
            session.wrap_timer = None
        if AgentEffect.START_WRAP_TIMER in tr.effects:
            delay = max(0.0, (tr.agent.wrap_until - tr.agent.since).total_seconds()) if tr.agent.wrap_until else 0.0
            session.wrap_timer = asyncio.get_running_loop().call_later(delay, self._wrap_timeout, session)
        self._writes.put_nowait((session, tr, session.campaign_id))
        for fn in self._listeners:
            try:
                fn(session, tr)
            except Exception:
                log.exception("agent.listener_failed", agent_id=session.agent_id)
        return tr

    def _wrap_timeout(self, session: AgentSession) -> None:
        session.wrap_timer = None
        if session.state is AgentState.WRAP_UP and self.by_agent.get(session.agent_id) is session:
            self._apply(session, AgentEvent.WRAP_TIMEOUT)

    def reserve(self, session: AgentSession, attempt_id: str | None, campaign_id: int) -> None:
        session.attempt_id = attempt_id
        session.campaign_id = campaign_id
        self._apply(session, AgentEvent.RESERVE)

    def release(self, session: AgentSession) -> None:
        if session.state is AgentState.RESERVED:
            self._apply(session, AgentEvent.RELEASE)

    def connect(self, session: AgentSession, attempt_id: str, campaign_id: int) -> None:
        if session.state is AgentState.READY:
            self.reserve(session, attempt_id, campaign_id)
        session.attempt_id = attempt_id
        self._apply(session, AgentEvent.CONNECT)

    def customer_gone(self, session: AgentSession, wrap_s: float) -> None:
        if session.state is AgentState.ON_CALL:
            self._apply(session, AgentEvent.HANGUP, wrap_s=wrap_s)

    # -------------------------------------------------- service controls ---
    def get(self, agent_id: int) -> AgentSession:
        session = self.by_agent.get(agent_id)
        if session is None or session.pin_pending:
            raise NotFound("agent is not logged in", details={"agent_id": agent_id})
        return session

    def pause(self, agent_id: int, code: str = DEFAULT_PAUSE_CODE) -> AgentState:
        session = self.get(agent_id)
        return self._apply(session, AgentEvent.PAUSE, pause_code=code).agent.state

    def unpause(self, agent_id: int) -> AgentState:
        session = self.get(agent_id)
        if session.state is AgentState.WRAP_UP:
            return self._apply(session, AgentEvent.WRAP_DONE).agent.state
        return self._apply(session, AgentEvent.UNPAUSE).agent.state

    def end_wrap(self, agent_id: int) -> AgentState:
        session = self.get(agent_id)
        if session.state is not AgentState.WRAP_UP:
            raise Conflict("agent is not in wrap-up", details={"agent_id": agent_id, "state": session.state.value})
        return self._apply(session, AgentEvent.WRAP_DONE).agent.state

    def ready_agents(self, campaign_id: int) -> list[AgentSession]:
        """Ready agents of a campaign, longest idle first."""
        found = [s for s in self.by_agent.values()
                 if s.state is AgentState.READY and campaign_id in s.campaigns and not s.pin_pending]
        return sorted(found, key=lambda s: s.ready_since)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.by_agent.values():
            key = "login_pin" if s.pin_pending else s.state.value
            out[key] = out.get(key, 0) + 1
        return out

    # ------------------------------------------------------------ DTMF ---
    def dtmf(self, channel_id: str, digit: str) -> None:
        session = self.by_channel.get(channel_id)
        if session is None:
            return
        if session.pin_pending:
            self._pin_digit(session, digit)
            return
        for fn in self._dtmf_handlers:
            if fn(session, digit):
                return
        try:
            if digit == KEY_PAUSE and session.state in (AgentState.READY, AgentState.WRAP_UP):
                self._apply(session, AgentEvent.PAUSE, pause_code=DEFAULT_PAUSE_CODE)
            elif digit == KEY_READY and session.state is AgentState.PAUSED:
                self._apply(session, AgentEvent.UNPAUSE)
            elif digit == KEY_READY and session.state is AgentState.WRAP_UP:
                self._apply(session, AgentEvent.WRAP_DONE)
        except Conflict as exc:
            log.info("agent.key_ignored", agent_id=session.agent_id, digit=digit, reason=exc.message)

    # ------------------------------------------------------- storage ---
    async def _write_loop(self) -> None:
        """Store transitions in order; what queued up meanwhile goes in one transaction."""
        while True:
            batch = [await self._writes.get()]
            while not self._writes.empty() and len(batch) < WRITE_BATCH:
                batch.append(self._writes.get_nowait())
            stop = None in batch
            items = [i for i in batch if i is not None]
            try:
                if items:
                    async with self.pool.acquire() as conn, conn.transaction():
                        for session, tr, campaign_id in items:
                            await self._store(conn, session, tr, campaign_id)
            except Exception:
                log.exception("agent.state_store_failed", transitions=len(items))
            finally:
                for _ in batch:
                    self._writes.task_done()
            if stop:
                return

    async def _store(self, conn: asyncpg.Connection, session: AgentSession, tr: AgentTransition,
                     campaign_id: int | None) -> None:
        a = tr.agent
        await conn.execute(
            "UPDATE agent_state_log SET ended_at = $2 WHERE agent_id = $1 AND ended_at IS NULL",
            session.agent_id, a.since,
        )
        if a.state is not AgentState.LOGGED_OUT:
            await conn.execute(
                """INSERT INTO agent_state_log (agent_id, state, pause_code, campaign_id, started_at)
                   VALUES ($1, $2, $3, $4, $5)""",
                session.agent_id, a.state.value, a.pause_code, campaign_id, a.since,
            )
        await conn.execute(
            "UPDATE agents SET state = $2, pause_code = $3, state_since = $4 WHERE id = $1",
            session.agent_id, a.state.value, a.pause_code, a.since,
        )
        await enqueue(
            conn, "agent.state_changed", f"agent:{session.agent_id}",
            {"agent_id": session.agent_id, "number": session.number, "state": a.state.value,
             "pause_code": a.pause_code, "previous": tr.span.state.value if tr.span else None,
             "at": a.since.isoformat() if a.since else None, "campaign_id": campaign_id},
        )

    # ---------------------------------------------------------- helpers ---
    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.ari.rest.hangup(channel_id)
        except AriError:
            pass

    async def _play(self, channel_id: str, media: str) -> None:
        try:
            await self.ari.rest.play(channel_id, media)
        except AriError:
            pass
