"""Supervisor monitoring on Asterisk: listen, whisper and barge on a live call through
ARI snoop channels and bridges (the rules are in `core.monitoring`).

A supervisor's phone waits in its holding bridge (`agents.sessions`: a supervisor
session). Listen and whisper put a snoop channel on the agent's phone channel into that
bridge; barge moves the supervisor's phone into the call's bridge. Each start, change
and end is one transaction: the `monitoring_sessions` row, an audit row and a webhook
event (monitoring.started / .changed / .ended). A session ends when the supervisor
stops it, the call ends (customer or agent hangs up), the supervisor's phone hangs up,
or its channels are gone after an ARI reconnect; its snoop channel is hung up and a
barging phone goes back to its holding bridge, so nothing is left in Asterisk. An end
that cannot be written (Postgres down) is retried until it is; a new process ends the
rows an earlier one left open (``service_restart``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from ..agents.sessions import AgentSession, AgentSessions
from ..ari import AriError, AriNotFound, AriPort, Resync
from ..auth import Actor
from ..core.backoff import Backoff
from ..core.calls import CallState
from ..core.leases import DEFAULT_POOL, PoolClaim
from ..core.monitoring import (
    EndReason,
    MonitorEvent,
    MonitorMode,
    MonitorSession,
    Refusal,
    Step,
    check_change,
    check_start,
    monitor_transition,
    plan,
    snoop_spec,
)
from ..errors import Conflict, Forbidden, HitCallError, NotFound, Unavailable
from ..hooks.events import enqueue
from ..logs import get_logger
from ..stasis import StasisKind, app_args
from ..store import audit
from ..store.monitoring import SESSION_COLUMNS
from ..store.supervision import supervised_campaigns
from ..tasks import TaskSet

if TYPE_CHECKING:
    from .calls import LiveCall
    from .engine import Dialer

log = get_logger("hitcall.monitor")

SNOOP_START_TIMEOUT_S = 5.0
LEFT_BRIDGE_GRACE_S = 0.5  # a customer who left the agent's bridge and is still a live call was transferred
SNOOP_GONE_TIMEOUT_S = 2.0
SNOOP_NUDGE_AFTER_S = 0.3
SILENCE = "sound:silence/1"  # in every core sounds package
# Keys on the supervisor's phone during a monitoring session (None: stop).
SUPERVISOR_KEYS: dict[str, MonitorMode | None] = {
    "1": MonitorMode.LISTEN,
    "2": MonitorMode.WHISPER,
    "3": MonitorMode.BARGE,
    "0": None,
}
SYSTEM_ACTOR = Actor("monitoring", "system")

_REFUSAL_ERRORS: dict[Refusal, tuple[type[HitCallError], str]] = {
    Refusal.ROLE: (Forbidden, "role {role} may not monitor calls"),
    Refusal.CAMPAIGN: (Forbidden, "campaign {campaign_id} is not one of the campaigns you supervise"),
    Refusal.NO_PHONE: (
        Conflict,
        "your phone is not logged in: dial the login extension from the phone of the agent row linked to"
        " your user, then try again",
    ),
    Refusal.BUSY: (Conflict, "you are already monitoring a call: stop that session first"),
    Refusal.NOT_TALKING: (Conflict, "the call is not talking to an agent (not yet, or any more)"),
    Refusal.SAME_MODE: (Conflict, "the session is already in mode {mode}"),
    Refusal.ENDED: (Conflict, "the monitoring session has ended"),
}


def refused(refusal: Refusal, **details: Any) -> HitCallError:
    cls, message = _REFUSAL_ERRORS[refusal]
    return cls(message.format(**details), code=refusal.value, details={"reason": refusal.value, **details})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Monitoring:
    """One live monitoring session and where its channels are in Asterisk."""

    db_id: int
    fsm: MonitorSession
    user_id: int
    username: str
    role: str
    phone: AgentSession  # the supervisor's phone session
    attempt_id: str
    campaign_id: int
    agent_id: int
    agent_channel: str
    call_bridge: str
    snoop_id: str | None = None  # the current snoop channel (listen, whisper)
    in_call: bool = False  # the phone is in the call's bridge (barge)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def mode(self) -> MonitorMode:
        return self.fsm.mode

    def view(self) -> dict[str, Any]:
        f = self.fsm
        return {
            "id": self.db_id,
            "supervisor": self.username,
            "supervisor_user_id": self.user_id,
            "phone_agent_id": self.phone.agent_id,
            "attempt_id": self.attempt_id,
            "campaign_id": self.campaign_id,
            "agent_id": self.agent_id,
            "mode": f.mode.value,
            "modes": [{"mode": m.value, "at": at} for m, at in f.modes],
            "started_at": f.started_at,
            "ended_at": f.ended_at,
            "end_reason": f.end_reason.value if f.end_reason else None,
        }


def _payload(view: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A view as JSON (times as ISO text)."""
    out = {**view, **extra}
    out["modes"] = [{"mode": m["mode"], "at": m["at"].isoformat()} for m in view["modes"]]
    for key in ("started_at", "ended_at"):
        out[key] = out[key].isoformat() if out[key] is not None else None
    return out


class Monitor:
    """Monitoring sessions of this dialing process."""

    def __init__(
        self,
        ari: AriPort,
        pool: asyncpg.Pool,
        sessions: AgentSessions,
        dialer: Dialer,
        *,
        claim: PoolClaim | None = None,
    ) -> None:
        """`claim`: the pool (Asterisk) of the monitored calls and the node following them,
        written on the sessions' rows; `start` ends only that pool's open sessions (None:
        the default pool)."""
        self.ari = ari
        self.pool = pool
        self.pool_name = claim.pool if claim is not None else DEFAULT_POOL
        self.node_id = claim.node_id if claim is not None else None
        self.sessions = sessions
        self.dialer = dialer
        self.live: dict[int, Monitoring] = {}
        # (event type, channel id) → a step waiting for that event (a snoop's StasisStart ...)
        self._waiters: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._tasks = TaskSet("monitor")
        self._closing = False
        self._recovered = False
        sessions.on_supervisor_dtmf(self._key)

    # ------------------------------------------------------------ life ---
    async def start(self) -> None:
        """End the sessions of this pool an earlier holder left open: their channels are not
        followed. Other pools' sessions are their nodes'."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""UPDATE monitoring_sessions SET ended_at = greatest(now(), started_at),
                        end_reason = 'service_restart'
                    WHERE ended_at IS NULL AND coalesce(pool, '{DEFAULT_POOL}') = $1
                    RETURNING {SESSION_COLUMNS}""",
                self.pool_name,
            )
            for r in rows:
                view = dict(r.items())
                view["modes"] = [{"mode": m["mode"], "at": datetime.fromisoformat(m["at"])} for m in r["modes"]]
                await self._write_event(conn, "monitoring.ended", view, SYSTEM_ACTOR)
        if rows:
            log.warning("monitor.closed_after_restart", sessions=len(rows))

    async def close(self) -> None:
        self._closing = True
        for m in list(self.live.values()):
            await self._end(m, EndReason.STOPPED, SYSTEM_ACTOR)
        await self._tasks.wait()

    # ------------------------------------------------------------ views ---
    def active(self) -> list[dict[str, Any]]:
        return [m.view() for m in self.live.values()]

    def _own(self, monitor_id: int, actor_user: int, role: str) -> Monitoring:
        m = self.live.get(monitor_id)
        if m is None:
            raise NotFound(f"no live monitoring session {monitor_id}", details={"monitor_id": monitor_id})
        if role != "admin" and m.user_id != actor_user:
            raise Forbidden(
                "this monitoring session is another supervisor's",
                code="not_own_session",
                details={"monitor_id": monitor_id},
            )
        return m

    # ---------------------------------------------------------- control ---
    async def start_session(
        self, *, user_id: int, username: str, role: str, attempt_id: str, mode: MonitorMode, actor: Actor
    ) -> dict[str, Any]:
        call = self.dialer.calls.get(attempt_id)
        if call is None:
            raise NotFound("no live call with this attempt id", details={"attempt_id": attempt_id})
        supervised = await supervised_campaigns(self.pool, user_id)
        phone = self.sessions.supervisor_of_user(user_id)
        agent = self.sessions.by_agent.get(call.agent_id) if call.agent_id is not None else None
        talking = call.state is CallState.BRIDGED and agent is not None and agent.attempt_id == call.channel_id
        refusal = check_start(
            role=role,
            supervised=supervised,
            campaign_id=call.campaign.id,
            phone_logged_in=phone is not None,
            monitoring_now=phone is not None and any(m.phone is phone for m in self.live.values()),
            call_talking=talking,
        )
        if refusal is not None:
            raise refused(refusal, role=role, campaign_id=call.campaign.id, attempt_id=attempt_id)
        assert phone is not None and agent is not None
        m = Monitoring(
            db_id=0,
            fsm=MonitorSession.new(uuid.uuid4().hex, mode, _now()),
            user_id=user_id,
            username=username,
            role=role,
            phone=phone,
            attempt_id=attempt_id,
            campaign_id=call.campaign.id,
            agent_id=agent.agent_id,
            agent_channel=agent.channel_id,
            call_bridge=agent.bridge_id,
        )
        async with m.lock:
            try:
                await self._run(m, plan(None, mode))
            except AriError as exc:
                await self._undo(m)
                raise Conflict(
                    f"Asterisk refused to set up {mode.value}: {exc.message}",
                    code="monitor_setup_failed",
                    details={"attempt_id": attempt_id},
                ) from None
            if self.dialer.calls.get(attempt_id) is not call:
                await self._undo(m)
                raise refused(Refusal.NOT_TALKING, attempt_id=attempt_id)
            m.fsm = monitor_transition(m.fsm, MonitorEvent.STARTED, _now())
            try:
                m.db_id = await self._write_start(m, actor)
            except Exception:
                await self._undo(m)
                raise
            self.live[m.db_id] = m
        log.info("monitor.started", monitor_id=m.db_id, attempt_id=attempt_id, mode=mode.value, user_id=user_id)
        return m.view()

    async def change(
        self, monitor_id: int, mode: MonitorMode, *, user_id: int, role: str, actor: Actor
    ) -> dict[str, Any]:
        m = self._own(monitor_id, user_id, role)
        async with m.lock:
            refusal = check_change(m.fsm, mode)
            if refusal is not None:
                raise refused(refusal, mode=mode.value, monitor_id=monitor_id)
            previous = m.mode
            try:
                await self._run(m, plan(previous, mode), mode)
            except AriError as exc:
                await self._end_locked(m, EndReason.FAILED, SYSTEM_ACTOR)
                raise Conflict(
                    f"Asterisk refused to switch to {mode.value} (the call may have ended): {exc.message}",
                    code="monitor_change_failed",
                    details={"monitor_id": monitor_id},
                ) from None
            m.fsm = monitor_transition(m.fsm, MonitorEvent.CHANGE, _now(), mode=mode)
            await self._write_change(m, previous, actor)
        log.info("monitor.changed", monitor_id=monitor_id, mode=mode.value, previous=previous.value)
        return m.view()

    async def stop(self, monitor_id: int, *, user_id: int, role: str, actor: Actor) -> dict[str, Any]:
        m = self._own(monitor_id, user_id, role)
        await self._end(m, EndReason.STOPPED, actor)
        return m.view()

    def _key(self, phone: AgentSession, digit: str) -> bool:
        """A key on a supervisor's phone during a monitoring session: 1 listen, 2 whisper,
        3 barge, 0 stop (documented in dialplan/README.md)."""
        m = next((m for m in self.live.values() if m.phone is phone), None)
        if m is None or digit not in SUPERVISOR_KEYS:
            return False
        self._tasks.spawn(self._key_action(m, SUPERVISOR_KEYS[digit]))
        return True

    async def _key_action(self, m: Monitoring, mode: MonitorMode | None) -> None:
        actor = Actor(m.username, m.role)
        try:
            if mode is None:
                await self.stop(m.db_id, user_id=m.user_id, role=m.role, actor=actor)
            else:
                await self.change(m.db_id, mode, user_id=m.user_id, role=m.role, actor=actor)
        except HitCallError as exc:
            log.info("monitor.key_ignored", monitor_id=m.db_id, reason=exc.code)

    # ------------------------------------------------------------ steps ---
    async def _run(self, m: Monitoring, steps: Sequence[Step], mode: MonitorMode | None = None) -> None:
        mode = mode or m.mode
        for step in steps:
            if step is Step.HANGUP_SNOOP:
                snoop, m.snoop_id = m.snoop_id, None
                if snoop is not None:
                    await self._quiet(self._hangup_snoop(snoop, m.agent_channel))
            elif step is Step.LEAVE_CALL:
                m.in_call = False
                await self._quiet(self.ari.rest.remove_channel(m.call_bridge, m.phone.channel_id))
            elif step is Step.RETURN_HOME:
                await self.ari.rest.add_channel(m.phone.bridge_id, m.phone.channel_id)
            elif step is Step.SNOOP:
                await self._snoop(m, mode)
            elif step is Step.LEAVE_HOME:
                await self.ari.rest.remove_channel(m.phone.bridge_id, m.phone.channel_id)
            elif step is Step.JOIN_CALL:
                m.in_call = True
                await self.ari.rest.add_channel(m.call_bridge, m.phone.channel_id)

    async def _snoop(self, m: Monitoring, mode: MonitorMode) -> None:
        spec = snoop_spec(mode)
        assert spec is not None
        snoop_id = f"hitcall-snoop-{uuid.uuid4().hex}"
        m.snoop_id = snoop_id
        started = self._expect("StasisStart", snoop_id)
        joined = self._expect("ChannelEnteredBridge", snoop_id)
        try:
            await self.ari.rest.snoop(
                m.agent_channel,
                self.ari.app,
                spy=spec.spy,
                whisper=spec.whisper,
                app_args=app_args(StasisKind.SNOOP, m.fsm.id),
                snoop_id=snoop_id,
            )
            if not await self._wait(started, SNOOP_START_TIMEOUT_S):
                raise AriError(f"snoop channel {snoop_id} did not enter the application")
            # Followed to its destruction (after StasisEnd too): the end checks it is gone.
            await self._quiet(self.ari.rest.subscribe(self.ari.app, f"channel:{snoop_id}"))
            await self.ari.rest.add_channel(m.phone.bridge_id, snoop_id)
            # In the bridge before anything else happens to it: a snoop hung up while it
            # is still joining leaves Stasis and stays up, outside any application.
            await self._wait(joined, SNOOP_START_TIMEOUT_S)
        finally:
            self._forget("StasisStart", snoop_id)
            self._forget("ChannelEnteredBridge", snoop_id)

    def _expect(self, etype: str, channel_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[(etype, channel_id)] = future
        return future

    def _forget(self, etype: str, channel_id: str) -> None:
        self._waiters.pop((etype, channel_id), None)

    @staticmethod
    async def _wait(future: asyncio.Future[None], timeout: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False

    async def _hangup_snoop(self, snoop_id: str, agent_channel: str | None) -> None:
        """Hang up a snoop channel and see it destroyed. Asterisk destroys it once its
        audio hooks are off the agent's channel, which happens as audio passes through
        that channel: a whisper hook only on audio sent to the agent. After the
        customer has gone nothing is sent to an agent alone in its bridge, so the agent
        hears a moment of silence (a playback) that lets the hook go."""
        gone = self._expect("ChannelDestroyed", snoop_id)
        try:
            try:
                await self.ari.rest.hangup(snoop_id)
            except AriNotFound:
                return
            if await self._wait(gone, SNOOP_NUDGE_AFTER_S):
                return
            if agent_channel is not None:
                await self._quiet(self.ari.rest.play(agent_channel, SILENCE))
            if not await self._wait(gone, SNOOP_GONE_TIMEOUT_S):
                log.warning("monitor.snoop_still_up", snoop_id=snoop_id, agent_channel=agent_channel)
        finally:
            self._forget("ChannelDestroyed", snoop_id)

    async def _undo(self, m: Monitoring) -> None:
        """Put the phone back where it waits and drop any snoop (best effort)."""
        if m.snoop_id is not None:
            await self._quiet(self._hangup_snoop(m.snoop_id, m.agent_channel))
            m.snoop_id = None
        if m.in_call:
            m.in_call = False
            await self._quiet(self.ari.rest.remove_channel(m.call_bridge, m.phone.channel_id))
        if self.sessions.by_channel.get(m.phone.channel_id) is m.phone:
            await self._quiet(self.ari.rest.add_channel(m.phone.bridge_id, m.phone.channel_id))

    @staticmethod
    async def _quiet(request: Any) -> None:
        try:
            await request
        except AriNotFound:
            pass
        except AriError as exc:
            log.info("monitor.cleanup_refused", error=exc.message)
        except Exception as exc:  # ARI already closed (shutdown): nothing left to clean in this process
            log.info("monitor.cleanup_skipped", error=str(exc))

    # -------------------------------------------------------------- end ---
    async def _end(self, m: Monitoring, reason: EndReason, actor: Actor) -> None:
        async with m.lock:
            await self._end_locked(m, reason, actor)

    async def _end_locked(self, m: Monitoring, reason: EndReason, actor: Actor) -> None:
        if not m.fsm.live:
            return
        m.fsm = monitor_transition(m.fsm, MonitorEvent.STOP, _now(), reason=reason)
        await self._undo(m)
        self.live.pop(m.db_id, None)  # after the cleanup: no longer live = nothing left in Asterisk
        log.info("monitor.ended", monitor_id=m.db_id, reason=reason.value, attempt_id=m.attempt_id)
        try:
            await self._write_end(m, actor)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("monitor.end_write_failed", monitor_id=m.db_id, error=str(exc))
            self._tasks.spawn(self._retry_end(m, actor))

    async def _retry_end(self, m: Monitoring, actor: Actor) -> None:
        backoff = Backoff(base=0.5, cap=10.0)
        attempt = 0
        while True:
            await asyncio.sleep(backoff.delay(attempt))
            attempt += 1
            try:
                await self._write_end(m, actor)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("monitor.end_write_failed", monitor_id=m.db_id, error=str(exc))

    def _end_soon(self, m: Monitoring, reason: EndReason) -> None:
        if m.fsm.live:
            self._tasks.spawn(self._end(m, reason, SYSTEM_ACTOR))

    def call_ended(self, call: LiveCall, outcome: object) -> None:
        """The dialer's call-end hook: the customer or the agent hung up."""
        for m in list(self.live.values()):
            if m.attempt_id == call.channel_id:
                self._end_soon(m, EndReason.CALL_ENDED)

    async def handle_event(self, ev: Any) -> None:
        etype: str = getattr(ev, "type", "")
        channel = getattr(ev, "channel", None)
        if channel is None:
            return
        cid: str = channel.id
        waiter = self._waiters.get((etype, cid))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if etype == "ChannelLeftBridge":
            bridge = getattr(getattr(ev, "bridge", None), "id", None)
            for m in list(self.live.values()):
                if cid == m.attempt_id and bridge == m.call_bridge:
                    self._tasks.spawn(self._customer_left(m))
        if etype in ("StasisEnd", "ChannelDestroyed"):
            for m in list(self.live.values()):
                if cid == m.phone.channel_id:
                    self._end_soon(m, EndReason.SUPERVISOR_GONE)
                elif cid == m.agent_channel:
                    self._end_soon(m, EndReason.CALL_ENDED)

    async def recover(self, snap: Resync) -> None:
        """At the first connect after a start, before the dialer adopts agents and calls:
        what a stopped process left in Asterisk stops monitoring. Its snoop channels are
        hung up (nobody keeps listening unaudited); a supervisor's phone it left barging
        leaves the call's bridge; every supervisor's phone still up is adopted, back in its
        own holding bridge. (Their sessions' rows were ended by `start`.)"""
        if self._recovered:
            return
        self._recovered = True
        for channel in snap.channels:
            if channel.id.startswith("hitcall-snoop-"):
                log.warning("monitor.snoop_left_by_previous_process", snoop_id=channel.id)
                await self._quiet(self.ari.rest.subscribe(self.ari.app, f"channel:{channel.id}"))
                snooped = channel.name.removeprefix("Snoop/").rsplit("-", 1)[0]  # Snoop/<snooped id>-<n>
                await self._quiet(self._hangup_snoop(channel.id, snooped or None))
        rows = await self.pool.fetch(
            """SELECT a.id, a.endpoint FROM agents a JOIN users u ON u.id = a.user_id
               WHERE u.role IN ('supervisor', 'admin') AND a.endpoint IS NOT NULL AND NOT a.disabled"""
        )
        phones = {r["endpoint"]: r["id"] for r in rows}
        bridge_of = {c: b.id for b in snap.bridges for c in b.channels}
        for channel in snap.channels:
            agent_id = phones.get(_login_endpoint(channel) or "")
            if agent_id is None or channel.id in self.sessions.by_channel:
                continue
            bridge = bridge_of.get(channel.id)
            if bridge is not None and bridge != f"hitcall-supervisor-{agent_id}":
                log.warning("monitor.barge_left_by_previous_process", bridge_id=bridge, agent_id=agent_id)
                await self._quiet(self.ari.rest.remove_channel(bridge, channel.id))
            await self.sessions.adopt_supervisor(channel.id, agent_id)

    async def _customer_left(self, m: Monitoring) -> None:
        """The customer left the agent's bridge: a hangup (the call's end follows at once and
        ends the session) or a transfer (the call goes on elsewhere, the session ends)."""
        await asyncio.sleep(LEFT_BRIDGE_GRACE_S)
        if m.fsm.live and m.attempt_id in self.dialer.calls:
            await self._end(m, EndReason.TRANSFERRED, SYSTEM_ACTOR)

    async def handle_resync(self, snap: Resync) -> None:
        """After an ARI reconnect: a session whose phone, agent or snoop channel is gone ends."""
        live = {c.id for c in snap.channels}
        for m in list(self.live.values()):
            gone = [c for c in (m.phone.channel_id, m.agent_channel, m.snoop_id) if c is not None and c not in live]
            if gone or m.attempt_id not in self.dialer.calls:
                self._end_soon(m, EndReason.ASTERISK_LOST)

    # ---------------------------------------------------------- storage ---
    async def _write_start(self, m: Monitoring, actor: Actor) -> int:
        view = m.view()
        async with self.pool.acquire() as conn, conn.transaction():
            db_id: int = await conn.fetchval(
                """INSERT INTO monitoring_sessions (supervisor, supervisor_user_id, phone_agent_id, attempt_id,
                       campaign_id, agent_id, mode, modes, started_at, pool, node_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id""",
                m.username,
                m.user_id,
                m.phone.agent_id,
                uuid.UUID(m.attempt_id),
                m.campaign_id,
                m.agent_id,
                m.mode.value,
                _payload(view)["modes"],
                m.fsm.started_at,
                self.pool_name,
                self.node_id,
            )
            m.db_id = db_id
            await self._write_event(conn, "monitoring.started", m.view(), actor)
        return db_id

    async def _write_change(self, m: Monitoring, previous: MonitorMode, actor: Actor) -> None:
        view = m.view()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE monitoring_sessions SET mode = $2, modes = $3 WHERE id = $1",
                m.db_id,
                m.mode.value,
                _payload(view)["modes"],
            )
            await self._write_event(conn, "monitoring.changed", view, actor, previous_mode=previous.value)

    async def _write_end(self, m: Monitoring, actor: Actor) -> None:
        view = m.view()
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                """UPDATE monitoring_sessions SET ended_at = $2, end_reason = $3, mode = $4, modes = $5
                   WHERE id = $1 AND ended_at IS NULL RETURNING id""",
                m.db_id,
                m.fsm.ended_at,
                view["end_reason"],
                m.mode.value,
                _payload(view)["modes"],
            )
            if done is not None:
                await self._write_event(conn, "monitoring.ended", view, actor)

    @staticmethod
    async def _write_event(conn: Any, event: str, view: dict[str, Any], actor: Actor, **extra: Any) -> None:
        payload = _payload(view, **extra)
        payload["attempt_id"] = str(payload["attempt_id"])
        await audit.record(
            conn,
            **actor.audit_fields(),
            action=event,
            object_type="monitoring_session",
            object_id=str(view["id"]),
            details={
                k: payload[k]
                for k in ("attempt_id", "campaign_id", "agent_id", "supervisor", "mode", "end_reason")
                if payload.get(k) is not None
            }
            | extra,
        )
        await enqueue(conn, event, f"attempt:{payload['attempt_id']}", payload)


def _login_endpoint(channel: Any) -> str | None:
    """The endpoint a phone in Stasis logged in from (``agent-login,<endpoint>``), else None."""
    dialplan = getattr(channel, "dialplan", None)
    if not channel.name.startswith("PJSIP/") or dialplan is None or dialplan.app_name != "Stasis":
        return None
    args = [a.strip() for a in (dialplan.app_data or "").split(",")]
    if len(args) > 2 and args[1] == StasisKind.AGENT_LOGIN.value:
        return args[2]
    return None


class ApiOnlyMonitoring:
    """The REST API beside the dialing process: stored sessions can be read; starting,
    changing and stopping happen in the process that dials."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def active(self) -> list[dict[str, Any]]:
        return []

    async def start_session(self, **kw: Any) -> dict[str, Any]:
        raise _elsewhere()

    async def change(self, monitor_id: int, mode: MonitorMode, **kw: Any) -> dict[str, Any]:
        raise _elsewhere()

    async def stop(self, monitor_id: int, **kw: Any) -> dict[str, Any]:
        raise _elsewhere()


def _elsewhere() -> Unavailable:
    return Unavailable(
        "live call control runs in the dialing process (hitcall serve without --api-only)", code="dialer_elsewhere"
    )
