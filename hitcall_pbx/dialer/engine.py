"""The dialing engine: campaigns, pacing, originate, answer → agent bridge, outcomes.

It is the adapter around the pure core (pacing, compliance, outcomes, the call
lifecycle in `core.calls`): ARI events come in through `handle_event` (one at a
time, in order), a pacing tick decides how many calls each running campaign places,
the hopper creates the attempt rows (committed before originate), and every
finished attempt leaves one CDR through the injected sink. Its parts: the answer →
agent path (`connect`), preview offers (`preview`), manual dial (`manual`), resync / watchdog / restart
recovery (`recovery`), pacing and the hopper (`pacer`), what a call writes
(`ledger`), the SQL it runs (`store`), the live call and its CDR (`calls`). What
stays here, at about 540 lines, is the call's life — originate, the event dispatch,
the end, agent keys and dispositions — and the loop that runs them.

Never dial twice: an attempt's ARI channel id is its attempt id, the row exists
before originate, and an attempt is originated at most once by this process;
after a restart, attempts without a live channel are closed, never re-dialled.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..agents.sessions import (
    KEY_HANGUP_CUSTOMER,
    KEY_PREVIEW_ACCEPT,
    KEY_PREVIEW_SKIP,
    AgentSession,
    AgentSessions,
)
from ..ari import AriError, AriPort, Resync
from ..auth import Actor
from ..core import pacing
from ..core.answer_stamp import SlotPool, parse_stamp, stamp_variable
from ..core.calls import CallEvent, CallState
from ..core.compliance import CampaignMode
from ..core.outcomes import Outcome
from ..core.states import AgentState, AgentTransition
from ..errors import NotFound
from ..logs import get_logger
from ..records.journal import CallJournal
from ..stasis import StasisKind, app_args, parse_args
from ..store.dispositions import CallbackSpec
from ..tasks import TaskSet
from .calls import CdrSink, LiveCall
from .connect import AnswerPath
from .dispositions import DispositionDesk
from .hopper import Hopper, StaleLease
from .ledger import CallLedger
from .manual import ManualDial
from .models import Attempt, Campaign
from .pacer import CampaignPacer, Flight
from .preview import Offer, PreviewOffers
from .recovery import Recovery
from .store import CallStore
from .transfer import Transfers
from .voicemail import VoicemailDrop

log = get_logger("hitcall.dialer")

__all__ = ["Dialer", "LiveCall", "Offer"]


def _now() -> datetime:
    return datetime.now(UTC)


PASS_SHARE = 0.2
# Flights (pacing decisions whose contacts are being taken, see dialer.pacer) at once, all
# campaigns together: each holds one of the pool's connections (20, shared with the journal,
# the API and the webhooks) for a transaction of a few milliseconds.
MAX_FLIGHTS = 4
FAILURE_BACKOFF_S = 0.5


def pass_gap(last_pass_s: float, *, lo: float, hi: float, share: float = PASS_SHARE) -> float:
    """Seconds from one pacing pass to the next when wake-ups keep coming: short while passes
    are quick, so a freed agent's next call goes out within `lo` and the calls of agents freed
    a moment apart are not gathered into one wave (customers who answer alike would then all
    reach agents in the same few milliseconds); long enough under load that passes take at most
    `share` of the time, up to `hi`."""
    return min(hi, max(lo, last_pass_s / share))


class Dialer:
    def __init__(
        self,
        ari: AriPort,
        store: CallStore,
        sessions: AgentSessions,
        hopper: Hopper,
        cdr: CdrSink,
        *,
        tick_s: float = 0.25,
        min_tick_gap_s: float = 0.01,
        max_tick_gap_s: float = 0.05,
        campaign_refresh_s: float = 1.0,
        outbound_context: str = "hitcall-outbound",
        amd_context: str = "hitcall-amd",
        transfer_context: str = "hitcall-transfer",
        journal: CallJournal,
        watchdog_s: float | None = 5.0,
        fenced: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.ari = ari
        self.store = store
        self.sessions = sessions
        self.hopper = hopper
        self.cdr = cdr
        self.journal = journal
        self.ledger = CallLedger(journal, cdr)
        self.watchdog_s = watchdog_s
        self.fenced = fenced  # why this process may not dial any more (None: it may)
        self.tick_s = tick_s
        # Wake-ups (a call ended, an agent is ready) come in bursts under load: at most one
        # pacing pass per gap (see `pass_gap`), so a pass costs O(agents + calls) a few times a
        # second, not per event.
        self.min_tick_gap_s = min_tick_gap_s
        self.max_tick_gap_s = max_tick_gap_s
        self.campaign_refresh_s = campaign_refresh_s
        self.outbound_context = outbound_context
        self.amd_context = amd_context
        self.calls: dict[str, LiveCall] = {}
        self.waiting: deque[LiveCall] = deque()
        self.pacer = CampaignPacer(store, hopper, sessions, self.calls)
        self.slots = SlotPool()
        self._tasks = TaskSet("dialer")
        self._loop_task: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._dialing_paused_reason: str | None = None
        self._retry_at = 0.0  # after a failed pass or flight, no pass before this (monotonic)
        self._failing_flights = False  # the last flight failed: a quick pass does not clear the pause
        self.previews = PreviewOffers(store, sessions, self._originate, self._spawn)
        self.recovery = Recovery(self)
        self.answers = AnswerPath(self)
        self.voicemail = VoicemailDrop(self)
        self.manual = ManualDial(self)
        self.transfers = Transfers(self, context=transfer_context)
        self.on_call_end: list[Callable[[LiveCall, Outcome], None]] = [self.transfers.call_ended]
        self.dispositions = DispositionDesk(store, sessions, journal, self.calls, self._spawn)
        self.on_call_end.append(self.dispositions.call_ended)
        sessions.on_transition(self._agent_changed)
        sessions.on_dtmf(self._agent_key)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.store.pool

    @property
    def campaigns(self) -> dict[int, Campaign]:
        """The running campaigns, by id."""
        return self.pacer.campaigns

    @property
    def stats(self) -> dict[int, pacing.PacingStats]:
        return self.pacer.stats

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
        await self.pacer.refresh()

    # ------------------------------------------------------------ loop ---
    async def _loop(self) -> None:
        last_refresh = last_tick = time.monotonic()
        last_pass_s = 0.0
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            except TimeoutError:
                pass
            gap = pass_gap(last_pass_s, lo=self.min_tick_gap_s, hi=self.max_tick_gap_s)
            wait = max(gap - (time.monotonic() - last_tick), self._retry_at - time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            last_tick = time.monotonic()
            try:
                if time.monotonic() - last_refresh >= self.campaign_refresh_s:
                    await self.refresh_campaigns()
                    await self.sessions.refresh_campaigns()
                    last_refresh = time.monotonic()
                    self._failing_flights = False  # PostgreSQL answers again
                started = time.monotonic()
                await self.tick()
                last_pass_s = time.monotonic() - started
                if self.fenced() is None and not self._failing_flights:
                    self._dialing_paused_reason = None
            except Exception as exc:  # every failure pauses the passes a while
                self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        """A pacing pass or flight failed: why dialling is paused, and no pass for a while."""
        self._retry_at = time.monotonic() + FAILURE_BACKOFF_S
        if isinstance(exc, StaleLease):
            # Another node took the pool: its attempts were refused before any originate.
            if self._dialing_paused_reason != exc.message:
                log.error("dialer.fenced", reason=exc.message)
            self._dialing_paused_reason = exc.message
        elif isinstance(exc, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            # Postgres down: no attempt can get its stored id, so nothing is dialled.
            if self._dialing_paused_reason is None:
                log.warning("dialer.paused_db_unavailable", error=str(exc))
            self._dialing_paused_reason = f"database unavailable: {exc}"
        else:
            log.error("dialer.tick_failed", exc_info=exc)

    def wake(self) -> None:
        self._wake.set()

    async def tick(self) -> None:
        if not self.ari.connected.is_set() or not self.recovery.recovered:
            return
        fenced = self.fenced()
        if fenced is not None:
            if self._dialing_paused_reason != fenced:
                log.error("dialer.fenced", reason=fenced)
                self._dialing_paused_reason = fenced
            return
        for campaign in sorted(self.campaigns.values(), key=lambda c: -c.priority):
            if campaign.mode is CampaignMode.PREVIEW:
                await self.previews.offer(campaign)
            else:
                await self.previews.offer_callbacks(campaign)  # a due personal callback goes to its agent first
                await self._pace(campaign)

    async def _pace(self, campaign: Campaign) -> None:
        """Decide now; take the contacts and dial in a flight of its own, so that this pass
        (and the next, for an agent freed meanwhile) does not wait for Postgres."""
        if len(self.pacer.in_air) >= MAX_FLIGHTS:
            return  # the pass after a flight lands decides again
        flight = self.pacer.plan(campaign)
        if flight is not None:
            self._spawn(self._fly(flight))

    async def _fly(self, flight: Flight) -> None:
        campaign = flight.campaign
        try:
            placements = await self.pacer.take(flight)
        except Exception as exc:  # handled as a failed pass
            self._failing_flights = True
            self._failed(exc)
            return
        finally:
            self.wake()  # decide again: for agents freed meanwhile, or with its holds back
        self._failing_flights = False
        if self.fenced() is None:
            self._dialing_paused_reason = None
        # Stopped, or Asterisk gone, while the contacts were taken: none is dialled (an
        # originate now would fail and spend the contact's attempt; given back, it is retried).
        why = None
        if self._closing:
            why = "the dialer stopped before it was dialled"
        elif not self.ari.connected.is_set():
            why = "Asterisk went away before it was dialled"
        if why is not None:
            for p in placements:
                self._cancel_undialled(campaign, p.attempt, why)
            return
        for p in placements:
            if not p.for_agent:
                self._originate(campaign, p.attempt, None)
            elif p.agent is None:
                # The agent went away while the contact was taken: never dialled.
                self._cancel_undialled(campaign, p.attempt)
            else:
                self._place(campaign, p.attempt, p.agent)

    def _cancel_undialled(self, campaign: Campaign, attempt: Attempt, why: str = "no agent left to reserve") -> None:
        call = LiveCall.placed(attempt, campaign)
        self.calls[call.channel_id] = call
        self.finish(call, cause=None, cause_txt=why, cancelled=True)

    # --------------------------------------------------------- originate ---
    def _place(self, campaign: Campaign, attempt: Attempt, agent: AgentSession) -> None:
        """A call for one agent (progressive, preview, personal callback): reserved, then dialled."""
        self.sessions.reserve(agent, attempt.channel_id, campaign.id)
        self._originate(campaign, attempt, agent)

    def _originate(self, campaign: Campaign, attempt: Attempt, agent: AgentSession | None) -> None:
        call = LiveCall.placed(attempt, campaign, agent_id=agent.agent_id if agent else None)
        call.slot = self.slots.take()
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
                variables={
                    "HITCALL_ATTEMPT": str(a.id),
                    "HITCALL_CAMPAIGN": str(a.campaign_id),
                    "HITCALL_SLOT": str(call.slot),
                },
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
        if channel is None:
            if etype == "PlaybackFinished":
                await self._playback_finished(ev)
            return
        cid: str = channel.id
        if await self.transfers.handle_event(ev):
            return
        if etype == "StasisStart":
            kind, rest = parse_args(ev.args)
            if kind is StasisKind.AGENT_LOGIN:
                await self.sessions.login(cid, rest[0] if rest else "")
            elif kind in (StasisKind.CUSTOMER, StasisKind.AMD) and cid in self.calls:
                await self.answers.answered(self.calls[cid], ev, kind, rest)
            elif kind is StasisKind.VOICEMAIL and cid in self.calls:
                await self.voicemail.returned(self.calls[cid], rest)
            elif kind in (StasisKind.CUSTOMER, StasisKind.AMD, StasisKind.VOICEMAIL):
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
                call = self.calls[cid]
                if channel.state == "Up" and call.answered_at is None:
                    # Answered, and gone before it reached Stasis (Asterisk stopping at that
                    # moment): the customer picked up and nobody was there. Abandoned, counted.
                    self.answers.mark_answered(call, ev.timestamp or _now())
                self.finish(call, cause=ev.cause, cause_txt=ev.cause_txt, at=ev.timestamp)
            elif cid in self.sessions.by_channel:
                await self.agent_gone(cid)
        elif etype == "StasisEnd" and cid in self.sessions.by_channel:
            await self.agent_gone(cid)
        elif etype == "ChannelDtmfReceived" and cid in self.sessions.by_channel:
            self.sessions.dtmf(cid, ev.digit)

    async def _playback_finished(self, ev: Any) -> None:
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
        # At once, before anything is awaited: no answer or pacing pass takes this agent now.
        session.leaving = True
        if await self.transfers.agent_gone(session):
            pass  # a transfer keeps the customer: see dialer.transfer
        elif session.attempt_id and session.attempt_id in self.calls:
            call = self.calls[session.attempt_id]
            if call.state is CallState.BRIDGED or (
                call.state is CallState.ANSWERED and session.state is AgentState.ON_CALL
            ):
                # Talking to the agent, or put through to it as it left: the customer goes too.
                await self.hangup(call.channel_id)
            elif call.reserved:
                call.reserved = False
                call.agent_id = None
        await self.previews.agent_gone(session.agent_id)
        self.dispositions.forget_agent(session.agent_id)
        await self.sessions.logout(channel_id)

    def bridged(self, call: LiveCall, at: datetime) -> None:
        self.answers.bridged(call, at)

    async def found_answered(self, call: LiveCall, bridge_agent: int | None) -> None:
        await self.answers.found_answered(call, bridge_agent)

    # --------------------------------------------------------- agent side ---
    def _agent_changed(self, session: AgentSession, tr: AgentTransition) -> None:
        if tr.agent.state is AgentState.READY and not self.answers.agent_ready(session):
            self.wake()

    def _agent_key(self, session: AgentSession, digit: str) -> bool:
        if self.transfers.key(session, digit):
            return True
        if digit == KEY_HANGUP_CUSTOMER and session.state is AgentState.ON_CALL and session.attempt_id:
            self._spawn(self.hangup(session.attempt_id))
            return True
        if self.dispositions.key(session, digit):
            return True
        offer = self.offers.get(session.agent_id)
        if offer is not None and digit in (KEY_PREVIEW_ACCEPT, KEY_PREVIEW_SKIP):
            decision = "accept" if digit == KEY_PREVIEW_ACCEPT else "skip"
            self._spawn(self.previews.decide(offer, decision, "agent_key" if decision == "skip" else None))
            return True
        return False

    async def set_disposition(
        self,
        agent_id: int,
        code: str,
        *,
        attempt_id: uuid.UUID | None = None,
        actor: Actor | None = None,
        callback: CallbackSpec | None = None,
    ) -> dict[str, Any]:
        """The disposition of the agent's call (`attempt_id` None: its current or last call),
        checked against the campaign's list, its rule applied (see dialer.dispositions)."""
        return await self.dispositions.set(
            agent_id,
            code,
            attempt_id=attempt_id,
            actor=actor or Actor(f"agent:{agent_id}", "agent"),
            callback=callback,
        )

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
        if call.slot is not None:
            self.slots.give_back(call.slot)
        if call.timer:
            call.timer.cancel()
        if call in self.waiting:  # deque.remove of a missing item formats its repr: costly
            self.waiting.remove(call)
        counted = call.abandoned
        ended = call.apply(
            CallEvent.END, at or _now(), cause=cause, cause_txt=cause_txt, vanished=vanished, cancelled=cancelled
        )
        assert ended.outcome is not None and ended.metrics is not None and ended.ended_at is not None
        outcome = ended.outcome
        stats = self.pacer.stats_for(call.campaign)
        if ended.abandoned and not counted:
            # Answered but gone before the 2 s were up (or AMD undecided): it still counts.
            stats.observe_abandon()
            self.ledger.event("call.abandoned", call)
        if not call.answer_observed:  # an answer is counted when it happens (dialer.connect)
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
        self.ledger.ended(call)
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

    async def finish_vanished(self, call: LiveCall, cause_txt: str) -> None:
        """A call whose channel went away while its events were lost: its answer, when the
        dialplan stamped one, still counts (an answered customer nobody took is abandoned)."""
        if call.answered_at is None and call.slot is not None:
            try:
                stamp = await self.ari.rest.get_global_var(stamp_variable(call.slot))
            except AriError as exc:
                log.warning("dialer.answer_stamp_unreadable", attempt_id=str(call.attempt.id), error=exc.message)
                stamp = ""
            at = parse_stamp(stamp, call.attempt.id)
            if at is not None and self.calls.get(call.channel_id) is call and call.answered_at is None:
                log.warning("dialer.answer_found_in_stamp", attempt_id=str(call.attempt.id), answered_at=at.isoformat())
                self.answers.mark_answered(call, at)
        self.finish(call, cause=None, cause_txt=cause_txt, vanished=True)

    def submit_cdr(self, record: dict[str, Any]) -> None:
        self.ledger.submit_cdr(record)

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
