"""The dialing engine: campaigns, pacing, originate, answer → agent bridge, outcomes.

It is the adapter around the pure core (pacing, compliance, outcomes, states):
ARI events come in through `handle_event` (one at a time, in order), a pacing
tick decides how many calls each running campaign places, the hopper creates
the attempt rows (committed before originate), and every finished attempt
leaves one CDR through the injected sink.

Never dial twice: an attempt's ARI channel id is its attempt id, the row exists
before originate, and an attempt is originated at most once by this process;
after a restart, attempts without a live channel are closed, never re-dialled.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg

from ..agents.sessions import (
    DISPOSITION_KEYS,
    KEY_HANGUP_CUSTOMER,
    KEY_PREVIEW_ACCEPT,
    KEY_PREVIEW_SKIP,
    AgentSession,
    AgentSessions,
)
from ..ari import AriClient, AriError, AriNotFound, Resync
from ..core import pacing
from ..core.compliance import CampaignMode
from ..core.outcomes import CallFacts, Outcome, classify_outcome, next_retry
from ..core.states import AgentState, AgentTransition
from ..errors import Conflict, NotFound, Unavailable, ValidationFailed
from ..hooks.events import enqueue
from ..logs import get_logger
from ..tasks import TaskSet
from .hopper import Hopper
from .journal import CallJournal
from .models import Attempt, Campaign

log = get_logger("hitcall.dialer")

CONNECT_LIMIT_S = 2.0
HOPPER_EMPTY_BACKOFF_S = 2.0
INFO_MESSAGE_MAX_S = 30.0
WATCHDOG_MARGIN_S = 10.0
DISPOSITION_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# A contact given back undialled: a scheduled callback stays one.
_BACK_TO_HOPPER = "CASE WHEN callback_at IS NOT NULL THEN 'callback' WHEN attempts > 0 THEN 'retry' ELSE 'new' END"


def _now() -> datetime:
    return datetime.now(UTC)


class CdrSink(Protocol):
    def submit(self, record: dict[str, Any]) -> None: ...


@dataclass
class LiveCall:
    attempt: Attempt
    campaign: Campaign
    state: str = "originating"
    agent_id: int | None = None  # reserved (progressive/preview) or connected agent
    reserved: bool = False
    placed_mono: float = field(default_factory=time.monotonic)
    originated_at: datetime | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    answered_mono: float | None = None
    bridged_at: datetime | None = None
    answer_to_bridge_ms: int | None = None
    ended_at: datetime | None = None
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    disposition: str | None = None
    cancelled: bool = False
    abandoned: bool = False
    info_playback: str | None = None
    timer: asyncio.TimerHandle | None = None
    recording_id: uuid.UUID | None = None
    added_at: datetime | None = None  # the agent's bridge accepted the customer (ARI request returned)
    vanished: bool = False  # the channel went away while its events were lost (ARI gap, Asterisk crash)

    @property
    def channel_id(self) -> str:
        return self.attempt.channel_id


def call_outcome(call: LiveCall) -> Outcome:
    """The outcome of a finished call. A channel that vanished unanswered while its events
    were lost (Asterisk crashed, ARI away) says nothing about the customer: it ends as
    congestion, retried after the campaign's delay, never as a final failure."""
    answered = call.answered_at is not None
    if call.vanished and not answered and not call.cancelled:
        return Outcome.CONGESTION
    return classify_outcome(
        CallFacts(
            answered=answered,
            hangup_cause=call.hangup_cause,
            bridged=call.bridged_at is not None,
            answer_to_bridge_ms=call.answer_to_bridge_ms,
            amd_status=call.amd_status,
            cancelled=call.cancelled,
        )
    )


def agent_bridges(bridges: list[Any], live: dict[str, Any]) -> dict[int, tuple[list[str], list[str]]]:
    """Agents' holding bridges that hold the agent's phone: agent id → (phone channels,
    other channels in the bridge, i.e. the customer talking to the agent)."""
    found: dict[int, tuple[list[str], list[str]]] = {}
    for bridge in bridges:
        if not bridge.id.startswith("hitcall-agent-"):
            continue
        try:
            agent_id = int(bridge.id.removeprefix("hitcall-agent-"))
        except ValueError:
            continue
        members = [c for c in bridge.channels if c in live]
        phones = [c for c in members if live[c].name.startswith("PJSIP/")]
        if phones:
            found[agent_id] = (phones, [c for c in members if c not in phones])
    return found


@dataclass
class Offer:
    offer_id: int
    agent_id: int
    campaign: Campaign
    contact_id: int
    number: str
    contact: dict[str, Any]
    expires: asyncio.TimerHandle | None = None


class Dialer:
    def __init__(
        self,
        ari: AriClient,
        pool: asyncpg.Pool,
        sessions: AgentSessions,
        hopper: Hopper,
        cdr: CdrSink,
        *,
        tick_s: float = 0.25,
        campaign_refresh_s: float = 1.0,
        outbound_context: str = "hitcall-outbound",
        amd_context: str = "hitcall-amd",
        journal: CallJournal,
        watchdog_s: float | None = 5.0,
    ) -> None:
        self.ari = ari
        self.pool = pool
        self.sessions = sessions
        self.hopper = hopper
        self.cdr = cdr
        self.journal = journal
        self.watchdog_s = watchdog_s
        self.tick_s = tick_s
        self.campaign_refresh_s = campaign_refresh_s
        self.outbound_context = outbound_context
        self.amd_context = amd_context
        self.calls: dict[str, LiveCall] = {}
        self.waiting: deque[LiveCall] = deque()
        self.campaigns: dict[int, Campaign] = {}
        self.stats: dict[int, pacing.PacingStats] = {}
        self.offers: dict[int, Offer] = {}
        self.blocked: dict[int, dict[str, int]] = {}
        self._empty_until: dict[int, float] = {}
        self._stats_day: dict[int, str] = {}
        self._tasks = TaskSet("dialer")
        self._loop_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._missing: set[str] = set()  # channels not in Asterisk at the last sweep
        self._wake = asyncio.Event()
        self._closing = False
        self._dialing_paused_reason: str | None = None
        self._recovered = False
        self.on_call_end: list[Callable[[LiveCall, Outcome], None]] = []
        sessions.on_transition(self._agent_changed)
        sessions.on_dtmf(self._agent_key)

    # ------------------------------------------------------------ life ---
    async def start(self) -> None:
        await self.refresh_campaigns()
        self._loop_task = asyncio.create_task(self._loop(), name="dialer-loop")
        if self.watchdog_s:
            self._watchdog_task = asyncio.create_task(self._watchdog_loop(self.watchdog_s), name="dialer-watchdog")

    async def close(self, *, hangup_calls: bool = False) -> None:
        """Stop dialling. Calls in progress are left to finish unless `hangup_calls`; their
        writes keep going to the journal, which its owner closes after the dialer."""
        self._closing = True
        for task in (self._loop_task, self._watchdog_task):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for offer in list(self.offers.values()):
            await self._decide_offer(offer, "timeout", None)
        if hangup_calls:
            for call in list(self.calls.values()):
                await self._hangup(call.channel_id)
        await self._tasks.wait()

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no call is live and the calls' writes are committed (tests, demo)."""
        deadline = time.monotonic() + timeout
        while (self.calls or self._tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        try:
            await self.journal.flush(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            pass

    # ------------------------------------------------------- campaigns ---
    async def refresh_campaigns(self) -> None:
        rows = await self.pool.fetch("SELECT * FROM campaigns WHERE state = 'running'")
        fresh = {r["id"]: Campaign.from_row(r) for r in rows}
        for cid in fresh:
            if cid not in self.stats:
                self.stats[cid] = await self._load_stats(fresh[cid])
        self.campaigns = fresh

    async def _load_stats(self, campaign: Campaign) -> pacing.PacingStats:
        """Seed the pacing statistics with today's and the last 30 days' abandon counts."""
        stats = pacing.PacingStats(ring_timeout_s=float(campaign.ring_timeout_s))
        rows = await self.pool.fetch(
            """SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
                      count(*) FILTER (WHERE abandoned) AS abandoned,
                      count(*) FILTER (WHERE outcome = 'answered_human') AS connected,
                      count(*) FILTER (WHERE outcome = 'answered_machine') AS machines
               FROM call_attempts
               WHERE campaign_id = $1 AND created_at >= now() - interval '30 days'
               GROUP BY 1""",
            campaign.id,
        )
        tallies = {r["day"]: pacing.AbandonTally(r["abandoned"], r["connected"], r["machines"]) for r in rows}
        today = _now().date()
        # One tally per past day, oldest first (days without calls count as empty days).
        history = [tallies.get(today - timedelta(days=n), pacing.AbandonTally()) for n in range(29, 0, -1)]
        stats.restore(tallies.get(today, pacing.AbandonTally()), history)
        self._stats_day[campaign.id] = today.isoformat()
        return stats

    def _campaign_stats(self, campaign: Campaign) -> pacing.PacingStats:
        stats = self.stats[campaign.id]
        today = _now().date().isoformat()
        if self._stats_day.get(campaign.id) != today:
            stats.new_day()
            self._stats_day[campaign.id] = today
        return stats

    # ------------------------------------------------------------ loop ---
    async def _loop(self) -> None:
        last_refresh = time.monotonic()
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if time.monotonic() - last_refresh >= self.campaign_refresh_s:
                    await self.refresh_campaigns()
                    await self.sessions.refresh_campaigns()
                    last_refresh = time.monotonic()
                await self.tick()
                self._dialing_paused_reason = None
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Postgres down: no attempt can get its stored id, so nothing is dialled.
                if self._dialing_paused_reason is None:
                    log.warning("dialer.paused_db_unavailable", error=str(exc))
                self._dialing_paused_reason = f"database unavailable: {exc}"
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("dialer.tick_failed")
                await asyncio.sleep(0.5)

    def wake(self) -> None:
        self._wake.set()

    async def tick(self) -> None:
        if not self.ari.connected.is_set() or not self._recovered:
            return
        for campaign in sorted(self.campaigns.values(), key=lambda c: -c.priority):
            if campaign.mode is CampaignMode.PREVIEW:
                await self._offer_previews(campaign)
            else:
                await self._pace(campaign)

    def _snapshot(self, campaign: Campaign) -> pacing.PacingSnapshot:
        now = time.monotonic()
        agents = [s for s in self.sessions.by_agent.values() if campaign.id in s.campaigns and not s.pin_pending]
        wrap, talk = [], []
        for s in agents:
            if s.state is AgentState.WRAP_UP and s.fsm.wrap_until is not None:
                wrap.append(max(0.0, (s.fsm.wrap_until - _now()).total_seconds()))
            elif s.state is AgentState.ON_CALL:
                call = self.calls.get(s.attempt_id or "")
                talk.append(max(0.0, now - call.answered_mono) if call and call.answered_mono else 0.0)
        dialling, reserved_calls, waiting = [], 0, 0
        for c in self.calls.values():
            if c.campaign.id != campaign.id:
                continue
            if c.state in ("originating", "ringing"):
                if c.reserved:
                    reserved_calls += 1
                else:
                    dialling.append(now - c.placed_mono)
            elif c.state == "answered" and c.agent_id is None:
                waiting += 1
        return pacing.PacingSnapshot(
            now=now,
            agents_logged_in=len(agents),
            agents_ready=len(self.sessions.ready_agents(campaign.id)),
            wrap_remaining_s=tuple(wrap),
            talk_elapsed_s=tuple(talk),
            dialling_elapsed_s=tuple(dialling),
            answered_waiting=waiting,
            reserved_calls=reserved_calls,
            agents_paused=sum(1 for s in agents if s.state is AgentState.PAUSED),
            settings=campaign.pacing_settings(),
        )

    async def _pace(self, campaign: Campaign) -> None:
        stats = self._campaign_stats(campaign) if campaign.mode is CampaignMode.PREDICTIVE else None
        decision = pacing.pace_decision(campaign.mode, self._snapshot(campaign), stats)
        if decision.dial_now <= 0:
            return
        if time.monotonic() < self._empty_until.get(campaign.id, 0.0):
            return
        ready = [s.agent_id for s in self.sessions.ready_agents(campaign.id)]
        result = await self.hopper.take(campaign, decision.dial_now, _now(), ready_agents=ready)
        self._note_blocks(campaign, result.blocked)
        if not result.attempts:
            # Nothing due now: look again in a while, not on every tick.
            self._empty_until[campaign.id] = time.monotonic() + HOPPER_EMPTY_BACKOFF_S
            return
        # A callback for one agent is placed for that agent, reserved now (in every mode);
        # progressive reserves one ready agent for each other call too.
        named = {a.agent_id for a in result.attempts}
        free = [s for s in self.sessions.ready_agents(campaign.id) if s.agent_id not in named]
        for attempt in result.attempts:
            if attempt.agent_id is not None:
                agent = self.sessions.by_agent.get(attempt.agent_id)
                agent = agent if agent is not None and agent.state is AgentState.READY else None
            elif decision.reserve_agents:
                agent = free.pop(0) if free else None
            else:
                self._originate(campaign, attempt, None)
                continue
            if agent is None:
                # The agent went away while the contact was taken: never dialled.
                await self._cancel_undialled(campaign, attempt)
                continue
            self.sessions.reserve(agent, attempt.channel_id, campaign.id)
            self._originate(campaign, attempt, agent)

    async def _cancel_undialled(self, campaign: Campaign, attempt: Attempt) -> None:
        call = LiveCall(attempt=attempt, campaign=campaign, cancelled=True)
        call.hangup_cause_txt = "no agent left to reserve"
        self.calls[call.channel_id] = call
        self._finish(call, cause=None)

    def _note_blocks(self, campaign: Campaign, blocked: dict[str, int]) -> None:
        mine = self.blocked.setdefault(campaign.id, {})
        for k, v in blocked.items():
            mine[k] = mine.get(k, 0) + v

    # --------------------------------------------------------- originate ---
    def _originate(self, campaign: Campaign, attempt: Attempt, agent: AgentSession | None) -> None:
        call = LiveCall(
            attempt=attempt, campaign=campaign, agent_id=agent.agent_id if agent else None, reserved=agent is not None
        )
        # Registered before the request: events for this channel can arrive before the answer.
        self.calls[call.channel_id] = call
        self._spawn(self._send_originate(call))

    async def _send_originate(self, call: LiveCall) -> None:
        a = call.attempt
        try:
            await self.ari.rest.originate(
                f"Local/{a.number}@{self.outbound_context}",
                a.channel_id,
                app=self.ari.app,
                app_args=f"customer,{a.id}",
                caller_id=a.caller_id or None,
                timeout=call.campaign.ring_timeout_s,
                variables={"HITCALL_ATTEMPT": str(a.id), "HITCALL_CAMPAIGN": str(a.campaign_id)},
            )
            self._originated(call)
        except AriError as exc:
            # Not retried: one attempt id, at most one originate.
            log.warning("dialer.originate_failed", attempt_id=str(a.id), error=exc.message)
            call.hangup_cause_txt = f"originate failed: {exc.message}"
            if call.channel_id in self.calls:
                self._finish(call, cause=None)

    def _originated(self, call: LiveCall) -> None:
        """Asterisk took the originate (its response, or the channel's first event if that
        comes first): call.originated, once, before any other event of the call."""
        if call.originated_at is not None:
            return
        call.originated_at = _now()
        a = call.attempt
        self.journal.event(
            "call.originated",
            f"attempt:{a.id}",
            {
                "attempt_id": str(a.id),
                "campaign_id": a.campaign_id,
                "contact_id": a.contact_id,
                "number": a.number,
                "agent_id": a.agent_id,
                "mode": a.mode.value,
                "at": call.originated_at.isoformat(),
            },
        )

    # ------------------------------------------------------------ events ---
    async def handle_event(self, ev: Any) -> None:
        etype = getattr(ev, "type", None)
        channel = getattr(ev, "channel", None)
        cid = channel.id if channel is not None else None
        if etype == "StasisStart":
            args = list(ev.args or [])
            kind = args[0] if args else ""
            if kind == "agent-login":
                endpoint = args[1] if len(args) > 1 else ""
                await self.sessions.login(cid, endpoint)
            elif kind in ("customer", "amd") and cid in self.calls:
                await self._answered(self.calls[cid], ev, args)
            elif kind in ("customer", "amd"):
                # A customer channel this process does not know (e.g. after a restart): end it.
                log.warning("dialer.unknown_customer_channel", channel_id=cid)
                await self._hangup(cid)
        elif etype == "ChannelStateChange" and cid in self.calls:
            call = self.calls[cid]
            if channel.state == "Ringing" and call.ringing_at is None:
                self._originated(call)
                call.ringing_at = ev.timestamp or _now()
                call.state = "ringing" if call.state == "originating" else call.state
        elif etype == "ChannelEnteredBridge" and cid in self.calls:
            self._bridged(self.calls[cid], ev.timestamp or _now())
        elif etype == "ChannelDestroyed":
            if cid in self.calls:
                self._finish(self.calls[cid], cause=ev.cause, cause_txt=ev.cause_txt, at=ev.timestamp)
            elif cid in self.sessions.by_channel:
                await self._agent_gone(cid)
        elif etype == "StasisEnd" and cid in self.sessions.by_channel:
            await self._agent_gone(cid)
        elif etype == "ChannelDtmfReceived" and cid in self.sessions.by_channel:
            self.sessions.dtmf(cid, ev.digit)
        elif etype == "PlaybackFinished":
            target = (ev.playback.target_uri or "").removeprefix("channel:")
            call = self.calls.get(target)
            if call is not None and call.info_playback == ev.playback.id:
                await self._hangup(call.channel_id)

    async def _agent_gone(self, channel_id: str) -> None:
        session = self.sessions.by_channel.get(channel_id)
        if session is None:
            return
        if session.attempt_id and session.attempt_id in self.calls:
            call = self.calls[session.attempt_id]
            if call.state == "bridged":
                await self._hangup(call.channel_id)
            elif call.reserved:
                call.reserved = False
                call.agent_id = None
        offer = self.offers.get(session.agent_id)
        if offer is not None:
            await self._decide_offer(offer, "timeout", None)
        await self.sessions.logout(channel_id)

    # ------------------------------------------------------------ answer ---
    async def _answered(self, call: LiveCall, ev: Any, args: list[str]) -> None:
        if args[0] != "amd":
            if call.answered_at is None:  # else already found answered by a resync or sweep
                await self._answer(call, ev.timestamp or _now())
            return
        call.amd_status = args[1] if len(args) > 1 and args[1] else None
        call.amd_cause = args[2] if len(args) > 2 and args[2] else None
        if call.amd_status == "MACHINE":
            await self._hangup(call.channel_id)
            return
        self._connect_or_wait(call)

    def _mark_answered(self, call: LiveCall, at: datetime) -> None:
        self._originated(call)
        call.answered_at = at
        call.answered_mono = time.monotonic()
        call.state = "answered"
        if call.ringing_at is None:
            call.ringing_at = call.originated_at or call.answered_at
        self._emit("call.answered", call)
        self._store_progress(call)

    async def _answer(self, call: LiveCall, at: datetime) -> None:
        self._mark_answered(call, at)
        if call.campaign.amd_enabled:
            await self._run_amd(call)
            return
        self._connect_or_wait(call)

    async def _found_answered(self, call: LiveCall, bridge_agent: int | None) -> None:
        """A customer Up in Stasis whose StasisStart never reached the dialer (lost in an
        ARI gap): the normal answer path, or, already in an agent's bridge, bridged."""
        if call.answered_at is not None or self.calls.get(call.channel_id) is not call:
            return  # its answer arrived meanwhile, or it ended
        log.warning("dialer.answer_recovered", attempt_id=str(call.attempt.id), agent_id=bridge_agent)
        if bridge_agent is None:
            await self._answer(call, _now())
            return
        self._mark_answered(call, _now())
        call.agent_id = bridge_agent
        session = self.sessions.by_agent.get(bridge_agent)
        if session is not None and session.state in (AgentState.READY, AgentState.RESERVED):
            self.sessions.connect(session, call.channel_id, call.campaign.id)
        self._bridged(call, call.answered_at or _now())

    async def _run_amd(self, call: LiveCall) -> None:
        # Keep events for the channel while it runs AMD in the dialplan.
        try:
            await self.ari.rest.subscribe(self.ari.app, f"channel:{call.channel_id}")
            await self.ari.rest.continue_in_dialplan(
                call.channel_id, context=self.amd_context, extension="s", priority=1
            )
        except AriError as exc:
            log.warning("dialer.amd_failed", attempt_id=str(call.attempt.id), error=exc.message)
            self._connect_or_wait(call)

    def _connect_or_wait(self, call: LiveCall) -> None:
        agent = self._agent_for(call)
        if agent is not None:
            self._connect(call, agent)
            return
        self.waiting.append(call)
        remaining = CONNECT_LIMIT_S - (time.monotonic() - (call.answered_mono or time.monotonic()))
        call.timer = asyncio.get_running_loop().call_later(max(0.0, remaining), self._connect_timeout, call)

    def _agent_for(self, call: LiveCall) -> AgentSession | None:
        if call.agent_id is not None:
            session = self.sessions.by_agent.get(call.agent_id)
            if session is not None and session.state is AgentState.RESERVED:
                return session
            call.agent_id = None
            call.reserved = False
        ready = self.sessions.ready_agents(call.campaign.id)
        return ready[0] if ready else None

    def _connect(self, call: LiveCall, agent: AgentSession) -> None:
        """Give the answered call to the agent (synchronously, so no one else takes
        the agent), then add it to the agent's bridge."""
        call.agent_id = agent.agent_id
        if call.timer:
            call.timer.cancel()
            call.timer = None
        self.sessions.connect(agent, call.channel_id, call.campaign.id)
        self._spawn(self._add_to_bridge(call, agent))

    async def _add_to_bridge(self, call: LiveCall, agent: AgentSession) -> None:
        try:
            await self.ari.rest.add_channel(agent.bridge_id, call.channel_id)
            call.added_at = _now()
        except AriNotFound:
            # The customer (or the agent's bridge) is gone: the destroy event finishes the call.
            log.info("dialer.bridge_target_gone", attempt_id=str(call.attempt.id), agent_id=agent.agent_id)

    def _bridged(self, call: LiveCall, at: datetime) -> None:
        if call.bridged_at is not None:
            return
        # An answer found by a resync or sweep is stamped with our clock (microseconds);
        # Asterisk's event times have milliseconds: never record a bridge before the answer.
        call.bridged_at = at if call.answered_at is None else max(at, call.answered_at)
        call.state = "bridged"
        if call.answered_at is not None:
            call.answer_to_bridge_ms = max(0, int((call.bridged_at - call.answered_at).total_seconds() * 1000))
        self._campaign_stats(call.campaign).observe_connect()
        self._emit("call.bridged", call)
        self._store_progress(call)
        if call.campaign.record_calls:
            self._spawn(self._start_recording(call))

    async def _start_recording(self, call: LiveCall) -> None:
        agent = self.sessions.by_agent.get(call.agent_id or -1)
        if agent is None:
            return
        rec_id = uuid.uuid4()
        try:
            await self.ari.rest.record_bridge(agent.bridge_id, str(rec_id), "wav", if_exists="fail")
            call.recording_id = rec_id
        except AriError as exc:
            log.warning("dialer.record_failed", attempt_id=str(call.attempt.id), error=exc.message)

    def _connect_timeout(self, call: LiveCall) -> None:
        call.timer = None
        if call.state != "answered" or call.channel_id not in self.calls:
            return
        try:
            self.waiting.remove(call)
        except ValueError:
            pass
        call.abandoned = True
        self._campaign_stats(call.campaign).observe_abandon()
        self._emit("call.abandoned", call)
        self._spawn(self._info_message(call))

    async def _info_message(self, call: LiveCall) -> None:
        media = call.campaign.info_message_sound
        if not media:
            await self._hangup(call.channel_id)
            return
        try:
            pb = await self.ari.rest.play(call.channel_id, media)
            call.info_playback = pb.id
            call.timer = asyncio.get_running_loop().call_later(
                INFO_MESSAGE_MAX_S, lambda: self._spawn(self._hangup(call.channel_id))
            )
        except AriError:
            await self._hangup(call.channel_id)

    # --------------------------------------------------------- agent side ---
    def _agent_changed(self, session: AgentSession, tr: AgentTransition) -> None:
        if tr.agent.state is AgentState.READY:
            # A waiting answered call gets this agent first: highest campaign priority, then oldest.
            mine = [c for c in self.waiting if c.campaign.id in session.campaigns]
            if mine:
                call = min(mine, key=lambda c: (-c.campaign.priority, c.answered_mono or 0.0))
                self.waiting.remove(call)
                self._connect(call, session)
                return
            self.wake()

    def _agent_key(self, session: AgentSession, digit: str) -> bool:
        if digit == KEY_HANGUP_CUSTOMER and session.state is AgentState.ON_CALL and session.attempt_id:
            self._spawn(self._hangup(session.attempt_id))
            return True
        if digit in DISPOSITION_KEYS and session.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
            self._spawn(self.set_disposition(session.agent_id, DISPOSITION_KEYS[digit]))
            return True
        offer = self.offers.get(session.agent_id)
        if offer is not None and digit in (KEY_PREVIEW_ACCEPT, KEY_PREVIEW_SKIP):
            decision = "accept" if digit == KEY_PREVIEW_ACCEPT else "skip"
            self._spawn(self._decide_offer(offer, decision, "agent_key" if decision == "skip" else None))
            return True
        return False

    async def set_disposition(self, agent_id: int, code: str) -> None:
        session = self.sessions.get(agent_id)
        attempt_id = session.attempt_id
        if attempt_id is None:
            raise Conflict("agent has no current or last call", details={"agent_id": agent_id})
        call = self.calls.get(attempt_id)
        if not DISPOSITION_CODE.fullmatch(code):
            raise ValidationFailed("disposition must be 1-64 of A-Z a-z 0-9 _ . -", details={"field": "disposition"})
        try:
            attempt_uuid = uuid.UUID(attempt_id)
        except ValueError:
            raise Conflict(
                "the agent's call is an inbound call, not a campaign attempt: no disposition",
                details={"agent_id": agent_id},
            ) from None
        if call is not None:
            call.disposition = code
        self.journal.disposition(attempt_uuid, code)

    # ----------------------------------------------------------- preview ---
    async def _offer_previews(self, campaign: Campaign) -> None:
        for agent in self.sessions.ready_agents(campaign.id):
            if agent.agent_id in self.offers:
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                row = await self.hopper.claim_one(campaign, _now(), conn, agent.agent_id)
                if row is None:
                    return
                offer_id = await conn.fetchval(
                    """INSERT INTO preview_offers (agent_id, campaign_id, contact_id, expires_at)
                       VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id""",
                    agent.agent_id,
                    campaign.id,
                    row["id"],
                    campaign.preview_offer_timeout_s,
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
                    f"agent:{agent.agent_id}",
                    {
                        "offer_id": offer_id,
                        "agent_id": agent.agent_id,
                        "campaign_id": campaign.id,
                        "contact_id": row["id"],
                        "number": row["phone_e164"],
                        "contact": contact,
                        "expires_in_s": campaign.preview_offer_timeout_s,
                    },
                )
            offer = Offer(offer_id, agent.agent_id, campaign, row["id"], row["phone_e164"], contact)
            self.offers[agent.agent_id] = offer
            self.sessions.reserve(agent, None, campaign.id)
            offer.expires = asyncio.get_running_loop().call_later(
                campaign.preview_offer_timeout_s, lambda o=offer: self._spawn(self._decide_offer(o, "timeout", None))
            )
            log.info("preview.offered", agent_id=agent.agent_id, offer_id=offer_id, contact_id=row["id"])

    async def accept_offer(self, agent_id: int) -> Attempt:
        offer = self.offers.get(agent_id)
        if offer is None:
            raise NotFound("no open preview offer for this agent", details={"agent_id": agent_id})
        attempt = await self._decide_offer(offer, "accept", None)
        assert attempt is not None
        return attempt

    async def skip_offer(self, agent_id: int, reason: str) -> None:
        offer = self.offers.get(agent_id)
        if offer is None:
            raise NotFound("no open preview offer for this agent", details={"agent_id": agent_id})
        await self._decide_offer(offer, "skip", reason)

    async def _decide_offer(self, offer: Offer, decision: str, reason: str | None) -> Attempt | None:
        if self.offers.get(offer.agent_id) is not offer:
            return None
        del self.offers[offer.agent_id]
        if offer.expires:
            offer.expires.cancel()
        session = self.sessions.by_agent.get(offer.agent_id)
        now = _now()
        attempt: Attempt | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            if decision == "accept" and session is not None:
                attempt = await self.hopper.attempt_for_contact(
                    conn, offer.campaign, offer.contact_id, now, offer.agent_id
                )
            if attempt is None:
                # Back in the hopper behind the contacts already due: skip moves on to the next one.
                await conn.execute(
                    f"UPDATE contacts SET status = {_BACK_TO_HOPPER}, "
                    "next_attempt_at = $2 WHERE id = $1 AND status = 'in_progress'",
                    offer.contact_id,
                    now,
                )
                decision = "skip" if decision == "accept" else decision
                reason = reason or ("agent gone" if session is None else None)
            await conn.execute(
                """UPDATE preview_offers SET decision = $2, decided_at = now(), skip_reason = $3, attempt_id = $4
                   WHERE id = $1""",
                offer.offer_id,
                decision,
                reason if decision == "skip" else None,
                attempt.id if attempt else None,
            )
        if attempt is not None and session is not None:
            session.attempt_id = attempt.channel_id
            self._originate(offer.campaign, attempt, session)
        elif session is not None:
            self.sessions.release(session)
        log.info("preview.decided", agent_id=offer.agent_id, offer_id=offer.offer_id, decision=decision)
        return attempt

    # ------------------------------------------------------------- end ---
    def _finish(
        self, call: LiveCall, *, cause: int | None, cause_txt: str | None = None, at: datetime | None = None
    ) -> None:
        if self.calls.pop(call.channel_id, None) is None:
            return
        if call.timer:
            call.timer.cancel()
        try:
            self.waiting.remove(call)
        except ValueError:
            pass
        call.ended_at = at or _now()
        call.hangup_cause = cause
        call.hangup_cause_txt = cause_txt or call.hangup_cause_txt
        answered = call.answered_at is not None
        outcome = call_outcome(call)
        if outcome is Outcome.ABANDONED and not call.abandoned:
            # Answered but gone before the 2 s were up (or AMD undecided): it still counts.
            call.abandoned = True
            self._campaign_stats(call.campaign).observe_abandon()
            self._emit("call.abandoned", call)
        stats = self._campaign_stats(call.campaign)
        ring_s = ((call.answered_at or call.ended_at) - (call.originated_at or call.attempt.created_at)).total_seconds()
        stats.observe_attempt(time.monotonic(), max(0.0, ring_s), answered)
        if outcome is Outcome.ANSWERED_MACHINE:
            stats.observe_amd_machine()
        session = self.sessions.by_agent.get(call.agent_id) if call.agent_id is not None else None
        if session is not None and session.attempt_id == call.channel_id:
            if session.state is AgentState.ON_CALL:
                if call.bridged_at:
                    stats.observe_talk((call.ended_at - call.bridged_at).total_seconds())
                self.sessions.customer_gone(session, call.campaign.wrap_up_s)
            elif session.state is AgentState.RESERVED:
                self.sessions.release(session)
        record = self._cdr_record(call, outcome)
        self._submit_cdr(record)
        self._close_attempt(call, outcome, record)
        for fn in self.on_call_end:
            fn(call, outcome)
        log.info(
            "call.ended",
            attempt_id=str(call.attempt.id),
            outcome=outcome.value,
            cause=cause,
            answer_to_bridge_ms=call.answer_to_bridge_ms,
            agent_id=call.agent_id,
        )
        self.wake()

    def _submit_cdr(self, record: dict[str, Any]) -> None:
        try:
            self.cdr.submit(record)
        except (ValidationFailed, Unavailable) as exc:
            log.error("dialer.cdr_refused", attempt_id=str(record["id"]), error=exc.message, details=exc.details)

    def _cdr_record(self, call: LiveCall, outcome: Outcome) -> dict[str, Any]:
        a = call.attempt
        start = call.originated_at or a.created_at
        ring_end = call.answered_at or call.ended_at
        ring_s = max(0.0, (ring_end - start).total_seconds()) if ring_end else None
        talk_s = (
            max(0.0, (call.ended_at - call.bridged_at).total_seconds()) if call.bridged_at and call.ended_at else 0.0
        )
        return {
            "id": a.id,
            "campaign_id": a.campaign_id,
            "contact_id": a.contact_id,
            "attempt_no": a.attempt_no,
            "dialled_number": a.number,
            "caller_id": a.caller_id,
            "agent_id": call.agent_id if call.bridged_at else a.agent_id,
            "mode": a.mode.value,
            "state": "ended",
            "created_at": a.created_at,
            "originated_at": call.originated_at,
            "ringing_at": call.ringing_at,
            "answered_at": call.answered_at,
            "bridged_at": call.bridged_at,
            "ended_at": call.ended_at,
            "ring_s": round(ring_s, 3) if ring_s is not None else None,
            "talk_s": round(talk_s, 3),
            "answer_to_bridge_ms": call.answer_to_bridge_ms,
            "outcome": outcome.value,
            "hangup_cause": call.hangup_cause,
            "hangup_cause_txt": call.hangup_cause_txt,
            "amd_status": call.amd_status,
            "amd_cause": call.amd_cause,
            "abandoned": call.abandoned,
            "disposition": call.disposition,
            "skip_reason": None,
            "recording_id": call.recording_id,
            "retention_until": a.retention_until,
        }

    def _close_attempt(self, call: LiveCall, outcome: Outcome, record: dict[str, Any]) -> None:
        """Contact bookkeeping for the next attempt, and the call.ended event."""
        a = call.attempt
        retry_at = next_retry(
            outcome, call.campaign.retry_delays, a.attempt_no, call.campaign.max_attempts, call.ended_at or _now()
        )
        if outcome is Outcome.ANSWERED_HUMAN:
            status = "done"
        elif retry_at is None:
            status = "failed" if outcome is not Outcome.ANSWERED_MACHINE else "done"
        else:
            status = "retry"
        if outcome is Outcome.CANCELLED:
            status, retry_at = "retry", None
        # A callback stays scheduled when its call never reached the customer.
        never_reached = outcome is Outcome.CANCELLED or (call.vanished and call.answered_at is None)
        self.journal.close_contact(
            a.contact_id,
            attempt_no=a.attempt_no,
            attempt_created_at=a.created_at,
            status=status,
            retry_at=retry_at,
            outcome=outcome.value,
            cancelled=never_reached,
        )
        payload = {k: (str(v) if isinstance(v, (uuid.UUID, datetime)) else v) for k, v in record.items()}
        self.journal.event("call.ended", f"attempt:{a.id}", payload)

    def _store_progress(self, call: LiveCall) -> None:
        """Answer and bridge times in the attempt row while the call is up: after a crash
        the next process knows which customer was answered or talking (never re-dialled
        as if unanswered; an answered, unbridged call counts as abandoned)."""
        self.journal.progress(
            call.attempt.id,
            answered_at=call.answered_at,
            bridged_at=call.bridged_at,
            agent_id=call.agent_id,
            answer_to_bridge_ms=call.answer_to_bridge_ms,
        )

    def _emit(self, event_type: str, call: LiveCall) -> None:
        payload = {
            "attempt_id": str(call.attempt.id),
            "campaign_id": call.campaign.id,
            "contact_id": call.attempt.contact_id,
            "agent_id": call.agent_id,
            "at": _now().isoformat(),
        }
        self.journal.event(event_type, f"attempt:{call.attempt.id}", payload)

    # ---------------------------------------------------------- control ---
    async def hangup_call(self, attempt_id: str) -> None:
        if attempt_id not in self.calls:
            raise NotFound("no live call with this attempt id", details={"attempt_id": attempt_id})
        await self._hangup(attempt_id)

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.ari.rest.hangup(channel_id)
        except AriError:
            pass

    def live_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "attempt_id": str(c.attempt.id),
                "campaign_id": c.campaign.id,
                "number": c.attempt.number,
                "state": c.state,
                "agent_id": c.agent_id,
                "answered_at": c.answered_at,
                "bridged_at": c.bridged_at,
            }
            for c in self.calls.values()
        ]

    # ---------------------------------------------------------- watchdog ---
    async def _watchdog_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.ari.connected.is_set():
                continue
            try:
                await self.sweep()
            except AriError as exc:
                log.warning("dialer.watchdog_failed", error=exc.message)
            except Exception:
                log.exception("dialer.watchdog_failed")

    async def sweep(self) -> None:
        """Compare the live calls and agent sessions with Asterisk's channels, so that no
        call waits forever for an event that was lost: a call or agent whose channel is
        gone at two sweeps in a row is finished (best outcome known) or logged out; a
        missed bridge entry is repaired; a call stuck past its limits is hung up and
        finished; a customer Up in Stasis whose answer was lost takes the answer path."""
        now = time.monotonic()
        # Judged: what existed before the listing (an originated call has its channel).
        calls = [c for c in self.calls.values() if c.originated_at is not None]
        phones = list(self.sessions.by_channel)
        channels = await self.ari.rest.channel_states()
        missing: set[str] = set()
        for call in calls:
            if self.calls.get(call.channel_id) is not call:
                continue
            if call.channel_id not in channels:
                if call.channel_id in self._missing:
                    log.warning("dialer.watchdog_call_gone", attempt_id=str(call.attempt.id), state=call.state)
                    call.hangup_cause_txt = "channel gone without a hangup event (watchdog)"
                    call.vanished = True
                    self._finish(call, cause=None)
                else:
                    missing.add(call.channel_id)
            elif call.answered_at is None and channels[call.channel_id] == ("Up", "Stasis"):
                await self._found_answered(call, call.agent_id if await self._in_agent_bridge(call) else None)
            elif call.state in ("originating", "ringing"):
                if now - call.placed_mono > call.campaign.ring_timeout_s + WATCHDOG_MARGIN_S:
                    await self._end_stuck(
                        call,
                        19 if call.state == "ringing" else None,
                        "no answer or hangup event past the ring timeout (watchdog)",
                    )
            elif call.state == "answered":
                waited = now - (call.answered_mono or now)
                if call.added_at is not None and waited > CONNECT_LIMIT_S and await self._in_agent_bridge(call):
                    log.warning("dialer.watchdog_bridge_repaired", attempt_id=str(call.attempt.id))
                    self._bridged(call, call.added_at)
                elif waited > CONNECT_LIMIT_S + INFO_MESSAGE_MAX_S + WATCHDOG_MARGIN_S:
                    await self._end_stuck(call, None, "answered, never bridged nor ended (watchdog)")
        for channel_id in phones:
            if channel_id in channels or channel_id not in self.sessions.by_channel:
                continue
            if channel_id in self._missing:
                log.warning("dialer.watchdog_agent_gone", agent_id=self.sessions.by_channel[channel_id].agent_id)
                await self._agent_gone(channel_id)
            else:
                missing.add(channel_id)
        self._missing = missing

    async def _in_agent_bridge(self, call: LiveCall) -> bool:
        agent = self.sessions.by_agent.get(call.agent_id) if call.agent_id is not None else None
        if agent is None:
            return False
        try:
            return call.channel_id in (await self.ari.rest.get_bridge(agent.bridge_id)).channels
        except AriNotFound:
            return False

    async def _end_stuck(self, call: LiveCall, cause: int | None, why: str) -> None:
        log.warning("dialer.watchdog_call_stuck", attempt_id=str(call.attempt.id), state=call.state, reason=why)
        await self._hangup(call.channel_id)
        self._finish(call, cause=cause, cause_txt=why)

    # ---------------------------------------------------------- recovery ---
    async def handle_resync(self, snap: Resync) -> None:
        """After (re)connect: close attempts whose channels are gone, re-attach agents' phones,
        adopt the calls a previous process left talking to an agent (first connect), and
        repair calls whose answer or bridge entry was lost while ARI was away."""
        live = {c.id: c for c in snap.channels}
        for cid, call in list(self.calls.items()):
            if cid not in live:
                call.hangup_cause_txt = "channel gone while ARI was disconnected"
                call.vanished = True
                self._finish(call, cause=None)
        for channel_id in list(self.sessions.by_channel):
            if channel_id not in live:
                await self._agent_gone(channel_id)
        bridges = agent_bridges(snap.bridges, live)
        talking = {c: agent_id for agent_id, (_, others) in bridges.items() for c in others}
        adopt: list[asyncpg.Record] = []
        if not self._recovered:
            adopt = await self._recover_attempts(live, talking)
        # Agents' phones still parked in their holding bridges stay logged in.
        for agent_id, (phones, _) in bridges.items():
            if agent_id not in self.sessions.by_agent:
                await self.sessions.adopt(phones[0], agent_id)
        for row in adopt:
            await self._adopt_call(row)
        self._recovered = True
        for cid, call in list(self.calls.items()):
            if self.calls.get(cid) is not call or cid not in live:
                continue
            channel = live[cid]
            if call.answered_at is None and channel.state == "Up" and channel.dialplan.app_name == "Stasis":
                await self._found_answered(call, talking.get(cid))
            elif call.answered_at is not None and call.bridged_at is None and cid in talking:
                log.warning("dialer.resync_bridge_repaired", attempt_id=str(call.attempt.id))
                self._bridged(call, _now())
        self.wake()

    async def _adopt_call(self, r: asyncpg.Record) -> None:
        """A customer a previous process put through to an agent, still talking: followed
        to its end like any call (its CDR carries the whole talk time)."""
        campaign = self.campaigns.get(r["campaign_id"]) or Campaign.from_row(
            await self.pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", r["campaign_id"])
        )
        attempt = Attempt(
            id=r["id"],
            campaign_id=r["campaign_id"],
            contact_id=r["contact_id"],
            attempt_no=r["attempt_no"],
            number=r["dialled_number"],
            caller_id=r["caller_id"] or "",
            agent_id=r["agent_id"],
            mode=CampaignMode(r["mode"]),
            created_at=r["created_at"],
            retention_until=r["retention_until"],
        )
        since = (_now() - r["answered_at"]).total_seconds()
        call = LiveCall(
            attempt=attempt,
            campaign=campaign,
            state="bridged",
            agent_id=r["agent_id"],
            originated_at=r["originated_at"] or r["created_at"],
            ringing_at=r["ringing_at"],
            answered_at=r["answered_at"],
            answered_mono=time.monotonic() - since,
            bridged_at=r["bridged_at"],
            answer_to_bridge_ms=r["answer_to_bridge_ms"],
            added_at=r["bridged_at"],
        )
        self.calls[call.channel_id] = call
        session = self.sessions.by_agent.get(r["agent_id"])
        if session is None:
            await self._hangup(call.channel_id)  # its agent is not logged in: the hangup event ends it
        else:
            self.sessions.connect(session, call.channel_id, campaign.id)
        log.warning("dialer.call_adopted", attempt_id=str(r["id"]), agent_id=r["agent_id"])

    async def _recover_attempts(self, live: dict[str, Any], talking: dict[str, int]) -> list[asyncpg.Record]:
        """First connect after a start: attempts left open by a previous process are
        closed (and their channels hung up); they are never dialled again. Returned: the
        attempts whose customer still talks to their agent (left open, to be adopted)."""
        rows = await self.pool.fetch("SELECT * FROM live_attempts ORDER BY created_at")
        adopt = []
        for r in rows:
            cid = str(r["id"])
            if cid in self.calls:
                continue
            if r["bridged_at"] is not None and r["agent_id"] is not None and talking.get(cid) == r["agent_id"]:
                adopt.append(r)
                continue
            if cid in live:
                await self._hangup(cid)
            answered = r["answered_at"] is not None
            outcome = (
                Outcome.ABANDONED
                if answered and r["bridged_at"] is None
                else (Outcome.ANSWERED_HUMAN if r["bridged_at"] is not None else Outcome.CANCELLED)
            )
            now = _now()
            record = {k: r[k] for k in r.keys()}
            record.update(
                state="ended",
                ended_at=now,
                outcome=outcome.value,
                abandoned=outcome is Outcome.ABANDONED,
                hangup_cause_txt="recovered after service restart",
            )
            self._submit_cdr(record)
            # A callback whose call never reached the customer stays scheduled.
            await self.pool.execute(
                """UPDATE contacts SET
                       status = CASE WHEN $2 THEN 'done' WHEN $3 AND callback_at IS NOT NULL THEN 'callback'
                                     ELSE 'retry' END,
                       callback_at = CASE WHEN $3 THEN callback_at END,
                       callback_agent_id = CASE WHEN $3 THEN callback_agent_id END
                   WHERE id = $1 AND status = 'in_progress'""",
                r["contact_id"],
                outcome is Outcome.ANSWERED_HUMAN,
                outcome is Outcome.CANCELLED,
            )
            log.warning("dialer.attempt_recovered", attempt_id=cid, outcome=outcome.value, live=cid in live)
        await self.pool.execute(
            "UPDATE preview_offers SET decision = 'timeout', decided_at = now() WHERE decision IS NULL"
        )
        # Contacts left in progress without an open attempt or offer go back to the hopper.
        await self.pool.execute(
            f"""UPDATE contacts c SET status = {_BACK_TO_HOPPER}
               WHERE status = 'in_progress'
                 AND NOT EXISTS (SELECT 1 FROM live_attempts a WHERE a.contact_id = c.id)
                 AND NOT EXISTS (SELECT 1 FROM preview_offers p WHERE p.contact_id = c.id AND p.decision IS NULL)"""
        )
        await self.pool.execute("UPDATE agent_state_log SET ended_at = now() WHERE ended_at IS NULL")
        await self.pool.execute(
            "UPDATE agents SET state = 'logged_out', pause_code = NULL, state_since = now() WHERE state <> 'logged_out'"
        )
        return adopt
