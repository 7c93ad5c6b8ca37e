"""Agent sessions: an agent's SIP phone call parked in its own holding bridge for the shift.

Login: the agent dials the login extension; the channel enters Stasis with
args ``agent-login,<endpoint>``. An endpoint that belongs to an agent identifies
the agent (who is asked for the PIN by DTMF when it has one: PIN, then ``#``); on
any other phone the agent types the agent number, ``#``, the PIN, ``#``. Until the
PIN is right the call is only a login in progress: not in ``by_agent``, not
bridged, another session of the same agent untouched. ``#`` with nothing typed
replays the prompt; after `PIN_ATTEMPTS` wrong entries, or `PIN_TIMEOUT_S`
without one, the call is hung up. Wrong entries are logged and audited
(``agent.login_failed``). Then the channel joins the agent's holding bridge and
stays there; customers are added to that bridge. Hanging up the phone logs the
agent out.

A supervisor's phone: an agent row linked to a user of role supervisor or admin
(`agents.user_id`) logs in the same way (same extension, endpoint or number, PIN), but
the session is a supervisor session (`AgentSession.supervisor`): its channel waits in
a holding bridge of its own (``hitcall-supervisor-<agent id>``), it is kept in
`supervisors`, not in `by_agent`, has no agent state and is never offered a call. The
campaigns of that agent row are the campaigns the supervisor may monitor
(`dialer.monitor`). Hanging up logs it out like an agent.

State changes go through the pure machine in core.states; every transition is
stored (agent_state_log, agents.state) and published (agent.state_changed)
through the call journal (`records.journal.CallJournal`): in order, off the call
path, kept in its durable spool while Postgres is down, idempotent on replay.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..ari import BRIDGE_SIDE_GONE, AriError, AriPort
from ..core.dispositions import DEFAULT_DISPOSITIONS
from ..core.leases import DEFAULT_POOL, PoolClaim
from ..core.states import Agent, AgentEffect, AgentEvent, AgentState, AgentTransition, agent_transition
from ..errors import Conflict, NotFound
from ..logs import get_logger
from ..records.journal import CallJournal
from ..store import audit
from ..tasks import TaskSet

log = get_logger("hitcall.agents")

PIN_TIMEOUT_S = 15.0  # for each prompt (agent number, PIN)
PIN_ATTEMPTS = 3
DEFAULT_PAUSE_CODE = "break"

# Phone keys while logged in (documented in dialplan/README.md).
KEY_HANGUP_CUSTOMER = "0"
KEY_PAUSE = "1"
KEY_READY = "2"  # unpause, or end wrap-up
# Keys 3-9 set the disposition with that key in the campaign's list (dialer.dispositions);
# a new campaign's list (core.dispositions.DEFAULT_DISPOSITIONS) has these:
DISPOSITION_KEYS = {d.phone_key: d.code for d in DEFAULT_DISPOSITIONS if d.phone_key is not None}
KEY_PREVIEW_ACCEPT = "#"
KEY_PREVIEW_SKIP = "*"
KEY_RECORDING_PAUSE = "*"  # during a call: pause the recording, or resume it (no offer is open then)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AgentSession:
    """A logged-in agent, or a login in progress (`pin_pending`; `agent_id` 0 until
    the agent number is typed on a phone that is no agent's endpoint)."""

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
    by_number: bool = False  # the agent number is typed (the phone is no agent's endpoint)
    number_pending: bool = False
    pin_hash: str | None = None
    digits: str = ""
    attempts: int = 0
    prompt_timer: asyncio.TimerHandle | None = None
    entry: asyncio.Future[None] | None = None  # the last agent number / PIN being checked
    prompt_playback: str | None = None
    user_id: int | None = None  # the user linked to the agent row
    leaving: bool = False  # its phone hung up: logging out, never given a call again
    held: bool = False  # a pacing decision's contact is being taken for it (dialer.pacer.Flight)
    supervisor: bool = False  # a supervisor's phone (the linked user's role is supervisor or admin)

    @property
    def state(self) -> AgentState:
        return self.fsm.state


class AgentSessions:
    """Live agent sessions, keyed by agent id and by the agent's channel id."""

    def __init__(
        self,
        ari: AriPort,
        pool: asyncpg.Pool,
        *,
        journal: CallJournal,
        hasher: PasswordHasher | None = None,
        claim: PoolClaim | None = None,
    ) -> None:
        """`journal`: the service's call journal, started and closed by its owner. `claim`:
        the pool (Asterisk) these phones are on and the node following them, written with
        every state change (agents.pool, agents.node_id); None: the default pool."""
        self.ari = ari
        self.pool = pool
        self.pool_name = claim.pool if claim is not None else DEFAULT_POOL
        self.node_id = claim.node_id if claim is not None else None
        self.by_agent: dict[int, AgentSession] = {}
        self.by_channel: dict[str, AgentSession] = {}
        self.supervisors: dict[int, AgentSession] = {}  # supervisors' phones, by agent row id
        self._hasher = hasher or PasswordHasher()
        self.journal = journal
        self._listeners: list[Callable[[AgentSession, AgentTransition], None]] = []
        self._dtmf_handlers: list[Callable[[AgentSession, str], bool]] = []
        self._ready_guards: list[Callable[[AgentSession], str | None]] = []
        self._supervisor_dtmf: list[Callable[[AgentSession, str], bool]] = []
        self._tasks = TaskSet("agents")  # prompts and logouts started from timers and key presses

    # ---------------------------------------------------------- wiring ---
    def on_transition(self, fn: Callable[[AgentSession, AgentTransition], None]) -> None:
        """Called synchronously after every state change (the dialer reacts to 'ready')."""
        self._listeners.append(fn)

    def on_dtmf(self, fn: Callable[[AgentSession, str], bool]) -> None:
        """Extra phone keys (the dialer handles preview accept/skip and hang-up)."""
        self._dtmf_handlers.append(fn)

    def on_wrap_end(self, fn: Callable[[AgentSession], str | None]) -> None:
        """A check before an agent leaves wrap-up (or a pause taken from it) for ready: the
        reason it may not (e.g. a required disposition is missing), or None."""
        self._ready_guards.append(fn)

    def _not_ready_reason(self, session: AgentSession) -> str | None:
        for fn in self._ready_guards:
            reason = fn(session)
            if reason is not None:
                return reason
        return None

    def _check_ready(self, session: AgentSession) -> None:
        reason = self._not_ready_reason(session)
        if reason is not None:
            raise Conflict(
                reason, code="disposition_required", details={"field": "disposition", "agent_id": session.agent_id}
            )

    def end_expired_wrap(self, agent_id: int) -> None:
        """End a wrap-up whose time is up but that a guard kept open, once nothing keeps it."""
        session = self.by_agent.get(agent_id)
        if (
            session is not None
            and session.state is AgentState.WRAP_UP
            and session.wrap_timer is None
            and self._not_ready_reason(session) is None
        ):
            self._apply(session, AgentEvent.WRAP_TIMEOUT)

    def on_supervisor_dtmf(self, fn: Callable[[AgentSession, str], bool]) -> None:
        """Keys pressed on a logged-in supervisor's phone."""
        self._supervisor_dtmf.append(fn)

    def supervisor_of_user(self, user_id: int) -> AgentSession | None:
        """The logged-in supervisor phone of user `user_id`, if any."""
        for session in self.supervisors.values():
            if session.user_id == user_id and not session.pin_pending:
                return session
        return None

    async def close(self) -> None:
        for session in self.by_channel.values():
            self._cancel_prompt(session)

    async def drain(self) -> None:
        """Wait until every state change so far is stored."""
        await self.journal.flush()

    # ----------------------------------------------------------- login ---
    _AGENT_SQL = """SELECT a.id, a.number, a.name, a.endpoint, a.pin_hash, a.disabled, a.user_id,
                      u.role IN ('supervisor', 'admin') AS supervisor,
                      coalesce(array_agg(ac.campaign_id) FILTER (WHERE ac.campaign_id IS NOT NULL), '{{}}') AS campaigns
               FROM agents a LEFT JOIN agent_campaigns ac ON ac.agent_id = a.id
                    LEFT JOIN users u ON u.id = a.user_id
               WHERE {where} GROUP BY a.id, u.role"""

    async def adopt(self, channel_id: str, agent_id: int) -> AgentSession | None:
        """Take over an agent's phone call still parked in its holding bridge (after a
        service restart): the agent stays logged in without calling back."""
        row = await self.pool.fetchrow(self._AGENT_SQL.format(where="a.id = $1"), agent_id)
        if row is None or row["disabled"] or row["supervisor"] or agent_id in self.by_agent:
            return None
        session = AgentSession(
            agent_id=row["id"],
            number=row["number"],
            name=row["name"],
            endpoint=row["endpoint"],
            channel_id=channel_id,
            bridge_id=f"hitcall-agent-{row['id']}",
            campaigns=frozenset(row["campaigns"]),
        )
        self.by_agent[session.agent_id] = session
        self.by_channel[channel_id] = session
        self._apply(session, AgentEvent.LOGIN)
        log.info("agent.adopted", agent_id=agent_id, channel_id=channel_id)
        return session

    async def adopt_supervisor(self, channel_id: str, agent_id: int) -> AgentSession | None:
        """Take over a supervisor's phone call a previous process left up (after a service
        restart): back in its own holding bridge, logged in without calling back."""
        row = await self.pool.fetchrow(self._AGENT_SQL.format(where="a.id = $1"), agent_id)
        if row is None or row["disabled"] or not row["supervisor"] or agent_id in self.supervisors:
            return None
        session = AgentSession(
            agent_id=0,
            number="",
            name="",
            endpoint=row["endpoint"],
            channel_id=channel_id,
            bridge_id="",
            campaigns=frozenset(),
        )
        self._bind(session, row)
        try:
            try:
                await self.ari.rest.create_bridge(bridge_id=session.bridge_id, type="mixing", name=session.bridge_id)
            except AriError:
                pass  # still there: reuse it
            await self.ari.rest.add_channel(session.bridge_id, channel_id)
        except AriError:
            return None
        self.supervisors[agent_id] = session
        self.by_channel[channel_id] = session
        log.info("supervisor.adopted", agent_id=agent_id, channel_id=channel_id)
        return session

    async def refresh_campaigns(self) -> None:
        """Pick up changed campaign assignments of logged-in agents."""
        if not self.by_agent:
            return
        rows = await self.pool.fetch(
            "SELECT agent_id, array_agg(campaign_id) AS campaigns FROM agent_campaigns "
            "WHERE agent_id = ANY($1::bigint[]) GROUP BY agent_id",
            list(self.by_agent),
        )
        found = {r["agent_id"]: frozenset(r["campaigns"]) for r in rows}
        for agent_id, session in self.by_agent.items():
            session.campaigns = found.get(agent_id, frozenset())

    async def login(self, channel_id: str, endpoint: str) -> AgentSession | None:
        row = await self.pool.fetchrow(self._AGENT_SQL.format(where="a.endpoint = $1"), endpoint)
        if row is not None and row["disabled"]:
            log.warning("agent.login_refused", endpoint=endpoint, reason="disabled agent")
            await self._hangup(channel_id)
            return None
        session = AgentSession(
            agent_id=0,
            number="",
            name="",
            endpoint=endpoint,
            channel_id=channel_id,
            bridge_id="",
            campaigns=frozenset(),
            pin_pending=True,
        )
        if row is None:
            session.by_number = session.number_pending = True
        else:
            self._bind(session, row)
            if row["pin_hash"] is None:
                return await self._admit(session)
        self.by_channel[channel_id] = session
        self._prompt(session)
        return session

    @staticmethod
    def _bind(session: AgentSession, row: asyncpg.Record) -> None:
        session.agent_id, session.number, session.name = row["id"], row["number"], row["name"]
        session.supervisor, session.user_id = bool(row["supervisor"]), row["user_id"]
        kind = "supervisor" if session.supervisor else "agent"
        session.bridge_id, session.campaigns = f"hitcall-{kind}-{row['id']}", frozenset(row["campaigns"])
        session.pin_hash = row["pin_hash"]

    async def _admit(self, session: AgentSession) -> AgentSession | None:
        """Log the agent in: replaces the agent's other session, joins its holding bridge."""
        old = (self.supervisors if session.supervisor else self.by_agent).get(session.agent_id)
        if old is not None:
            await self.logout(old.channel_id, reason="replaced")
        self._cancel_prompt(session)
        self.by_channel[session.channel_id] = session
        await self._stop_prompt(session)  # Asterisk bridges a channel only once its playback ends
        try:
            try:
                await self.ari.rest.create_bridge(bridge_id=session.bridge_id, type="mixing", name=session.bridge_id)
            except AriError:
                pass  # left over from before a restart: reuse it
            await self.ari.rest.add_channel(session.bridge_id, session.channel_id)
        except BRIDGE_SIDE_GONE:  # the phone hung up meanwhile
            self.by_channel.pop(session.channel_id, None)
            return None
        if self.by_channel.get(session.channel_id) is not session:
            return None  # hung up meanwhile
        session.pin_pending = session.number_pending = False
        session.digits = ""
        if session.supervisor:
            self.supervisors[session.agent_id] = session
            log.info("supervisor.logged_in", agent_id=session.agent_id, user_id=session.user_id)
            return session
        self.by_agent[session.agent_id] = session
        self._apply(session, AgentEvent.LOGIN)
        log.info(
            "agent.logged_in",
            agent_id=session.agent_id,
            endpoint=session.endpoint,
            channel_id=session.channel_id,
            pin=session.pin_hash is not None,
        )
        return session

    def _prompt(self, session: AgentSession, media: str | None = None) -> None:
        """Ask for the agent number or the PIN (or play `media`); the entry times out."""
        self._cancel_prompt(session)
        prompt = "sound:agent-user" if session.number_pending else "sound:agent-pass"
        self._tasks.spawn(self._say(session, media or prompt))
        session.prompt_timer = asyncio.get_running_loop().call_later(PIN_TIMEOUT_S, self._pin_timeout, session)

    async def _say(self, session: AgentSession, media: str) -> None:
        """Play a prompt in place of the one still playing."""
        await self._stop_prompt(session)
        session.prompt_playback = playback = f"hitcall-login-{uuid.uuid4().hex}"
        try:
            await self.ari.rest.play(session.channel_id, media, playback_id=playback)
        except AriError:
            pass

    async def _stop_prompt(self, session: AgentSession) -> None:
        playback, session.prompt_playback = session.prompt_playback, None
        if playback is not None:
            try:
                await self.ari.rest.stop_playback(playback)
            except AriError:
                pass  # already finished

    @staticmethod
    def _cancel_prompt(session: AgentSession) -> None:
        if session.prompt_timer is not None:
            session.prompt_timer.cancel()
            session.prompt_timer = None

    def _pin_timeout(self, session: AgentSession) -> None:
        session.prompt_timer = None
        if session.pin_pending and self.by_channel.get(session.channel_id) is session:
            log.warning("agent.pin_timeout", agent_id=session.agent_id or None, endpoint=session.endpoint)
            self._tasks.spawn(self.logout(session.channel_id, reason="pin_timeout"))

    def _pin_digit(self, session: AgentSession, digit: str) -> None:
        if digit != "#":
            session.digits = (session.digits + digit)[-16:]
            return
        entry, session.digits = session.digits, ""
        if not entry:
            self._prompt(session)
            return
        self._cancel_prompt(session)
        is_number, session.number_pending = session.number_pending, False
        # entries are handled in order (a PIN typed fast waits for its agent number's lookup)
        session.entry = asyncio.ensure_future(self._pin_entry(session, entry, is_number, session.entry))

    async def _pin_entry(
        self, session: AgentSession, entry: str, is_number: bool, previous: asyncio.Future[None] | None
    ) -> None:
        """An agent number or a PIN typed and confirmed with #."""
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self._check_entry(session, entry, is_number)
        except Exception:
            log.exception("agent.login_error", agent_id=session.agent_id or None, endpoint=session.endpoint)
            await self.logout(session.channel_id, reason="login_error")

    async def _check_entry(self, session: AgentSession, entry: str, is_number: bool) -> None:
        if self.by_channel.get(session.channel_id) is not session:
            return
        if is_number:
            row = await self.pool.fetchrow(self._AGENT_SQL.format(where="a.number = $1"), entry)
            if self.by_channel.get(session.channel_id) is not session:
                return
            if row is not None and not row["disabled"]:
                self._bind(session, row)
            self._prompt(session)
            return
        # an unknown number or an agent without a PIN fails like a wrong PIN (nothing to guess from)
        ok = session.pin_hash is not None and await asyncio.to_thread(self._pin_ok, session.pin_hash, entry)
        if self.by_channel.get(session.channel_id) is not session:
            return
        if ok:
            if await self._admit(session) is not None:
                self._tasks.spawn(self._play(session.channel_id, "sound:agent-loginok"))
            return
        session.attempts += 1
        refused = session.attempts >= PIN_ATTEMPTS
        log.warning(
            "agent.pin_wrong",
            agent_id=session.agent_id or None,
            endpoint=session.endpoint,
            attempt=session.attempts,
            refused=refused,
        )
        await self._audit_failure(session, refused)
        if refused:
            await self.logout(session.channel_id, reason="pin_wrong")
            return
        if session.by_number:
            session.agent_id, session.pin_hash, session.number_pending = 0, None, True
        self._prompt(session, "sound:auth-incorrect")

    def _pin_ok(self, pin_hash: str, pin: str) -> bool:
        try:
            return self._hasher.verify(pin_hash, pin)
        except (VerificationError, InvalidHashError):
            return False

    async def _audit_failure(self, session: AgentSession, refused: bool) -> None:
        try:
            await audit.record(
                self.pool,
                actor=f"endpoint:{session.endpoint}",
                action="agent.login_failed",
                object_type="agent" if session.agent_id else None,
                object_id=session.agent_id or None,
                details={"endpoint": session.endpoint, "attempt": session.attempts, "refused": refused},
            )
        except Exception:
            log.exception("agent.audit_failed", endpoint=session.endpoint)

    async def logout(self, channel_id: str, *, reason: str = "hangup") -> None:
        session = self.by_channel.get(channel_id)
        if session is None:
            return
        self._forget(session)
        self._cancel_prompt(session)
        if session.wrap_timer:
            session.wrap_timer.cancel()
        if session.pin_pending:
            # a login that never completed: the agent's bridge (maybe another session's) stays
            await self._hangup(channel_id)
            log.info("agent.login_ended", agent_id=session.agent_id or None, endpoint=session.endpoint, reason=reason)
            return
        if session.state is not AgentState.LOGGED_OUT:
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
        if self.supervisors.get(session.agent_id) is session:
            del self.supervisors[session.agent_id]
        self.by_channel.pop(session.channel_id, None)

    # ---------------------------------------------------------- states ---
    def _apply(
        self, session: AgentSession, event: AgentEvent, *, pause_code: str | None = None, wrap_s: float = 0
    ) -> AgentTransition:
        tr = agent_transition(session.fsm, event, _now(), pause_code=pause_code, wrap_s=wrap_s)
        session.fsm = tr.agent
        if tr.agent.state is AgentState.READY:
            session.ready_since = time.monotonic()
            session.attempt_id = None
        if AgentEffect.CANCEL_WRAP_TIMER in tr.effects and session.wrap_timer:
            session.wrap_timer.cancel()
            session.wrap_timer = None
        if AgentEffect.START_WRAP_TIMER in tr.effects:
            a = tr.agent
            delay = max(0.0, (a.wrap_until - a.since).total_seconds()) if a.wrap_until and a.since else 0.0
            session.wrap_timer = asyncio.get_running_loop().call_later(delay, self._wrap_timeout, session)
        self._store(session, tr, session.campaign_id)
        for fn in self._listeners:
            try:
                fn(session, tr)
            except Exception:
                log.exception("agent.listener_failed", agent_id=session.agent_id)
        return tr

    def _wrap_timeout(self, session: AgentSession) -> None:
        session.wrap_timer = None
        if session.state is AgentState.WRAP_UP and self.by_agent.get(session.agent_id) is session:
            until = session.fsm.wrap_until
            early = (until - _now()).total_seconds() if until is not None else 0.0
            if early > 0:
                # The loop's timer (its own monotonic clock) ran before the wall clock reached
                # the end of wrap-up: the rest of it, then ready.
                session.wrap_timer = asyncio.get_running_loop().call_later(early, self._wrap_timeout, session)
                return
            reason = self._not_ready_reason(session)
            if reason is not None:
                log.info("agent.wrap_up_kept", agent_id=session.agent_id, reason=reason)
                return
            self._apply(session, AgentEvent.WRAP_TIMEOUT)

    def reserve(self, session: AgentSession, attempt_id: str | None, campaign_id: int | None) -> None:
        """Reserve the agent for a call of `campaign_id` (None: an inbound caller of no campaign)."""
        session.attempt_id = attempt_id
        session.campaign_id = campaign_id
        self._apply(session, AgentEvent.RESERVE)

    def release(self, session: AgentSession) -> None:
        if session.state is AgentState.RESERVED:
            self._apply(session, AgentEvent.RELEASE)

    def connect(self, session: AgentSession, attempt_id: str, campaign_id: int | None) -> None:
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
        self._check_ready(session)
        if session.state is AgentState.WRAP_UP:
            return self._apply(session, AgentEvent.WRAP_DONE).agent.state
        return self._apply(session, AgentEvent.UNPAUSE).agent.state

    def end_wrap(self, agent_id: int) -> AgentState:
        session = self.get(agent_id)
        if session.state is not AgentState.WRAP_UP:
            raise Conflict("agent is not in wrap-up", details={"agent_id": agent_id, "state": session.state.value})
        self._check_ready(session)
        return self._apply(session, AgentEvent.WRAP_DONE).agent.state

    def ready_agents(self, campaign_id: int) -> list[AgentSession]:
        """Ready agents of a campaign, longest idle first."""
        found = [
            s
            for s in self.by_agent.values()
            if s.state is AgentState.READY and campaign_id in s.campaigns and not s.pin_pending and not s.leaving
        ]
        return sorted(found, key=lambda s: s.ready_since)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.by_channel.values():
            key = "login_pin" if s.pin_pending else "supervisor" if s.supervisor else s.state.value
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
        if session.supervisor:
            for fn in self._supervisor_dtmf:
                if fn(session, digit):
                    return
            return
        for fn in self._dtmf_handlers:
            if fn(session, digit):
                return
        try:
            if digit == KEY_PAUSE and session.state in (AgentState.READY, AgentState.WRAP_UP):
                self._apply(session, AgentEvent.PAUSE, pause_code=DEFAULT_PAUSE_CODE)
            elif digit == KEY_READY and session.state in (AgentState.PAUSED, AgentState.WRAP_UP):
                self._check_ready(session)
                wrap = session.state is AgentState.WRAP_UP
                self._apply(session, AgentEvent.WRAP_DONE if wrap else AgentEvent.UNPAUSE)
        except Conflict as exc:
            log.info("agent.key_ignored", agent_id=session.agent_id, digit=digit, reason=exc.message)
            if exc.code == "disposition_required":
                self._tasks.spawn(self._play(session.channel_id, "sound:beeperr"))

    # ------------------------------------------------------- storage ---
    def _store(self, session: AgentSession, tr: AgentTransition, campaign_id: int | None) -> None:
        a = tr.agent
        assert a.since is not None  # every transition stamps the time its state was entered
        self.journal.agent_state(
            session.agent_id,
            state=a.state.value,
            pause_code=a.pause_code,
            campaign_id=campaign_id,
            since=a.since,
            pool=self.pool_name,
            node_id=self.node_id,
        )
        self.journal.event(
            "agent.state_changed",
            f"agent:{session.agent_id}",
            {
                "agent_id": session.agent_id,
                "number": session.number,
                "state": a.state.value,
                "pause_code": a.pause_code,
                "previous": tr.span.state.value if tr.span else None,
                "at": a.since.isoformat() if a.since else None,
                "campaign_id": campaign_id,
            },
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
