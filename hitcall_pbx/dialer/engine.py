"""The dialing engine: campaigns, pacing, originate, answer → agent bridge, outcomes.

It is the adapter around the pure core (pacing, compliance, outcomes, the call
lifecycle in `core.calls`): ARI events come in through `handle_event` (one at a
time, in order), a pacing tick decides how many calls each running campaign places,
the hopper creates the attempt rows (committed before originate), and every
finished attempt leaves one CDR through the injected sink. Its parts: preview
offers (`preview`), resync / watchdog / restart recovery (`recovery`), the SQL it
runs (`store`), the live call and its CDR (`calls`).

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
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

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
from ..core.calls import DIALLING_STATES, CallEvent, CallState
from ..core.compliance import CampaignMode
from ..core.outcomes import Outcome, contact_after
from ..core.states import AgentState, AgentTransition
from ..errors import Conflict, NotFound, Unavailable, ValidationFailed
from ..logs import get_logger
from ..records.journal import CallJournal
from ..stasis import StasisKind, app_args, parse_args
from ..tasks import TaskSet
from .calls import CdrSink, LiveCall, cdr_record, json_payload
from .hopper import Hopper
from .models import Attempt, Campaign
from .preview import Offer, PreviewOffers
from .recovery import CONNECT_LIMIT_S, INFO_MESSAGE_MAX_S, Recovery
from .store import DialerStore

log = get_logger("hitcall.dialer")

HOPPER_EMPTY_BACKOFF_S = 2.0
DISPOSITION_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

__all__ = ["Dialer", "LiveCall", "Offer", "load_stats"]


def _now() -> datetime:
    return datetime.now(UTC)


async def load_stats(store: DialerStore, campaign: Campaign, today: datetime) -> pacing.PacingStats:
    """Pacing statistics seeded with today's and the last 30 days' abandon counts."""
    stats = pacing.PacingStats(ring_timeout_s=float(campaign.ring_timeout_s))
    tallies = await store.abandon_tallies(campaign.id)
    day = today.date()
    # One tally per past day, oldest first (days without calls count as empty days).
    history = [tallies.get(day - timedelta(days=n), pacing.AbandonTally()) for n in range(29, 0, -1)]
    stats.restore(tallies.get(day, pacing.AbandonTally()), history)
    return stats


class Dialer:
    def __init__(
        self,
        ari: AriClient,
        store: DialerStore,
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
        self.store = store
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
        self.blocked: dict[int, dict[str, int]] = {}
        self._empty_until: dict[int, float] = {}
        self._stats_day: dict[int, str] = {}
        self._tasks = TaskSet("dialer")
        self._loop_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._dialing_paused_reason: str | None = None
        self.previews = PreviewOffers(store, sessions, self._place, self._spawn)
        self.recovery = Recovery(self)
        self.on_call_end: list[Callable[[LiveCall, Outcome], None]] = []
        sessions.on_transition(self._agent_changed)
        sessions.on_dtmf(self._agent_key)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.store.pool

    @property
    def offers(self) -> dict[int, Offer]:
        """Open preview offers by agent id."""
        return self.previews.offers

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
        await self.previews.close()
        if hangup_calls:
            for call in list(self.calls.values()):
                await self.hangup(call.channel_id)
        await self._tasks.wait()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._tasks.spawn(coro)

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no call is live and the calls' writes are committed (tests, demo)."""
        deadline = time.monotonic() + timeout
        while (self.calls or self._tasks) and time.monotonic() < deadline:  # noqa: ASYNC110 - two conditions, no event
            await asyncio.sleep(0.05)
        try:
            await self.journal.flush(max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            pass

    # ------------------------------------------------------------ views ---
    def call_counts(self) -> dict[tuple[int, str], int]:
        """Live calls by (campaign id, call state)."""
        counts: dict[tuple[int, str], int] = {}
        for c in self.calls.values():
            key = (c.campaign.id, c.state.value)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def pacing_stats(self) -> Mapping[int, pacing.PacingStats]:
        """Each running campaign's pacing statistics, by campaign id."""
        return self.stats

    def live_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "attempt_id": str(c.attempt.id),
                "campaign_id": c.campaign.id,
                "number": c.attempt.number,
                "state": c.state.value,
                "agent_id": c.agent_id,
                "answered_at": c.answered_at,
                "bridged_at": c.bridged_at,
            }
            for c in self.calls.values()
        ]

    # ------------------------------------------------------- campaigns ---
    async def refresh_campaigns(self) -> None:
        fresh = await self.store.running_campaigns()
        for cid, campaign in fresh.items():
            if cid not in self.stats:
                now = _now()
                self.stats[cid] = await load_stats(self.store, campaign, now)
                self._stats_day[cid] = now.date().isoformat()
        self.campaigns = fresh

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
        if not self.ari.connected.is_set() or not self.recovery.recovered:
            return
        for campaign in sorted(self.campaigns.values(), key=lambda c: -c.priority):
            if campaign.mode is CampaignMode.PREVIEW:
                await self.previews.offer(campaign)
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
            if c.state in DIALLING_STATES:
                if c.reserved:
                    reserved_calls += 1
                else:
                    dialling.append(now - c.placed_mono)
            elif c.state is CallState.ANSWERED and c.agent_id is None:
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
            agent: AgentSession | None
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
                self._cancel_undialled(campaign, attempt)
                continue
            self._place(campaign, attempt, agent)

    def _cancel_undialled(self, campaign: Campaign, attempt: Attempt) -> None:
        call = LiveCall.placed(attempt, campaign)
        self.calls[call.channel_id] = call
        self.finish(call, cause=None, cause_txt="no agent left to reserve", cancelled=True)

    def _note_blocks(self, campaign: Campaign, blocked: dict[str, int]) -> None:
        mine = self.blocked.setdefault(campaign.id, {})
        for k, v in blocked.items():
            mine[k] = mine.get(k, 0) + v

    # --------------------------------------------------------- originate ---
    def _place(self, campaign: Campaign, attempt: Attempt, agent: AgentSession) -> None:
        """A call for one agent (progressive, preview, personal callback): reserved, then dialled."""
        self.sessions.reserve(agent, attempt.channel_id, campaign.id)
        self._originate(campaign, attempt, agent)

    def _originate(self, campaign: Campaign, attempt: Attempt, agent: AgentSession | None) -> None:
        call = LiveCall.placed(attempt, campaign, agent_id=agent.agent_id if agent else None)
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
                app_args=app_args(StasisKind.CUSTOMER, a.id),
                caller_id=a.caller_id or None,
                timeout=call.campaign.ring_timeout_s,
                variables={"HITCALL_ATTEMPT": str(a.id), "HITCALL_CAMPAIGN": str(a.campaign_id)},
            )
            self._originated(call)
        except AriError as exc:
            # Not retried: one attempt id, at most one originate.
            log.warning("dialer.originate_failed", attempt_id=str(a.id), error=exc.message)
            if call.channel_id in self.calls:
                self.finish(call, cause=None, cause_txt=f"originate failed: {exc.message}")

    def _originated(self, call: LiveCall) -> None:
        """Asterisk took the originate (its response, or the channel's first event if that
        comes first): call.originated, once, before any other event of the call."""
        if call.state is not CallState.RESERVED:
            return
        call.apply(CallEvent.ORIGINATE, _now())
        a = call.attempt
        assert call.originated_at is not None
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
            kind, rest = parse_args(ev.args)
            if kind is StasisKind.AGENT_LOGIN:
                await self.sessions.login(cid, rest[0] if rest else "")
            elif kind in (StasisKind.CUSTOMER, StasisKind.AMD) and cid in self.calls:
                await self._answered(self.calls[cid], ev, kind, rest)
            elif kind in (StasisKind.CUSTOMER, StasisKind.AMD):
                # A customer channel this process does not know (e.g. after a restart): end it.
                log.warning("dialer.unknown_customer_channel", channel_id=cid)
                await self.hangup(cid)
        elif etype == "ChannelStateChange" and cid in self.calls:
            call = self.calls[cid]
            if channel.state == "Ringing" and call.ringing_at is None:
                self._originated(call)
                if call.state is CallState.ORIGINATING:
                    call.apply(CallEvent.RING, ev.timestamp or _now())
        elif etype == "ChannelEnteredBridge" and cid in self.calls:
            self.bridged(self.calls[cid], ev.timestamp or _now())
        elif etype == "ChannelDestroyed":
            if cid in self.calls:
                self.finish(self.calls[cid], cause=ev.cause, cause_txt=ev.cause_txt, at=ev.timestamp)
            elif cid in self.sessions.by_channel:
                await self.agent_gone(cid)
        elif etype == "StasisEnd" and cid in self.sessions.by_channel:
            await self.agent_gone(cid)
        elif etype == "ChannelDtmfReceived" and cid in self.sessions.by_channel:
            self.sessions.dtmf(cid, ev.digit)
        elif etype == "PlaybackFinished":
            target = (ev.playback.target_uri or "").removeprefix("channel:")
            call = self.calls.get(target)
            if call is not None and call.info_playback == ev.playback.id:
                await self.hangup(call.channel_id)

    async def handle_resync(self, snap: Resync) -> None:
        await self.recovery.resync(snap)

    async def sweep(self) -> None:
        await self.recovery.sweep()

    async def agent_gone(self, channel_id: str) -> None:
        session = self.sessions.by_channel.get(channel_id)
        if session is None:
            return
        if session.attempt_id and session.attempt_id in self.calls:
            call = self.calls[session.attempt_id]
            if call.state is CallState.BRIDGED:
                await self.hangup(call.channel_id)
            elif call.reserved:
                call.reserved = False
                call.agent_id = None
        await self.previews.agent_gone(session.agent_id)
        await self.sessions.logout(channel_id)

    # ------------------------------------------------------------ answer ---
    async def _answered(self, call: LiveCall, ev: Any, kind: StasisKind, rest: list[str]) -> None:
        if kind is StasisKind.CUSTOMER:
            if call.answered_at is None:  # else already found answered by a resync or sweep
                await self._answer(call, ev.timestamp or _now())
            return
        if call.answered_at is None:
            self._mark_answered(call, ev.timestamp or _now())
        call.apply(
            CallEvent.AMD,
            ev.timestamp or _now(),
            amd_status=rest[0] if rest else None,
            amd_cause=rest[1] if len(rest) > 1 else None,
        )
        if call.fsm.amd_status == "MACHINE":
            await self.hangup(call.channel_id)
            return
        self._connect_or_wait(call)

    def _mark_answered(self, call: LiveCall, at: datetime) -> None:
        self._originated(call)
        call.apply(CallEvent.ANSWER, at)
        call.answered_mono = time.monotonic()
        self._emit("call.answered", call)
        self._store_progress(call)

    async def _answer(self, call: LiveCall, at: datetime) -> None:
        self._mark_answered(call, at)
        if call.campaign.amd_enabled:
            await self._run_amd(call)
            return
        self._connect_or_wait(call)

    async def found_answered(self, call: LiveCall, bridge_agent: int | None) -> None:
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
        self.bridged(call, call.answered_at or _now())

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

    def bridged(self, call: LiveCall, at: datetime) -> None:
        if call.state is not CallState.ANSWERED:
            return  # bridged already, or not a customer we put through
        call.apply(CallEvent.BRIDGE, at)
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
        if call.state is not CallState.ANSWERED or call.channel_id not in self.calls:
            return
        try:
            self.waiting.remove(call)
        except ValueError:
            pass
        call.apply(CallEvent.ABANDON, _now())
        self._campaign_stats(call.campaign).observe_abandon()
        self._emit("call.abandoned", call)
        self._spawn(self._info_message(call))

    async def _info_message(self, call: LiveCall) -> None:
        media = call.campaign.info_message_sound
        if not media:
            await self.hangup(call.channel_id)
            return
        try:
            pb = await self.ari.rest.play(call.channel_id, media)
            call.info_playback = pb.id
            call.timer = asyncio.get_running_loop().call_later(
                INFO_MESSAGE_MAX_S, lambda: self._spawn(self.hangup(call.channel_id))
            )
        except AriError:
            await self.hangup(call.channel_id)

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
            self._spawn(self.hangup(session.attempt_id))
            return True
        if digit in DISPOSITION_KEYS and session.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
            self._spawn(self.set_disposition(session.agent_id, DISPOSITION_KEYS[digit]))
            return True
        offer = self.offers.get(session.agent_id)
        if offer is not None and digit in (KEY_PREVIEW_ACCEPT, KEY_PREVIEW_SKIP):
            decision = "accept" if digit == KEY_PREVIEW_ACCEPT else "skip"
            self._spawn(self.previews.decide(offer, decision, "agent_key" if decision == "skip" else None))
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
    async def accept_offer(self, agent_id: int) -> Attempt:
        return await self.previews.accept(agent_id)

    async def skip_offer(self, agent_id: int, reason: str) -> int:
        """Skip the agent's open preview offer; the offer's id."""
        return await self.previews.skip(agent_id, reason)

    # ------------------------------------------------------------- end ---
    def finish(
        self,
        call: LiveCall,
        *,
        cause: int | None,
        cause_txt: str | None = None,
        at: datetime | None = None,
        vanished: bool = False,
        cancelled: bool = False,
    ) -> None:
        if self.calls.pop(call.channel_id, None) is None:
            return
        if call.timer:
            call.timer.cancel()
        try:
            self.waiting.remove(call)
        except ValueError:
            pass
        counted = call.abandoned
        ended = call.apply(
            CallEvent.END, at or _now(), cause=cause, cause_txt=cause_txt, vanished=vanished, cancelled=cancelled
        )
        assert ended.outcome is not None and ended.metrics is not None and ended.ended_at is not None
        outcome = ended.outcome
        stats = self._campaign_stats(call.campaign)
        if ended.abandoned and not counted:
            # Answered but gone before the 2 s were up (or AMD undecided): it still counts.
            stats.observe_abandon()
            self._emit("call.abandoned", call)
        stats.observe_attempt(time.monotonic(), ended.metrics.ring_s, ended.answered)
        if outcome is Outcome.ANSWERED_MACHINE:
            stats.observe_amd_machine()
        session = self.sessions.by_agent.get(call.agent_id) if call.agent_id is not None else None
        if session is not None and session.attempt_id == call.channel_id:
            if session.state is AgentState.ON_CALL:
                if ended.bridged_at:
                    stats.observe_talk(ended.metrics.talk_s)
                self.sessions.customer_gone(session, call.campaign.wrap_up_s)
            elif session.state is AgentState.RESERVED:
                self.sessions.release(session)
        record = cdr_record(call)
        self.submit_cdr(record)
        self._close_attempt(call, record)
        for fn in self.on_call_end:
            fn(call, outcome)
        log.info(
            "call.ended",
            attempt_id=str(call.attempt.id),
            outcome=outcome.value,
            cause=cause,
            answer_to_bridge_ms=ended.answer_to_bridge_ms,
            agent_id=call.agent_id,
        )
        self.wake()

    def submit_cdr(self, record: dict[str, Any]) -> None:
        try:
            self.cdr.submit(record)
        except (ValidationFailed, Unavailable) as exc:
            log.error("dialer.cdr_refused", attempt_id=str(record["id"]), error=exc.message, details=exc.details)

    def _close_attempt(self, call: LiveCall, record: dict[str, Any]) -> None:
        """Contact bookkeeping for the next attempt, and the call.ended event."""
        a, ended = call.attempt, call.fsm
        assert ended.outcome is not None and ended.ended_at is not None
        update = contact_after(
            ended.outcome,
            retry_delays=call.campaign.retry_delays,
            attempt_no=a.attempt_no,
            max_attempts=call.campaign.max_attempts,
            ended_at=ended.ended_at,
            vanished_unanswered=ended.vanished and not ended.answered,
        )
        self.journal.close_contact(
            a.contact_id,
            attempt_no=a.attempt_no,
            attempt_created_at=a.created_at,
            status=update.status.value,
            retry_at=update.retry_at,
            outcome=ended.outcome.value,
            cancelled=update.never_reached,
        )
        self.journal.event("call.ended", f"attempt:{a.id}", json_payload(record))

    def _store_progress(self, call: LiveCall) -> None:
        """Answer and bridge times in the attempt row while the call is up: after a crash
        the next process knows which customer was answered or talking (never re-dialled
        as if unanswered; an answered, unbridged call counts as abandoned)."""
        self.journal.progress(
            call.attempt.id,
            answered_at=call.answered_at,
            bridged_at=call.bridged_at,
            agent_id=call.agent_id,
            answer_to_bridge_ms=call.fsm.answer_to_bridge_ms,
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
        await self.hangup(attempt_id)

    async def hangup(self, channel_id: str) -> None:
        try:
            await self.ari.rest.hangup(channel_id)
        except AriError:
            pass

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
