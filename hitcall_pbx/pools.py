"""Pools: everything that drives one Asterisk server, and the controls across them.

A *pool* is one Asterisk server, by name. `PoolStack` holds the parts that follow that
server's channels: its ARI client, the agent sessions of the phones logged in on it, the
dialer that originates there, the recorder, the recording pauser, the inbound router and
the supervisors' monitor. A node (one `hitcall serve`) runs one stack per pool it drives;
the process-wide parts (database, journal, CDR writer, webhooks, API, AGI, alarms, purge)
are shared by its stacks and built in `app.py`, the composition root.

`PoolsControl` and `PoolsMonitoring` are the API's controls over the stacks of this
process: a request about an agent goes to the stack where that agent's phone is logged
in, one about a call to the stack that follows the call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .agents.sessions import AgentSessions
from .api.deps import LiveCall, RecordingPauseStatus, TransferStatus
from .ari import AriClient
from .auth import Actor
from .core import pacing
from .core.callbacks import CallbackKind
from .core.pacing import PacingView
from .dialer.control import EngineControl
from .dialer.engine import Dialer
from .dialer.inbound import InboundRouter
from .dialer.monitor import Monitor
from .dialer.peer import PeerDesk
from .dialer.recording_pause import RecordingPauser
from .errors import NotFound, Unavailable
from .logs import get_logger
from .records.recorder import Recorder

log = get_logger("hitcall.pools")


@dataclass
class PoolStack:
    """The parts that drive one Asterisk server (see the module docstring). Built and
    started by `app.HitCall.start_pool`; closed with `close`, which stops following the
    server without hanging up its calls (a later holder of the pool adopts them)."""

    name: str
    ari: AriClient
    sessions: AgentSessions
    dialer: Dialer
    recorder: Recorder
    recording_pauser: RecordingPauser
    inbound: InboundRouter
    monitor: Monitor
    control: EngineControl
    closers: list[Callable[[], Any]] = field(default_factory=list)
    peer: PeerDesk | None = None  # calls from the other servers' callers to the agents here

    async def close(self) -> None:
        """ARI first (no new events), then the parts that follow calls, newest first."""
        while self.closers:
            closer = self.closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("pool.close_failed", pool=self.name, part=getattr(closer, "__qualname__", str(closer)))


class Pools:
    """The stacks this process runs, home pool first."""

    def __init__(self) -> None:
        self.stacks: dict[str, PoolStack] = {}

    def __iter__(self) -> Iterator[PoolStack]:
        return iter(list(self.stacks.values()))

    def __len__(self) -> int:
        return len(self.stacks)

    def home(self) -> PoolStack | None:
        return next(iter(self.stacks.values()), None)

    def of_agent(self, agent_id: int) -> PoolStack | None:
        """The stack where the agent's phone is logged in."""
        return next((s for s in self if agent_id in s.sessions.by_agent), None)

    def of_call(self, attempt_id: uuid.UUID | str) -> PoolStack | None:
        """The stack that follows the call."""
        key = str(attempt_id)
        return next((s for s in self if key in s.dialer.calls), None)

    def of_supervisor(self, user_id: int) -> PoolStack | None:
        return next((s for s in self if s.sessions.supervisor_of_user(user_id) is not None), None)

    def of_monitoring(self, monitor_id: int) -> PoolStack | None:
        return next((s for s in self if monitor_id in s.monitor.live), None)

    # ---------------------------------------------------- figures across stacks ---
    def ari_connected(self) -> bool:
        """Every Asterisk this process drives has its ARI up. True with none: a node that
        holds no pool (a standby) serves the API and is ready, and no ARI of its is down."""
        return all(s.ari.connected.is_set() for s in self)

    def ari_reconnects(self) -> int:
        return sum(s.ari.stats.reconnects for s in self)

    def agent_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self:
            for state, n in s.sessions.counts().items():
                out[state] = out.get(state, 0) + n
        return out

    def call_counts(self) -> dict[tuple[int, str], int]:
        out: dict[tuple[int, str], int] = {}
        for s in self:
            for key, n in s.dialer.call_counts().items():
                out[key] = out.get(key, 0) + n
        return out

    def pacing_stats(self) -> dict[int, pacing.PacingStats]:
        out: dict[int, pacing.PacingStats] = {}
        for s in self:
            out.update(s.dialer.pacing_stats())
        return out

    def pacing_views(self) -> dict[int, PacingView]:
        out: dict[int, PacingView] = {}
        for s in self:
            out.update(s.dialer.pacer.views)
        return out

    def campaigns(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for s in self:
            out.update(s.dialer.campaigns)
        return out


def _no_pool() -> Unavailable:
    return Unavailable(
        "this HitCall node drives no Asterisk server at the moment; live calls and agents are controlled "
        "through the node that does",
        code="dialer_elsewhere",
    )


class PoolsControl:
    """The API's `DialerControl` over this process's stacks (see the module docstring).
    An agent or call no stack knows gets the home stack's usual answer (404 / 409)."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    def _for_agent(self, agent_id: int) -> EngineControl:
        stack = self.pools.of_agent(agent_id) or self.pools.home()
        if stack is None:
            raise _no_pool()
        return stack.control

    def _for_call(self, attempt_id: uuid.UUID) -> EngineControl:
        stack = self.pools.of_call(attempt_id) or self.pools.home()
        if stack is None:
            raise _no_pool()
        return stack.control

    async def campaign_changed(self, campaign_id: int) -> None:
        for s in self.pools:
            await s.control.campaign_changed(campaign_id)

    async def agent_changed(self, agent_id: int) -> None:
        for s in self.pools:
            await s.control.agent_changed(agent_id)

    async def pause_agent(self, agent_id: int, pause_code: str, *, actor: Actor) -> None:
        await self._for_agent(agent_id).pause_agent(agent_id, pause_code, actor=actor)

    async def unpause_agent(self, agent_id: int, *, actor: Actor) -> None:
        await self._for_agent(agent_id).unpause_agent(agent_id, actor=actor)

    async def end_wrap_up(self, agent_id: int, *, actor: Actor) -> None:
        await self._for_agent(agent_id).end_wrap_up(agent_id, actor=actor)

    async def log_out_agent(self, agent_id: int, *, actor: Actor) -> None:
        await self._for_agent(agent_id).log_out_agent(agent_id, actor=actor)

    async def set_disposition(
        self,
        agent_id: int,
        disposition: str,
        *,
        attempt_id: uuid.UUID | None,
        actor: Actor,
        callback_at: datetime | None = None,
        callback_kind: CallbackKind = CallbackKind.PERSONAL,
    ) -> None:
        await self._for_agent(agent_id).set_disposition(
            agent_id,
            disposition,
            attempt_id=attempt_id,
            actor=actor,
            callback_at=callback_at,
            callback_kind=callback_kind,
        )

    async def accept_offer(self, agent_id: int, *, actor: Actor) -> uuid.UUID:
        return await self._for_agent(agent_id).accept_offer(agent_id, actor=actor)

    async def skip_offer(self, agent_id: int, reason: str | None, *, actor: Actor) -> None:
        await self._for_agent(agent_id).skip_offer(agent_id, reason, actor=actor)

    async def live_calls(self, *, campaign_id: int | None = None, agent_id: int | None = None) -> list[LiveCall]:
        out: list[LiveCall] = []
        for s in self.pools:
            out.extend(await s.control.live_calls(campaign_id=campaign_id, agent_id=agent_id))
        return out

    async def hang_up(self, attempt_id: uuid.UUID, *, actor: Actor) -> None:
        await self._for_call(attempt_id).hang_up(attempt_id, actor=actor)

    async def pause_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        return await self._for_agent(agent_id).pause_recording(agent_id, actor=actor)

    async def resume_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        return await self._for_agent(agent_id).resume_recording(agent_id, actor=actor)

    async def manual_dial(
        self, agent_id: int, *, campaign_id: int | None, number: str | None, contact_id: int | None, actor: Actor
    ) -> uuid.UUID:
        return await self._for_agent(agent_id).manual_dial(
            agent_id, campaign_id=campaign_id, number=number, contact_id=contact_id, actor=actor
        )

    async def transfer(
        self, agent_id: int, kind: Literal["blind", "attended"], target: dict[str, Any], *, actor: Actor
    ) -> TransferStatus:
        return await self._for_agent(agent_id).transfer(agent_id, kind, target, actor=actor)

    async def transfer_action(
        self, agent_id: int, action: Literal["complete", "cancel", "conference"], *, actor: Actor
    ) -> TransferStatus:
        return await self._for_agent(agent_id).transfer_action(agent_id, action, actor=actor)


class PoolsMonitoring:
    """The API's `MonitoringControl` over this process's stacks: a session starts on the
    stack where the supervisor's phone is logged in."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    def active(self) -> list[dict[str, Any]]:
        return [m for s in self.pools for m in s.monitor.active()]

    async def start_session(
        self, *, user_id: int, username: str, role: str, attempt_id: str, mode: Any, actor: Actor
    ) -> dict[str, Any]:
        stack = self.pools.of_supervisor(user_id) or self.pools.home()
        if stack is None:
            raise _no_pool()
        return await stack.monitor.start_session(
            user_id=user_id, username=username, role=role, attempt_id=attempt_id, mode=mode, actor=actor
        )

    def _of(self, monitor_id: int) -> Monitor:
        stack = self.pools.of_monitoring(monitor_id)
        if stack is None:
            raise NotFound(f"no live monitoring session {monitor_id}", details={"monitor_id": monitor_id})
        return stack.monitor

    async def change(self, monitor_id: int, mode: Any, *, user_id: int, role: str, actor: Actor) -> dict[str, Any]:
        return await self._of(monitor_id).change(monitor_id, mode, user_id=user_id, role=role, actor=actor)

    async def stop(self, monitor_id: int, *, user_id: int, role: str, actor: Actor) -> dict[str, Any]:
        return await self._of(monitor_id).stop(monitor_id, user_id=user_id, role=role, actor=actor)
