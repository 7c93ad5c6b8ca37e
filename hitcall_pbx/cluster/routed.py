"""The control ports the REST API uses on a node among several (`api.deps.DialerControl`,
`api.deps.MonitoringControl`): each live control goes to the node that drives the agent
or call, found in PostgreSQL (agents.node_id, live_attempts.node_id,
monitoring_sessions.node_id, written by that node).

This node's own controls run it when the row names this node or no node (an agent not
logged in anywhere, a call already over: the local control then answers as it always
does, usually 404 or 409); another node's commands go through the `CommandBus`. The API
has already checked roles and scopes; the node that runs a control writes its audit row
with the original actor.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import asyncpg

from ..api.deps import DialerControl, LiveCall, MonitoringControl, RecordingPauseStatus, TransferStatus
from ..auth import Actor
from ..core.callbacks import CallbackKind
from ..core.calls import CallState
from ..core.outcomes import CallMode
from ..errors import Unavailable
from ..logs import get_logger
from .commands import CommandBus

log = get_logger("hitcall.cluster.routed")

__all__ = ["RoutedControl", "RoutedMonitoring", "agent_node", "attempt_node", "monitor_node"]


async def agent_node(pool: asyncpg.Pool, agent_id: int) -> str | None:
    """The node whose Asterisk has the agent's phone (None: not logged in, or unknown agent;
    agents.node_id names the node that followed the phone last, also after it logged out)."""
    node: str | None = await pool.fetchval(
        "SELECT node_id FROM agents WHERE id = $1 AND state <> 'logged_out'", agent_id
    )
    return node


async def attempt_node(pool: asyncpg.Pool, attempt_id: uuid.UUID | str) -> str | None:
    """The node that drives a live call (None: not live, or no node recorded)."""
    node: str | None = await pool.fetchval("SELECT node_id FROM live_attempts WHERE id = $1::uuid", str(attempt_id))
    return node


async def monitor_node(pool: asyncpg.Pool, monitor_id: int) -> str | None:
    """The node that runs an open monitoring session."""
    node: str | None = await pool.fetchval(
        "SELECT node_id FROM monitoring_sessions WHERE id = $1 AND ended_at IS NULL", monitor_id
    )
    return node


# Other nodes' live calls, as LiveCall rows (outbound calls: what a node's own control lists);
# every live call for a process that drives no Asterisk ($1 NULL).
_OTHERS_CALLS = """
SELECT id, campaign_id, agent_id, contact_id, dialled_number, state, mode, originated_at, answered_at, bridged_at
FROM live_attempts
WHERE direction = 'outbound' AND ($1::text IS NULL OR (node_id IS NOT NULL AND node_id <> $1))
  AND ($2::bigint IS NULL OR campaign_id = $2) AND ($3::bigint IS NULL OR agent_id = $3)
ORDER BY created_at, id
"""


class RoutedControl:
    """`api.deps.DialerControl` for a node among several: `local` is this node's own control.
    `node_id` None: a process that drives no Asterisk (`hitcall serve --api-only`, local an
    ApiOnlyControl): every agent or call a node follows is asked of that node, even one
    whose node id is the same as this process's (the default node id is the host name)."""

    def __init__(
        self,
        local: DialerControl,
        bus: CommandBus,
        pool: asyncpg.Pool,
        node_id: str | None,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.local = local
        self.bus = bus
        self.pool = pool
        self.node_id = node_id
        # Awaited after this node changed an agent's state itself (the state is written behind,
        # through the call journal): the API reads the agent's row back for its answer, as it
        # does after another node's answer (which that node settles before it answers).
        self.settle = settle

    async def _settled(self) -> None:
        if self.settle is not None:
            try:
                await self.settle()
            except Exception as exc:  # the answer goes anyway: the write is spooled, not lost
                log.warning("routed_control.settle_failed", error=repr(exc))

    def _elsewhere(self, node: str | None) -> str | None:
        """The other node to ask, or None when this node's control answers."""
        return node if node is not None and node != self.node_id else None

    async def _agent(self, agent_id: int) -> str | None:
        return self._elsewhere(await agent_node(self.pool, agent_id))

    # Prompts after a committed change: every node reads campaigns and agents every second.
    async def campaign_changed(self, campaign_id: int) -> None:
        await self.local.campaign_changed(campaign_id)

    async def agent_changed(self, agent_id: int) -> None:
        await self.local.agent_changed(agent_id)

    async def pause_agent(self, agent_id: int, pause_code: str, *, actor: Actor) -> None:
        if node := await self._agent(agent_id):
            await self.bus.call(node, "agent.pause", {"agent_id": agent_id, "pause_code": pause_code}, actor)
        else:
            await self.local.pause_agent(agent_id, pause_code, actor=actor)
            await self._settled()

    async def unpause_agent(self, agent_id: int, *, actor: Actor) -> None:
        if node := await self._agent(agent_id):
            await self.bus.call(node, "agent.unpause", {"agent_id": agent_id}, actor)
        else:
            await self.local.unpause_agent(agent_id, actor=actor)
            await self._settled()

    async def end_wrap_up(self, agent_id: int, *, actor: Actor) -> None:
        if node := await self._agent(agent_id):
            await self.bus.call(node, "agent.end_wrap_up", {"agent_id": agent_id}, actor)
        else:
            await self.local.end_wrap_up(agent_id, actor=actor)
            await self._settled()

    async def log_out_agent(self, agent_id: int, *, actor: Actor) -> None:
        if node := await self._agent(agent_id):
            await self.bus.call(node, "agent.log_out", {"agent_id": agent_id}, actor)
        else:
            await self.local.log_out_agent(agent_id, actor=actor)
            await self._settled()

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
        if node := await self._agent(agent_id):
            args = {
                "agent_id": agent_id,
                "disposition": disposition,
                "attempt_id": attempt_id,
                "callback_at": callback_at,
                "callback_kind": callback_kind,
            }
            await self.bus.call(node, "agent.set_disposition", args, actor)
        else:
            await self.local.set_disposition(
                agent_id,
                disposition,
                attempt_id=attempt_id,
                actor=actor,
                callback_at=callback_at,
                callback_kind=callback_kind,
            )

    async def accept_offer(self, agent_id: int, *, actor: Actor) -> uuid.UUID:
        if node := await self._agent(agent_id):
            attempt: uuid.UUID = await self.bus.call(node, "preview.accept", {"agent_id": agent_id}, actor)
            return attempt
        return await self.local.accept_offer(agent_id, actor=actor)

    async def skip_offer(self, agent_id: int, reason: str | None, *, actor: Actor) -> None:
        if node := await self._agent(agent_id):
            await self.bus.call(node, "preview.skip", {"agent_id": agent_id, "reason": reason}, actor)
        else:
            await self.local.skip_offer(agent_id, reason, actor=actor)

    async def live_calls(self, *, campaign_id: int | None = None, agent_id: int | None = None) -> list[LiveCall]:
        """This node's calls from its control, the other nodes' from their live rows."""
        try:
            mine = await self.local.live_calls(campaign_id=campaign_id, agent_id=agent_id)
        except Unavailable:  # a node that drives no Asterisk has no calls of its own
            mine = []
        seen = {c.attempt_id for c in mine}
        rows = await self.pool.fetch(_OTHERS_CALLS, self.node_id, campaign_id, agent_id)
        return mine + [_live_call(r) for r in rows if r["id"] not in seen]

    async def hang_up(self, attempt_id: uuid.UUID, *, actor: Actor) -> None:
        if node := self._elsewhere(await attempt_node(self.pool, attempt_id)):
            await self.bus.call(node, "call.hang_up", {"attempt_id": attempt_id}, actor)
        else:
            await self.local.hang_up(attempt_id, actor=actor)

    async def transfer(
        self, agent_id: int, kind: Literal["blind", "attended"], target: dict[str, Any], *, actor: Actor
    ) -> TransferStatus:
        if node := await self._agent(agent_id):
            args = {"agent_id": agent_id, "kind": kind, "target": target}
            status: TransferStatus = await self.bus.call(node, "call.transfer", args, actor)
            return status
        return await self.local.transfer(agent_id, kind, target, actor=actor)

    async def transfer_action(
        self, agent_id: int, action: Literal["complete", "cancel", "conference"], *, actor: Actor
    ) -> TransferStatus:
        if node := await self._agent(agent_id):
            args = {"agent_id": agent_id, "action": action}
            status: TransferStatus = await self.bus.call(node, "call.transfer_action", args, actor)
            return status
        return await self.local.transfer_action(agent_id, action, actor=actor)

    async def pause_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        if node := await self._agent(agent_id):
            status: RecordingPauseStatus = await self.bus.call(node, "recording.pause", {"agent_id": agent_id}, actor)
            return status
        return await self.local.pause_recording(agent_id, actor=actor)

    async def resume_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        if node := await self._agent(agent_id):
            status: RecordingPauseStatus = await self.bus.call(node, "recording.resume", {"agent_id": agent_id}, actor)
            return status
        return await self.local.resume_recording(agent_id, actor=actor)

    async def manual_dial(
        self, agent_id: int, *, campaign_id: int | None, number: str | None, contact_id: int | None, actor: Actor
    ) -> uuid.UUID:
        if node := await self._agent(agent_id):
            args = {"agent_id": agent_id, "campaign_id": campaign_id, "number": number, "contact_id": contact_id}
            attempt: uuid.UUID = await self.bus.call(node, "call.manual_dial", args, actor)
            return attempt
        return await self.local.manual_dial(
            agent_id, campaign_id=campaign_id, number=number, contact_id=contact_id, actor=actor
        )


def _live_call(r: asyncpg.Record) -> LiveCall:
    return LiveCall(
        attempt_id=r["id"],
        campaign_id=r["campaign_id"],
        agent_id=r["agent_id"],
        contact_id=r["contact_id"],
        number=r["dialled_number"],
        state=CallState(r["state"]),
        mode=CallMode(r["mode"]) if r["mode"] is not None else None,
        originated_at=r["originated_at"],
        answered_at=r["answered_at"],
        bridged_at=r["bridged_at"],
    )


class RoutedMonitoring:
    """`api.deps.MonitoringControl` for a node among several: a session starts on the node
    that drives the call and is changed and stopped there. `local` is None on a node that
    drives no Asterisk."""

    def __init__(
        self, local: MonitoringControl | None, bus: CommandBus, pool: asyncpg.Pool, node_id: str | None
    ) -> None:
        self.local = local
        self.bus = bus
        self.pool = pool
        self.node_id = node_id

    def _elsewhere(self, node: str | None) -> str | None:
        return node if node is not None and node != self.node_id else None

    def _mine(self) -> MonitoringControl:
        if self.local is None:
            raise Unavailable(
                "live call control runs in the dialing process (hitcall serve without --api-only)",
                code="dialer_elsewhere",
            )
        return self.local

    def active(self) -> list[dict[str, Any]]:
        """This node's live sessions (the others' are read from monitoring_sessions)."""
        return self.local.active() if self.local is not None else []

    async def start_session(
        self, *, user_id: int, username: str, role: str, attempt_id: str, mode: Any, actor: Actor
    ) -> dict[str, Any]:
        if node := self._elsewhere(await attempt_node(self.pool, attempt_id)):
            args = {"user_id": user_id, "username": username, "role": role, "attempt_id": attempt_id, "mode": mode}
            view: dict[str, Any] = await self.bus.call(node, "monitor.start", args, actor)
            return view
        return await self._mine().start_session(
            user_id=user_id, username=username, role=role, attempt_id=attempt_id, mode=mode, actor=actor
        )

    async def change(self, monitor_id: int, mode: Any, *, user_id: int, role: str, actor: Actor) -> dict[str, Any]:
        if node := self._elsewhere(await monitor_node(self.pool, monitor_id)):
            args = {"monitor_id": monitor_id, "mode": mode, "user_id": user_id, "role": role}
            view: dict[str, Any] = await self.bus.call(node, "monitor.change", args, actor)
            return view
        return await self._mine().change(monitor_id, mode, user_id=user_id, role=role, actor=actor)

    async def stop(self, monitor_id: int, *, user_id: int, role: str, actor: Actor) -> dict[str, Any]:
        if node := self._elsewhere(await monitor_node(self.pool, monitor_id)):
            args = {"monitor_id": monitor_id, "user_id": user_id, "role": role}
            view: dict[str, Any] = await self.bus.call(node, "monitor.stop", args, actor)
            return view
        return await self._mine().stop(monitor_id, user_id=user_id, role=role, actor=actor)
