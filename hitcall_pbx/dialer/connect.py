"""The answer → agent path: an answered customer (after AMD when the campaign runs it)
goes to its reserved agent or the first ready one, is added to the agent's bridge and
recorded; with no agent within the 2-second limit it is abandoned and hears the
campaign's information message. A customer whose answer was lost in an ARI gap joins
the same path when the resync or the watchdog finds it Up in Stasis."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..agents.sessions import AgentSession
from ..ari import BRIDGE_SIDE_GONE, AriError
from ..core.calls import CallEvent, CallState
from ..core.states import AgentState
from ..logs import get_logger
from ..stasis import StasisKind
from .calls import LiveCall

if TYPE_CHECKING:
    from .engine import Dialer

log = get_logger("hitcall.dialer")

CONNECT_LIMIT_S = 2.0
INFO_MESSAGE_MAX_S = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


class AnswerPath:
    def __init__(self, dialer: Dialer) -> None:
        self.d = dialer

    async def answered(self, call: LiveCall, ev: Any, kind: StasisKind, rest: list[str]) -> None:
        if kind is StasisKind.CUSTOMER:
            if call.answered_at is None:  # else already found answered by a resync or sweep
                await self._answer(call, ev.timestamp or _now())
                # Let the bridge request just spawned go out now. The event reader does not
                # yield while more events are buffered, so under load the request would
                # otherwise wait behind every event already received.
                await asyncio.sleep(0)
            return
        if call.answered_at is None:
            self.mark_answered(call, ev.timestamp or _now())
        call.apply(
            CallEvent.AMD,
            ev.timestamp or _now(),
            amd_status=rest[0] if rest else None,
            amd_cause=rest[1] if len(rest) > 1 else None,
        )
        if call.fsm.amd_status == "MACHINE":
            if self.d.voicemail.wanted(call):
                await self.d.voicemail.leave(call)
            else:
                await self.d.hangup(call.channel_id)
            return
        self._connect_or_wait(call)
        await asyncio.sleep(0)  # the bridge request goes out before the next event (see above)

    def mark_answered(self, call: LiveCall, at: datetime) -> None:
        self.d._originated(call)
        call.apply(CallEvent.ANSWER, at)
        call.answered_mono = time.monotonic()
        # The call stopped ringing: the contact rate counts it now, not when the call ends
        # (minutes later), or a fresh campaign's early busy lines would read as no contacts.
        start = call.fsm.originated_at or call.fsm.created_at
        ring_s = max(0.0, (at - start).total_seconds())
        self.d.pacer.stats_for(call.campaign).observe_attempt(call.answered_mono, ring_s, True)
        call.answer_observed = True
        self.d.ledger.event("call.answered", call)
        self.d.ledger.progress(call)

    async def _answer(self, call: LiveCall, at: datetime) -> None:
        self.mark_answered(call, at)
        if call.campaign.amd_enabled:
            await self._run_amd(call)
            return
        self._connect_or_wait(call)

    async def found_answered(self, call: LiveCall, bridge_agent: int | None) -> None:
        """A customer Up in Stasis whose StasisStart never reached the dialer (lost in an
        ARI gap): the normal answer path, or, already in an agent's bridge, bridged."""
        if call.answered_at is not None or self.d.calls.get(call.channel_id) is not call:
            return  # its answer arrived meanwhile, or it ended
        log.warning("dialer.answer_recovered", attempt_id=str(call.attempt.id), agent_id=bridge_agent)
        if bridge_agent is None:
            await self._answer(call, _now())
            return
        self.mark_answered(call, _now())
        call.agent_id = bridge_agent
        session = self.d.sessions.by_agent.get(bridge_agent)
        if session is not None and session.state in (AgentState.READY, AgentState.RESERVED):
            self.d.sessions.connect(session, call.channel_id, call.campaign.id)
        self.bridged(call, call.answered_at or _now())

    async def _run_amd(self, call: LiveCall) -> None:
        # Keep events for the channel while it runs AMD in the dialplan.
        try:
            await self.d.ari.rest.subscribe(self.d.ari.app, f"channel:{call.channel_id}")
            await self.d.ari.rest.continue_in_dialplan(
                call.channel_id, context=self.d.amd_context, extension="s", priority=1
            )
        except AriError as exc:
            log.warning("dialer.amd_failed", attempt_id=str(call.attempt.id), error=exc.message)
            self._connect_or_wait(call)

    def _connect_or_wait(self, call: LiveCall) -> None:
        agent = self._agent_for(call)
        if agent is not None:
            self.connect(call, agent)
            return
        if call.attempt.manual:
            # Its agent is gone and no other agent takes a manual call: the information message.
            self._connect_timeout(call)
            return
        self.d.waiting.append(call)
        remaining = CONNECT_LIMIT_S - (time.monotonic() - (call.answered_mono or time.monotonic()))
        call.timer = asyncio.get_running_loop().call_later(max(0.0, remaining), self._connect_timeout, call)

    def _agent_for(self, call: LiveCall) -> AgentSession | None:
        if call.agent_id is not None:
            session = self.d.sessions.by_agent.get(call.agent_id)
            if session is not None and session.state is AgentState.RESERVED and not session.leaving:
                return session
            call.agent_id = None
            call.reserved = False
        if call.attempt.manual:
            return None
        ready = self.d.sessions.ready_agents(call.campaign.id)
        return ready[0] if ready else None

    def connect(self, call: LiveCall, agent: AgentSession) -> None:
        """Give the answered call to the agent (synchronously, so no one else takes
        the agent), then add it to the agent's bridge."""
        call.agent_id = agent.agent_id
        if call.timer:
            call.timer.cancel()
            call.timer = None
        self.d.sessions.connect(agent, call.channel_id, call.campaign.id)
        self.d._spawn(self._add_to_bridge(call, agent))

    async def _add_to_bridge(self, call: LiveCall, agent: AgentSession) -> None:
        try:
            await self.d.ari.rest.add_channel(agent.bridge_id, call.channel_id)
            call.added_at = _now()
        except BRIDGE_SIDE_GONE:
            # The customer (or the agent's bridge) is gone: the destroy event finishes the call.
            log.info("dialer.bridge_target_gone", attempt_id=str(call.attempt.id), agent_id=agent.agent_id)

    def bridged(self, call: LiveCall, at: datetime) -> None:
        if call.state is not CallState.ANSWERED:
            return  # bridged already, or not a customer we put through
        call.apply(CallEvent.BRIDGE, at)
        self.d.pacer.stats_for(call.campaign).observe_connect()
        self.d.ledger.event("call.bridged", call)
        self.d.ledger.progress(call)
        if call.campaign.record_calls:
            self.d._spawn(self._start_recording(call))

    async def _start_recording(self, call: LiveCall) -> None:
        agent = self.d.sessions.by_agent.get(call.agent_id or -1)
        if agent is None:
            return
        rec_id = uuid.uuid4()
        try:
            await self.d.ari.rest.record_bridge(agent.bridge_id, str(rec_id), "wav", if_exists="fail")
            call.recording_id = rec_id
            self.d.journal.recording(call.attempt.id, rec_id)
        except AriError as exc:
            log.warning("dialer.record_failed", attempt_id=str(call.attempt.id), error=exc.message)

    def _connect_timeout(self, call: LiveCall) -> None:
        call.timer = None
        if call.state is not CallState.ANSWERED or call.channel_id not in self.d.calls:
            return
        if call in self.d.waiting:
            self.d.waiting.remove(call)
        call.apply(CallEvent.ABANDON, _now())
        self.d.pacer.stats_for(call.campaign).observe_abandon()
        self.d.ledger.event("call.abandoned", call)
        self.d._spawn(self._info_message(call))

    async def _info_message(self, call: LiveCall) -> None:
        media = call.campaign.info_message_sound
        if not media:
            await self.d.hangup(call.channel_id)
            return
        try:
            pb = await self.d.ari.rest.play(call.channel_id, media)
            call.info_playback = pb.id
            call.timer = asyncio.get_running_loop().call_later(
                INFO_MESSAGE_MAX_S, lambda: self.d._spawn(self.d.hangup(call.channel_id))
            )
        except AriError:
            await self.d.hangup(call.channel_id)

    def agent_ready(self, session: AgentSession) -> bool:
        """A newly ready agent takes a waiting answered call first: highest campaign
        priority, then the oldest. False when none waits for the agent's campaigns, or when
        the agent's phone has hung up (its wrap-up can end while its logout runs)."""
        if session.leaving:
            return False
        mine = [c for c in self.d.waiting if c.campaign.id in session.campaigns]
        if not mine:
            return False
        call = min(mine, key=lambda c: (-c.campaign.priority, c.answered_mono or 0.0))
        self.d.waiting.remove(call)
        self.connect(call, session)
        return True
