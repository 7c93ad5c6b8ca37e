"""Keeping the dialer's picture true to Asterisk: the resync after every (re)connect,
the watchdog sweep against lost events, and, at the first connect after a start,
closing or adopting the attempts a stopped process left open (and, through `on_restart`,
the inbound calls: `dialer.inbound`).

A node runs a dialer for a pool only while it holds the pool's lease (`cluster`), taken
only once the previous holder's lease lapsed, and recovery reads and resets only that
pool's rows (`store.DialerStore`): the open attempts and agent rows it touches are never
another live node's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from ..ari import AriError, AriNotFound, Resync
from ..core.answer_stamp import MAX_SLOTS_SCANNED, read_stamp, stamp_variable
from ..core.calls import DIALLING_STATES, CallState, adopted_call, recovered_outcome
from ..core.outcomes import CallMode, Outcome, contact_after
from ..logs import get_logger
from .calls import LiveCall, agent_bridges
from .connect import CONNECT_LIMIT_S, INFO_MESSAGE_MAX_S
from .models import Attempt
from .voicemail import voicemail_time

if TYPE_CHECKING:
    from .engine import Dialer

log = get_logger("hitcall.dialer")

WATCHDOG_MARGIN_S = 10.0


def _now() -> datetime:
    return datetime.now(UTC)


class Recovery:
    def __init__(self, dialer: Dialer) -> None:
        self.d = dialer
        self.recovered = False  # the first resync after start has run
        self._missing: set[str] = set()  # channels not in Asterisk at the last sweep
        # Run at the first connect after a start, once the agents' phones and the outbound
        # calls are adopted and before dialling starts: the inbound router's recovery.
        self.on_restart: list[Callable[[Resync], Awaitable[None]]] = []
        # Run after each watchdog sweep (the inbound router's look for calls nobody follows).
        self.on_sweep: list[Callable[[], Awaitable[None]]] = []

    # ---------------------------------------------------------- watchdog ---
    async def sweep(self) -> None:
        """Compare the live calls and agent sessions with Asterisk's channels, so that no
        call waits forever for an event that was lost: a call or agent whose channel is
        gone at two sweeps in a row is finished (best outcome known) or logged out; a
        missed bridge entry is repaired; a call stuck past its limits is hung up and
        finished; a customer Up in Stasis whose answer was lost takes the answer path."""
        d = self.d
        now = time.monotonic()
        # Judged: what existed before the listing (an originated call has its channel).
        calls = [c for c in d.calls.values() if c.originated_at is not None]
        phones = list(d.sessions.by_channel)
        channels = await d.ari.rest.channel_states()
        missing: set[str] = set()
        for call in calls:
            if d.calls.get(call.channel_id) is not call:
                continue
            if call.channel_id not in channels:
                if call.channel_id in self._missing:
                    log.warning("dialer.watchdog_call_gone", attempt_id=str(call.attempt.id), state=call.state)
                    await d.finish_vanished(call, "channel gone without a hangup event (watchdog)")
                else:
                    missing.add(call.channel_id)
            elif call.answered_at is None and channels[call.channel_id] == ("Up", "Stasis"):
                await d.found_answered(call, call.agent_id if await self._in_agent_bridge(call) else None)
            elif call.state in DIALLING_STATES:
                if now - call.placed_mono > call.campaign.ring_timeout_s + WATCHDOG_MARGIN_S:
                    await self._end_stuck(
                        call,
                        19 if call.state is CallState.RINGING else None,
                        "no answer or hangup event past the ring timeout (watchdog)",
                    )
            elif call.state is CallState.ANSWERED:
                waited = now - (call.answered_mono or now)
                if call.added_at is not None and waited > CONNECT_LIMIT_S and await self._in_agent_bridge(call):
                    log.warning("dialer.watchdog_bridge_repaired", attempt_id=str(call.attempt.id))
                    d.bridged(call, call.added_at)
                elif waited > CONNECT_LIMIT_S + INFO_MESSAGE_MAX_S + WATCHDOG_MARGIN_S + voicemail_time(call):
                    await self._end_stuck(call, None, "answered, never bridged nor ended (watchdog)")
        for channel_id in phones:
            if channel_id in channels or channel_id not in d.sessions.by_channel:
                continue
            if channel_id in self._missing:
                log.warning("dialer.watchdog_agent_gone", agent_id=d.sessions.by_channel[channel_id].agent_id)
                await d.agent_gone(channel_id)
            else:
                missing.add(channel_id)
        self._missing = missing
        for hook in self.on_sweep:
            try:
                await hook()
            except Exception:  # the dialer's own sweep is done; the hook tries again next time
                log.exception("dialer.sweep_hook_failed")

    async def _in_agent_bridge(self, call: LiveCall) -> bool:
        agent = self.d.sessions.by_agent.get(call.agent_id) if call.agent_id is not None else None
        if agent is None:
            return False
        try:
            return call.channel_id in (await self.d.ari.rest.get_bridge(agent.bridge_id)).channels
        except AriNotFound:
            return False

    async def _end_stuck(self, call: LiveCall, cause: int | None, why: str) -> None:
        log.warning("dialer.watchdog_call_stuck", attempt_id=str(call.attempt.id), state=call.state, reason=why)
        await self.d.hangup(call.channel_id)
        self.d.finish(call, cause=cause, cause_txt=why)

    # ------------------------------------------------------------ resync ---
    async def resync(self, snap: Resync) -> None:
        """After (re)connect: close attempts whose channels are gone, re-attach agents' phones,
        adopt the calls a previous process left talking to an agent (first connect), and
        repair calls whose answer or bridge entry was lost while ARI was away."""
        d = self.d
        live = {c.id: c for c in snap.channels}
        for cid, call in list(d.calls.items()):
            if cid not in live:
                await d.finish_vanished(call, "channel gone while ARI was disconnected")
        for channel_id in list(d.sessions.by_channel):
            if channel_id not in live:
                await d.agent_gone(channel_id)
        bridges = agent_bridges(snap.bridges, live)
        talking = {c: agent_id for agent_id, (_, others) in bridges.items() for c in others}
        adopt: list[asyncpg.Record] = []
        if not self.recovered:
            adopt = await self._recover_attempts(live, talking)
        # Agents' phones still parked in their holding bridges stay logged in.
        for agent_id, (phones, _) in bridges.items():
            if agent_id not in d.sessions.by_agent:
                await d.sessions.adopt(phones[0], agent_id)
        for row in adopt:
            await self._adopt_call(row)
        if not self.recovered:
            for hook in self.on_restart:
                try:
                    await hook(snap)
                except Exception:  # the dialer still starts; the hook's calls stay open for the next start
                    log.exception("dialer.restart_hook_failed")
        self.recovered = True
        for cid, call in list(d.calls.items()):
            if d.calls.get(cid) is not call or cid not in live:
                continue
            channel = live[cid]
            if call.answered_at is None and channel.state == "Up" and channel.dialplan.app_name == "Stasis":
                await d.found_answered(call, talking.get(cid))
            elif call.state is CallState.ANSWERED and cid in talking:
                log.warning("dialer.resync_bridge_repaired", attempt_id=str(call.attempt.id))
                d.bridged(call, _now())
        d.wake()

    async def _adopt_call(self, r: asyncpg.Record) -> None:
        """A customer a previous process put through to an agent, still talking: followed
        to its end like any call (its CDR carries the whole talk time)."""
        d = self.d
        campaign = d.campaigns.get(r["campaign_id"]) or await d.store.campaign(r["campaign_id"])
        attempt = Attempt(
            id=r["id"],
            campaign_id=r["campaign_id"],
            contact_id=r["contact_id"],
            attempt_no=r["attempt_no"],
            number=r["dialled_number"],
            caller_id=r["caller_id"] or "",
            agent_id=r["agent_id"],
            mode=CallMode(r["mode"]),
            created_at=r["created_at"],
            retention_until=r["retention_until"],
        )
        since = (_now() - r["answered_at"]).total_seconds()
        fsm = adopted_call(
            str(r["id"]),
            created_at=r["created_at"],
            originated_at=r["originated_at"],
            ringing_at=r["ringing_at"],
            answered_at=r["answered_at"],
            bridged_at=r["bridged_at"],
            answer_to_bridge_ms=r["answer_to_bridge_ms"],
        )
        call = LiveCall(
            attempt=attempt,
            campaign=campaign,
            fsm=fsm,
            agent_id=r["agent_id"],
            answered_mono=time.monotonic() - since,
            added_at=r["bridged_at"],
            recording_id=r["recording_id"],  # stopped and stored when the call ends, like any other
            disposition=r["disposition"],  # given before the restart: its rule applies when the call ends
        )
        d.calls[call.channel_id] = call
        # Its connect is in no CDR yet: today's pacing statistics count it now (loaded also for
        # a campaign that is not running, whose statistics the call's end updates as well).
        await d.pacer.track(campaign)
        d.pacer.stats_for(campaign).observe_connect()
        session = d.sessions.by_agent.get(r["agent_id"])
        if session is None:
            await d.hangup(call.channel_id)  # its agent is not logged in: the hangup event ends it
        else:
            d.sessions.connect(session, call.channel_id, campaign.id)
        log.warning("dialer.call_adopted", attempt_id=str(r["id"]), agent_id=r["agent_id"])

    async def _answer_stamps(self) -> dict[str, datetime]:
        """The answer stamps the dialplan left in slots 0, 1, 2, ... (attempt id hex → time)."""
        found: dict[str, datetime] = {}
        for slot in range(MAX_SLOTS_SCANNED):
            try:
                value = await self.d.ari.rest.get_global_var(stamp_variable(slot))
            except AriError as exc:
                log.warning("dialer.answer_stamps_unreadable", slot=slot, error=exc.message)
                break
            if not value:
                break  # a slot never used: the ones above it were never used either
            stamp = read_stamp(value)
            if stamp is not None:
                found[stamp[0]] = stamp[1]
        return found

    async def _recover_attempts(self, live: dict[str, Any], talking: dict[str, int]) -> list[asyncpg.Record]:
        """First connect after a start: attempts left open by a previous process are
        closed (and their channels hung up); they are never dialled again. Returned: the
        attempts whose customer still talks to their agent (left open, to be adopted)."""
        d = self.d
        adopt = []
        stamps: dict[str, datetime] | None = None
        for r in await d.store.open_attempts():
            cid = str(r["id"])
            if cid in d.calls:
                continue
            if r["bridged_at"] is not None and r["agent_id"] is not None and talking.get(cid) == r["agent_id"]:
                adopt.append(r)
                continue
            if cid in live:
                await d.hangup(cid)
            answered_at = r["answered_at"]
            if answered_at is None:
                # Answered while no process followed it? The dialplan's stamp says.
                stamps = await self._answer_stamps() if stamps is None else stamps
                answered_at = stamps.get(r["id"].hex)
            outcome = recovered_outcome(answered=answered_at is not None, bridged=r["bridged_at"] is not None)
            now = _now()
            record = dict(r.items())
            record.update(
                state=CallState.ENDED.value,
                answered_at=answered_at,
                ended_at=now,
                outcome=outcome.value,
                abandoned=outcome is Outcome.ABANDONED,
                hangup_cause_txt="recovered after service restart",
            )
            d.submit_cdr(record)
            campaign = d.campaigns.get(r["campaign_id"]) or await d.store.campaign(r["campaign_id"])
            update = contact_after(
                outcome,
                retry_delays=campaign.retry_delays,
                attempt_no=r["attempt_no"],
                max_attempts=campaign.max_attempts,
                ended_at=now,
            )
            await d.store.close_recovered_contact(r["contact_id"], r["attempt_no"], update, outcome.value)
            # Its abandon or connect is in no CDR yet: today's pacing statistics count it now.
            stats = d.pacer.stats.get(campaign.id)
            if stats is not None and outcome is Outcome.ABANDONED:
                stats.observe_abandon()
            elif stats is not None and outcome is Outcome.ANSWERED_HUMAN:
                stats.observe_connect()
            log.warning("dialer.attempt_recovered", attempt_id=cid, outcome=outcome.value, live=cid in live)
        await d.store.reset_after_restart()
        return adopt
