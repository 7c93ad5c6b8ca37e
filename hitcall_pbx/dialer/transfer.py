"""Transfers and conference on ARI bridges: the adapter around `core.transfer`.

Where everyone is: an agent's phone lives in its own holding bridge
(``hitcall-agent-<id>``) and a customer talks to the agent there. A transfer of a call
has one more bridge, ``hitcall-xfer-<attempt id>-<n>``: the customer waits there with music
on hold (an attended transfer, or a blind one to a number while it rings), and a customer
handed over to an external number talks to it there. The target of an attended transfer
joins the transferring agent's bridge for the consultation (an agent's phone, or the
answered external channel); a conference brings the customer in as well. Handing the
customer over to an agent moves the customer into that agent's own bridge, so that the
target agent's call is like any other (phone keys, hang-up, wrap-up when it ends).

External numbers are dialled as ``Local/<number>@hitcall-transfer`` (dialplan: the same
trunk as hitcall-outbound) into Stasis with ``transfer,<attempt id>``.

Agent states: a target agent is reserved while consulted, on a call once the customer
is with it; the transferring agent goes to wrap-up when it leaves the call. Each party's
time on the call is a leg (`core.transfer.Legs`), written to call_legs as it ends.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..agents.sessions import KEY_HANGUP_CUSTOMER, AgentSession
from ..ari import AriError, Resync
from ..core.calls import CallState
from ..core.outcomes import Outcome
from ..core.states import AgentState
from ..core.transfer import (
    LegRole,
    Legs,
    Step,
    Target,
    TargetKind,
    Transfer,
    TransferEffect,
    TransferEvent,
    TransferKind,
    TransferState,
    start_transfer,
    transfer_transition,
)
from ..errors import Conflict, NotFound
from ..logs import get_logger
from ..stasis import StasisKind, app_args, parse_args
from .calls import LiveCall, is_agent_phone

if TYPE_CHECKING:
    from .engine import Dialer

log = get_logger("hitcall.dialer.transfer")

TARGET_RING_S = 30  # an external target that does not answer in this time has failed

# Q.850 causes of a failed external target, in words (the CDR's transfer_cause).
_CAUSES = {17: "busy", 18: "no answer", 19: "no answer", 21: "rejected", 34: "congestion", 1: "unallocated number"}

_EVENT_OF_STATE = {
    TransferState.COMPLETED: "transfer.completed",
    TransferState.CANCELLED: "transfer.cancelled",
    TransferState.FAILED: "transfer.failed",
    TransferState.CONFERENCE: "conference.started",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _phones(channel_ids: list[str], live: dict[str, Any]) -> list[tuple[str, str]]:
    """The agents' SIP phones among a bridge's channels: (channel id, endpoint); a caller
    from a trunk (the return-call line, the other server's node) is no phone."""
    out = []
    for cid in channel_ids:
        channel = live.get(cid)
        name = getattr(channel, "name", "")
        if name.startswith("PJSIP/") and is_agent_phone(channel):
            out.append((cid, name.removeprefix("PJSIP/").rsplit("-", 1)[0]))
    return out


@dataclass(eq=False)
class Active:
    """A call's transfer while it runs (and, for a customer handed to a number, until the call ends)."""

    call: LiveCall
    bridge_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    target_channel: str | None = None  # the external target's channel
    target_up: bool = False
    bridge_made: bool = False

    @property
    def transfer(self) -> Transfer:
        assert self.call.transfer is not None
        return self.call.transfer


class Transfers:
    def __init__(self, dialer: Dialer, *, context: str = "hitcall-transfer", ring_s: int = TARGET_RING_S) -> None:
        self.d = dialer
        self.context = context
        self.ring_s = ring_s
        self.active: dict[str, Active] = {}  # by the call's channel id
        self.by_target: dict[str, str] = {}  # external target channel → the call's channel id
        dialer.recovery.on_restart.append(self.recover)

    # ------------------------------------------------------------ requests ---
    def _call_of(self, agent_id: int) -> LiveCall:
        session = self.d.sessions.get(agent_id)
        call = self.d.calls.get(session.attempt_id or "")
        if call is None or session.state is not AgentState.ON_CALL or call.state is not CallState.BRIDGED:
            raise Conflict(
                "the agent has no customer on the line to transfer", code="no_call", details={"agent_id": agent_id}
            )
        return call

    def _resolve(self, call: LiveCall, agent_id: int, target: Target) -> AgentSession | None:
        """The ready agent an agent or campaign target names (None for a number)."""
        if target.kind is TargetKind.AGENT:
            assert target.agent_id is not None
            if target.agent_id == agent_id:
                raise Conflict("an agent cannot transfer a call to itself", details={"field": "target.agent_id"})
            s = self.d.sessions.by_agent.get(target.agent_id)
            if s is None or s.pin_pending or s.state is not AgentState.READY:
                raise Conflict(
                    "the target agent is not logged in and ready",
                    code="target_not_ready",
                    details={"field": "target.agent_id", "state": s.state.value if s else "logged_out"},
                )
            return s
        if target.kind is TargetKind.CAMPAIGN:
            assert target.campaign_id is not None
            ready = [s for s in self.d.sessions.ready_agents(target.campaign_id) if s.agent_id != agent_id]
            if not ready:
                raise Conflict(
                    "no agent of the campaign is ready", code="no_ready_agent", details={"field": "target.campaign_id"}
                )
            return ready[0]
        return None

    async def start(self, agent_id: int, kind: TransferKind, target: Target) -> Transfer:
        """Start a transfer of the agent's customer. NotFound: the agent is not logged in;
        Conflict: no customer on the line, a transfer already running, the target not ready."""
        call = self._call_of(agent_id)
        current = self.active.get(call.channel_id)
        if current is not None and not current.transfer.state.final:
            raise Conflict("a transfer of this call is already in progress", code="transfer_in_progress")
        if current is not None:
            raise Conflict("the call was handed over to an external number", code="transferred")
        to = self._resolve(call, agent_id, target)
        now = _now()
        step = start_transfer(
            kind,
            target,
            attempt_id=call.channel_id,
            from_agent_id=agent_id,
            to_agent_id=to.agent_id if to else None,
            now=now,
        )
        if to is not None:
            self.d.sessions.reserve(to, call.channel_id, call.campaign.id)
        if not call.legs.items and call.bridged_at is not None:
            call.legs = call.legs.join(LegRole.AGENT, call.bridged_at, agent_id=agent_id)
        # a bridge of its own for each transfer: the last one's may still be going away
        active = Active(call, f"hitcall-xfer-{call.channel_id}-{uuid.uuid4().hex[:8]}")
        self.active[call.channel_id] = active
        call.transfer = step.transfer
        self._event("transfer.started", active)
        log.info("transfer.started", attempt_id=str(call.attempt.id), kind=kind.value, target=target.describe())
        async with active.lock:
            await self._effects(active, step, None)
        return call.transfer

    def _mine(self, agent_id: int) -> Active:
        for a in self.active.values():
            if a.transfer.from_agent_id == agent_id and not a.transfer.state.final:
                return a
        raise Conflict("the agent has no transfer in progress", code="no_transfer", details={"agent_id": agent_id})

    async def act(self, agent_id: int, event: TransferEvent) -> Transfer:
        """Complete, cancel or make a conference of the agent's running attended transfer."""
        self.d.sessions.get(agent_id)
        active = self._mine(agent_id)
        async with active.lock:
            await self._apply(active, event)
        return active.transfer

    # -------------------------------------------------------------- events ---
    async def handle_event(self, ev: Any) -> bool:
        """The external targets' channel events (True: consumed)."""
        etype = getattr(ev, "type", None)
        channel = getattr(ev, "channel", None)
        if channel is None:
            return False
        cid = channel.id
        if etype == "StasisStart":
            kind, _ = parse_args(ev.args)
            if kind is not StasisKind.TRANSFER:
                return False
            call_id = self.by_target.get(cid)
            active = self.active.get(call_id or "")
            if active is None:
                log.warning("transfer.unknown_target_channel", channel_id=cid)
                await self._hangup(cid)
                return True
            active.target_up = True
            self.d._spawn(self._event_step(active, TransferEvent.TARGET_ANSWERED))
            return True
        if etype == "ChannelDestroyed" and cid in self.by_target:
            active = self.active.get(self.by_target.pop(cid))
            if active is None or active.target_channel != cid:
                return True
            active.target_channel = None
            t = active.transfer
            if t.state is TransferState.COMPLETED:
                # the external party hung up after the hand-over: the customer's call ends
                await self.d.hangup(active.call.channel_id)
            elif not t.state.final:
                cause = _CAUSES.get(ev.cause or 0, "hung up" if active.target_up else f"cause {ev.cause}")
                self.d._spawn(self._event_step(active, TransferEvent.TARGET_FAILED, cause))
            return True
        return False

    async def _event_step(self, active: Active, event: TransferEvent, cause: str | None = None) -> None:
        async with active.lock:
            if active.transfer.state.final or self.d.calls.get(active.call.channel_id) is not active.call:
                return
            try:
                await self._apply(active, event, cause)
            except Conflict as exc:
                log.info("transfer.event_ignored", attempt_id=str(active.call.attempt.id), reason=exc.message)

    def key(self, session: AgentSession, digit: str) -> bool:
        """Key 0 during a transfer: the transferring agent takes the customer back (cancel);
        the target agent refuses the consultation or leaves the conference."""
        if digit != KEY_HANGUP_CUSTOMER:
            return False
        for active in self.active.values():
            t = active.transfer
            if t.state not in (TransferState.CONSULTING, TransferState.CONFERENCE, TransferState.DIALING):
                continue
            if t.from_agent_id == session.agent_id and t.kind is TransferKind.ATTENDED:
                self.d._spawn(self._event_step(active, TransferEvent.CANCEL))
                return True
            if t.to_agent_id == session.agent_id:
                self.d._spawn(self._event_step(active, TransferEvent.TARGET_FAILED, "refused"))
                return True
        return False

    async def agent_gone(self, session: AgentSession) -> bool:
        """An agent's phone went away. True when the customer must stay up: the agent was
        the transferring one (the transfer goes on), its target, or the call left it."""
        call = self.d.calls.get(session.attempt_id or "")
        keep = call is not None and call.transfer is not None and call.agent_id != session.agent_id
        for active in list(self.active.values()):
            t = active.transfer
            if t.state.final:
                continue
            if t.from_agent_id == session.agent_id:
                event, cause = TransferEvent.AGENT_GONE, None
            elif t.to_agent_id == session.agent_id:
                event, cause = TransferEvent.TARGET_FAILED, "target agent logged out"
            else:
                continue
            keep = True
            async with active.lock:
                if not active.transfer.state.final:
                    try:
                        await self._apply(active, event, cause)
                    except Conflict as exc:
                        log.info("transfer.agent_gone_ignored", agent_id=session.agent_id, reason=exc.message)
        return keep

    def call_ended(self, call: LiveCall, outcome: Outcome) -> None:
        """The customer's call ended (its CDR is written): the transfer ends with it, every
        leg is closed and written, the target let go."""
        ended = call.fsm.ended_at or _now()
        before = call.legs
        if not call.legs.items and call.bridged_at is not None and call.agent_id is not None:
            call.legs = call.legs.join(LegRole.AGENT, call.bridged_at, agent_id=call.agent_id)
            before = Legs()
        active = self.active.pop(call.channel_id, None)
        if active is not None:
            t = active.transfer
            if not t.state.final:
                try:
                    call.transfer = transfer_transition(t, TransferEvent.CUSTOMER_GONE, ended).transfer
                except Conflict:
                    pass
            self._let_target_go(active, t)
            self.d._spawn(self._tear_down(active))
        call.legs = call.legs.close_all(ended)
        self._write_legs(call, before)

    # -------------------------------------------------------------- effects ---
    async def _apply(self, active: Active, event: TransferEvent, cause: str | None = None) -> None:
        previous = active.transfer.state
        step = transfer_transition(active.transfer, event, _now(), cause=cause)
        await self._effects(active, step, previous)

    async def _effects(self, active: Active, step: Step, previous: TransferState | None) -> None:
        call = active.call
        call.transfer = step.transfer
        t = step.transfer
        before = call.legs
        now = _now()
        for effect in step.effects:
            try:
                await self._effect(active, effect, now)
            except AriError as exc:
                log.warning(
                    "transfer.effect_failed", attempt_id=str(call.attempt.id), effect=effect.value, error=exc.message
                )
        self._write_legs(call, before)
        if t.state is not previous and t.state in _EVENT_OF_STATE:
            self._event(_EVENT_OF_STATE[t.state], active)
        log.info("transfer.state", attempt_id=str(call.attempt.id), state=t.state.value, cause=t.cause)
        if t.state.final and not (t.state is TransferState.COMPLETED and t.target.external):
            self.active.pop(call.channel_id, None)
            await self._tear_down(active)

    async def _effect(self, active: Active, effect: TransferEffect, now: datetime) -> None:
        call, t = active.call, active.transfer
        sessions = self.d.sessions
        agent = sessions.by_agent.get(t.from_agent_id)
        target = sessions.by_agent.get(t.to_agent_id) if t.to_agent_id is not None else None
        if effect is TransferEffect.HOLD_CUSTOMER:
            await self._hold_bridge(active)
            await self.d.ari.rest.add_channel(active.bridge_id, call.channel_id)
        elif effect is TransferEffect.DIAL_TARGET:
            await self._dial(active)
        elif effect is TransferEffect.CONSULT:
            if agent is None:
                raise AriError("the transferring agent is gone")
            await self.d.ari.rest.add_channel(agent.bridge_id, self._target_channel(active, target))
            call.legs = call.legs.join(LegRole.CONSULT, now, agent_id=t.to_agent_id, number=t.target.number)
        elif effect is TransferEffect.CONFERENCE:
            if target is not None and target.state is AgentState.RESERVED:
                sessions.connect(target, call.channel_id, call.campaign.id)
            if agent is not None:
                await self.d.ari.rest.add_channel(agent.bridge_id, call.channel_id)
            call.legs = call.legs.join(LegRole.CONFERENCE, now, agent_id=t.to_agent_id, number=t.target.number)
        elif effect is TransferEffect.HAND_OVER:
            await self._hand_over(active, target, now)
        elif effect is TransferEffect.UNHOLD_CUSTOMER:
            if agent is not None:
                await self.d.ari.rest.add_channel(agent.bridge_id, call.channel_id)
            else:
                await self.d.hangup(call.channel_id)  # nobody to come back to
        elif effect is TransferEffect.DROP_TARGET:
            call.legs = call.legs.leave(now, agent_id=t.to_agent_id, number=t.target.number)
            self._let_target_go(active, t)
            if target is not None:
                await self._send_home(target)
        elif effect is TransferEffect.AGENT_LEAVES:
            call.legs = call.legs.leave(now, agent_id=t.from_agent_id)
            if call.agent_id == t.from_agent_id:
                call.agent_id = None  # the customer waits for an external number
            if agent is not None and agent.state is AgentState.ON_CALL and agent.attempt_id == call.channel_id:
                if call.bridged_at is not None:
                    self.d.pacer.stats_for(call.campaign).observe_talk((now - call.bridged_at).total_seconds())
                sessions.customer_gone(agent, call.campaign.wrap_up_s)
        elif effect is TransferEffect.END_CALL:
            await self.d.hangup(call.channel_id)

    async def _hand_over(self, active: Active, target: AgentSession | None, now: datetime) -> None:
        call, t = active.call, active.transfer
        rest = self.d.ari.rest
        if t.target.external:
            assert active.target_channel is not None
            await self._hold_bridge(active)
            await rest.add_channel(active.bridge_id, [call.channel_id, active.target_channel])
            try:
                await rest.stop_bridge_moh(active.bridge_id)
            except AriError:
                pass
            call.agent_id = None
            call.legs = call.legs.join(LegRole.TARGET, now, number=t.target.number)
            await self._follow_recording(call, active.bridge_id)
            return
        if target is None:
            raise AriError("the target agent is gone")
        if target.state in (AgentState.READY, AgentState.RESERVED):
            self.d.sessions.connect(target, call.channel_id, call.campaign.id)
        call.agent_id = target.agent_id
        self.d.ledger.progress(call)  # the attempt row names its agent now (a restart adopts the call with it)
        await self._send_home(target)
        await rest.add_channel(target.bridge_id, call.channel_id)
        call.legs = call.legs.join(LegRole.TARGET, now, agent_id=target.agent_id)
        await self._follow_recording(call, target.bridge_id)

    async def _follow_recording(self, call: LiveCall, bridge_id: str) -> None:
        """A recorded call keeps one recording: the agent's bridge recording stops and goes
        on in the bridge the customer now talks in, appended to the same file."""
        if call.recording_id is None:
            return
        name = str(call.recording_id)
        rest = self.d.ari.rest
        try:
            await rest.stop_live(name)
        except AriError:
            pass  # finished already
        try:
            await rest.record_bridge(bridge_id, name, "wav", if_exists="append")
        except AriError as exc:
            log.warning("transfer.recording_not_followed", attempt_id=str(call.attempt.id), error=exc.message)

    async def _hold_bridge(self, active: Active) -> None:
        if active.bridge_made:
            return
        rest = self.d.ari.rest
        try:
            await rest.create_bridge(bridge_id=active.bridge_id, type="mixing", name=active.bridge_id)
        except AriError:
            pass  # made already (a second transfer of the call)
        active.bridge_made = True
        try:
            await rest.start_bridge_moh(active.bridge_id)
        except AriError as exc:
            log.warning("transfer.moh_failed", attempt_id=str(active.call.attempt.id), error=exc.message)

    def _target_channel(self, active: Active, target: AgentSession | None) -> str:
        if active.transfer.target.external:
            if active.target_channel is None:
                raise AriError("the external target is gone")
            return active.target_channel
        if target is None:
            raise AriError("the target agent is gone")
        return target.channel_id

    async def _dial(self, active: Active) -> None:
        call, t = active.call, active.transfer
        channel_id = str(uuid.uuid4())
        active.target_channel = channel_id
        self.by_target[channel_id] = call.channel_id
        try:
            await self.d.ari.rest.originate(
                f"Local/{t.target.number}@{self.context}",
                channel_id,
                app=self.d.ari.app,
                app_args=app_args(StasisKind.TRANSFER, call.attempt.id),
                caller_id=call.attempt.caller_id or None,
                timeout=self.ring_s,
                variables={"HITCALL_ATTEMPT": str(call.attempt.id), "HITCALL_CAMPAIGN": str(call.campaign.id)},
            )
        except AriError as exc:
            self.by_target.pop(channel_id, None)
            active.target_channel = None
            log.warning("transfer.dial_failed", attempt_id=str(call.attempt.id), error=exc.message)
            self.d._spawn(self._event_step(active, TransferEvent.TARGET_FAILED, "dial failed"))

    def _let_target_go(self, active: Active, t: Transfer) -> None:
        """The target leaves the call: an agent is released (reserved) or goes to wrap-up
        (it talked to the customer); an external channel is hung up."""
        if active.target_channel is not None:
            channel, active.target_channel = active.target_channel, None
            self.by_target.pop(channel, None)
            self.d._spawn(self._hangup(channel))
        target = self.d.sessions.by_agent.get(t.to_agent_id) if t.to_agent_id is not None else None
        if target is None or target.attempt_id != active.call.channel_id:
            return
        if target.state is AgentState.RESERVED:
            self.d.sessions.release(target)
        elif target.state is AgentState.ON_CALL and active.call.agent_id != target.agent_id:
            self.d.sessions.customer_gone(target, active.call.campaign.wrap_up_s)

    async def _send_home(self, session: AgentSession) -> None:
        """The agent's phone back into its own bridge (after a consultation elsewhere)."""
        try:
            await self.d.ari.rest.add_channel(session.bridge_id, session.channel_id)
        except AriError as exc:
            log.warning("transfer.phone_not_home", agent_id=session.agent_id, error=exc.message)

    async def _tear_down(self, active: Active) -> None:
        for gone in [c for c, call_id in self.by_target.items() if call_id == active.call.channel_id]:
            self.by_target.pop(gone, None)
        if active.bridge_made:
            try:
                await self.d.ari.rest.destroy_bridge(active.bridge_id)
            except AriError as exc:
                log.warning("transfer.bridge_not_destroyed", bridge_id=active.bridge_id, error=exc.message)
            active.bridge_made = False
        t = active.transfer
        if t.to_agent_id is not None:
            target = self.d.sessions.by_agent.get(t.to_agent_id)
            if target is not None and target.state in (AgentState.READY, AgentState.WRAP_UP):
                await self._send_home(target)

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.d.ari.rest.hangup(channel_id)
        except AriError:
            pass

    async def recover(self, snap: Resync) -> None:
        """First connect after a start: what a stopped process left of its transfers is
        ended. Its customers were closed (hung up) or adopted with their agent by the
        recovery before this; left are the external targets' channels and the bridges."""
        for channel in snap.channels:
            dialplan = getattr(channel, "dialplan", None)
            args = [a.strip() for a in (getattr(dialplan, "app_data", "") or "").split(",")]
            in_stasis = dialplan is not None and dialplan.app_name == "Stasis"
            if (
                in_stasis
                and len(args) > 1
                and args[1] == StasisKind.TRANSFER.value
                and channel.id not in self.by_target
            ):
                log.warning("transfer.target_left_by_restart", channel_id=channel.id)
                await self._hangup(channel.id)
        await self._phones_home(snap)
        mine = {a.bridge_id for a in self.active.values()}
        for bridge in snap.bridges:
            if bridge.id.startswith("hitcall-xfer-") and bridge.id not in mine:
                for channel_id in bridge.channels:
                    if channel_id not in self.d.calls:
                        await self._hangup(channel_id)
                try:
                    await self.d.ari.rest.destroy_bridge(bridge.id)
                except AriError:
                    pass

    async def _phones_home(self, snap: Resync) -> None:
        """A consultation the stopped process left: a target agent's phone sits in the
        transferring agent's bridge, and the recovery, which knows an agent by its bridge,
        may have taken either phone for that agent. Each phone goes back to its own agent
        (by its endpoint) and bridge; a phone that is no agent's endpoint is hung up."""
        live = {c.id: c for c in snap.channels}
        crowded = [b for b in snap.bridges if b.id.startswith("hitcall-agent-") and len(_phones(b.channels, live)) > 1]
        if not crowded:
            return
        sessions = self.d.sessions
        for bridge in crowded:
            phones = _phones(bridge.channels, live)
            rows = await self.d.pool.fetch(
                "SELECT id, endpoint FROM agents WHERE endpoint = ANY($1::text[])", [e for _, e in phones]
            )
            owner_of = {r["endpoint"]: r["id"] for r in rows}
            for channel_id, endpoint in phones:  # forget what the recovery guessed wrong
                guessed = sessions.by_channel.get(channel_id)
                if guessed is not None and guessed.endpoint != endpoint:
                    sessions.by_channel.pop(channel_id, None)
                    if sessions.by_agent.get(guessed.agent_id) is guessed:
                        del sessions.by_agent[guessed.agent_id]
            for channel_id, endpoint in phones:
                if channel_id in sessions.by_channel:
                    continue  # guessed right
                agent_id = owner_of.get(endpoint)
                session = await sessions.adopt(channel_id, agent_id) if agent_id is not None else None
                if session is None:
                    log.warning("transfer.phone_left_by_restart", channel_id=channel_id, endpoint=endpoint)
                    await self._hangup(channel_id)
                    continue
                for call in list(self.d.calls.values()):
                    if call.agent_id == session.agent_id and call.state is CallState.BRIDGED:
                        sessions.connect(session, call.channel_id, call.campaign.id)
                if session.bridge_id != bridge.id:
                    try:
                        await self.d.ari.rest.create_bridge(bridge_id=session.bridge_id, type="mixing")
                    except AriError:
                        pass  # still there
                    await self._send_home(session)
                log.warning("transfer.phone_recovered", agent_id=agent_id, channel_id=channel_id)

    # --------------------------------------------------------------- writes ---
    def _write_legs(self, call: LiveCall, before: Legs) -> None:
        for leg in call.legs.closed_since(before):
            assert leg.left is not None
            self.d.journal.leg(
                call.attempt.id,
                leg.seq,
                agent_id=leg.agent_id,
                number=leg.number,
                role=leg.role.value,
                joined_at=leg.joined,
                left_at=leg.left,
            )

    def _event(self, event_type: str, active: Active) -> None:
        call, t = active.call, active.transfer
        self.d.journal.event(
            event_type,
            f"attempt:{call.attempt.id}",
            {
                "attempt_id": str(call.attempt.id),
                "campaign_id": call.campaign.id,
                "kind": t.kind.value,
                "state": t.state.value,
                "from_agent_id": t.from_agent_id,
                "target": t.target.kind.value,
                "to_agent_id": t.to_agent_id,
                "target_campaign_id": t.target.campaign_id,
                "number": t.target.number,
                "cause": t.cause,
                "at": _now().isoformat(),
            },
        )

    def status(self, agent_id: int) -> Transfer:
        for a in self.active.values():
            if agent_id in (a.transfer.from_agent_id, a.transfer.to_agent_id):
                return a.transfer
        raise NotFound("the agent has no transfer in progress", code="no_transfer")
