"""The live controls one node may ask another to run (`commands.CommandBus`), each with an
explicit JSON codec for its arguments and its answer.

A method names the control port call it runs on the node that drives the agent or call
(`api.deps.DialerControl`, `api.deps.MonitoringControl`), a pydantic model of its
arguments (validated again where it runs) and how its answer travels: nothing, an
attempt id, a transfer or recording-pause status, or a monitoring session view.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..api.deps import DialerControl, MonitoringControl, RecordingPauseStatus, TransferStatus
from ..auth import Actor
from ..core.callbacks import CallbackKind
from ..core.monitoring import MonitorMode
from ..errors import Unavailable

__all__ = ["METHODS", "LocalPorts", "Method", "monitor_view_from_json", "monitor_view_to_json"]


@dataclass(frozen=True)
class LocalPorts:
    """What a node runs the commands addressed to it on: its own controls."""

    control: DialerControl
    monitoring: MonitoringControl | None = None
    peer: PeerPort | None = None

    def monitor(self) -> MonitoringControl:
        if self.monitoring is None:
            raise Unavailable("monitoring does not run on this node", code="monitoring_unavailable")
        return self.monitoring

    def peers(self) -> PeerPort:
        if self.peer is None:
            raise Unavailable("peer calls are not taken on this node", code="peer_unavailable")
        return self.peer


class PeerPort(Protocol):
    """Reserves an agent of one of this node's pools for a caller on another server
    (`cluster.peer.PoolsPeer`): the token and agent as JSON, or None."""

    async def reserve(
        self, pool: str, campaign_id: int | None, wrap_up_s: float, from_pool: str
    ) -> dict[str, Any] | None: ...

    async def release(self, pool: str, token: str) -> bool: ...


# ------------------------------------------------------------------ answers


@dataclass(frozen=True)
class ResultCodec:
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


NOTHING = ResultCodec(lambda value: None, lambda data: None)
ATTEMPT_ID = ResultCodec(lambda value: str(value), lambda data: uuid.UUID(data))


def _model(cls: type[BaseModel]) -> ResultCodec:
    return ResultCodec(lambda value: value.model_dump(mode="json"), cls.model_validate)


_VIEW_TIMES = ("started_at", "ended_at")


def monitor_view_to_json(view: Mapping[str, Any]) -> dict[str, Any]:
    """A monitoring session view (`dialer.monitor.Monitoring.view`) as JSON: times as ISO text."""
    out = dict(view)
    out["attempt_id"] = str(view["attempt_id"])
    out["modes"] = [{"mode": str(m["mode"]), "at": _iso(m["at"])} for m in view["modes"]]
    for key in _VIEW_TIMES:
        out[key] = _iso(view.get(key))
    return out


def monitor_view_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["modes"] = [{"mode": m["mode"], "at": datetime.fromisoformat(m["at"])} for m in data["modes"]]
    for key in _VIEW_TIMES:
        out[key] = None if data.get(key) is None else datetime.fromisoformat(data[key])
    return out


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


MONITOR_VIEW = ResultCodec(monitor_view_to_json, monitor_view_from_json)


# ---------------------------------------------------------------- arguments


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentArgs(Args):
    agent_id: int


class PauseArgs(AgentArgs):
    pause_code: str


class DispositionArgs(AgentArgs):
    disposition: str
    attempt_id: uuid.UUID | None = None
    callback_at: datetime | None = None  # naive: the contact's local time
    callback_kind: CallbackKind = CallbackKind.PERSONAL


class SkipArgs(AgentArgs):
    reason: str | None = None


class AttemptArgs(Args):
    attempt_id: uuid.UUID


class TransferArgs(AgentArgs):
    kind: Literal["blind", "attended"]
    target: dict[str, Any]


class TransferActionArgs(AgentArgs):
    action: Literal["complete", "cancel", "conference"]


class ManualDialArgs(AgentArgs):
    campaign_id: int | None = None
    number: str | None = None
    contact_id: int | None = None


class MonitorStartArgs(Args):
    user_id: int
    username: str
    role: str
    attempt_id: str
    mode: MonitorMode


class MonitorChangeArgs(Args):
    monitor_id: int
    mode: MonitorMode
    user_id: int
    role: str


class MonitorStopArgs(Args):
    monitor_id: int
    user_id: int
    role: str


class PeerReserveArgs(Args):
    pool: str
    campaign_id: int | None = None
    wrap_up_s: float = Field(ge=0, le=86400)
    from_pool: str


class PeerReleaseArgs(Args):
    pool: str
    token: str = Field(pattern=r"^[0-9a-f]{24}$")


A = TypeVar("A", bound=Args)


@dataclass(frozen=True)
class Method(Generic[A]):
    name: str
    args: type[A]
    result: ResultCodec
    run: Callable[[LocalPorts, A, Actor], Awaitable[Any]]

    def encode_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return self.args.model_validate(dict(kwargs)).model_dump(mode="json")

    def decode_args(self, data: Mapping[str, Any]) -> A:
        return self.args.model_validate(dict(data))


# ------------------------------------------------------------------ the runs


async def _pause(p: LocalPorts, a: PauseArgs, actor: Actor) -> None:
    await p.control.pause_agent(a.agent_id, a.pause_code, actor=actor)


async def _unpause(p: LocalPorts, a: AgentArgs, actor: Actor) -> None:
    await p.control.unpause_agent(a.agent_id, actor=actor)


async def _end_wrap_up(p: LocalPorts, a: AgentArgs, actor: Actor) -> None:
    await p.control.end_wrap_up(a.agent_id, actor=actor)


async def _log_out(p: LocalPorts, a: AgentArgs, actor: Actor) -> None:
    await p.control.log_out_agent(a.agent_id, actor=actor)


async def _disposition(p: LocalPorts, a: DispositionArgs, actor: Actor) -> None:
    await p.control.set_disposition(
        a.agent_id,
        a.disposition,
        attempt_id=a.attempt_id,
        actor=actor,
        callback_at=a.callback_at,
        callback_kind=a.callback_kind,
    )


async def _accept(p: LocalPorts, a: AgentArgs, actor: Actor) -> uuid.UUID:
    return await p.control.accept_offer(a.agent_id, actor=actor)


async def _skip(p: LocalPorts, a: SkipArgs, actor: Actor) -> None:
    await p.control.skip_offer(a.agent_id, a.reason, actor=actor)


async def _hang_up(p: LocalPorts, a: AttemptArgs, actor: Actor) -> None:
    await p.control.hang_up(a.attempt_id, actor=actor)


async def _transfer(p: LocalPorts, a: TransferArgs, actor: Actor) -> TransferStatus:
    return await p.control.transfer(a.agent_id, a.kind, a.target, actor=actor)


async def _transfer_action(p: LocalPorts, a: TransferActionArgs, actor: Actor) -> TransferStatus:
    return await p.control.transfer_action(a.agent_id, a.action, actor=actor)


async def _pause_recording(p: LocalPorts, a: AgentArgs, actor: Actor) -> RecordingPauseStatus:
    return await p.control.pause_recording(a.agent_id, actor=actor)


async def _resume_recording(p: LocalPorts, a: AgentArgs, actor: Actor) -> RecordingPauseStatus:
    return await p.control.resume_recording(a.agent_id, actor=actor)


async def _manual_dial(p: LocalPorts, a: ManualDialArgs, actor: Actor) -> uuid.UUID:
    return await p.control.manual_dial(
        a.agent_id, campaign_id=a.campaign_id, number=a.number, contact_id=a.contact_id, actor=actor
    )


async def _monitor_start(p: LocalPorts, a: MonitorStartArgs, actor: Actor) -> dict[str, Any]:
    return await p.monitor().start_session(
        user_id=a.user_id, username=a.username, role=a.role, attempt_id=a.attempt_id, mode=a.mode, actor=actor
    )


async def _monitor_change(p: LocalPorts, a: MonitorChangeArgs, actor: Actor) -> dict[str, Any]:
    return await p.monitor().change(a.monitor_id, a.mode, user_id=a.user_id, role=a.role, actor=actor)


async def _monitor_stop(p: LocalPorts, a: MonitorStopArgs, actor: Actor) -> dict[str, Any]:
    return await p.monitor().stop(a.monitor_id, user_id=a.user_id, role=a.role, actor=actor)


async def _peer_reserve(p: LocalPorts, a: PeerReserveArgs, actor: Actor) -> dict[str, Any] | None:
    return await p.peers().reserve(a.pool, a.campaign_id, a.wrap_up_s, a.from_pool)


async def _peer_release(p: LocalPorts, a: PeerReleaseArgs, actor: Actor) -> bool:
    return await p.peers().release(a.pool, a.token)


PEER_OFFER = ResultCodec(lambda value: value, lambda data: data)  # {token, agent_id, pool, node_id} or None
RELEASED = ResultCodec(bool, bool)

_ALL: tuple[Method[Any], ...] = (
    Method("agent.pause", PauseArgs, NOTHING, _pause),
    Method("agent.unpause", AgentArgs, NOTHING, _unpause),
    Method("agent.end_wrap_up", AgentArgs, NOTHING, _end_wrap_up),
    Method("agent.log_out", AgentArgs, NOTHING, _log_out),
    Method("agent.set_disposition", DispositionArgs, NOTHING, _disposition),
    Method("preview.accept", AgentArgs, ATTEMPT_ID, _accept),
    Method("preview.skip", SkipArgs, NOTHING, _skip),
    Method("call.hang_up", AttemptArgs, NOTHING, _hang_up),
    Method("call.transfer", TransferArgs, _model(TransferStatus), _transfer),
    Method("call.transfer_action", TransferActionArgs, _model(TransferStatus), _transfer_action),
    Method("call.manual_dial", ManualDialArgs, ATTEMPT_ID, _manual_dial),
    Method("recording.pause", AgentArgs, _model(RecordingPauseStatus), _pause_recording),
    Method("recording.resume", AgentArgs, _model(RecordingPauseStatus), _resume_recording),
    Method("monitor.start", MonitorStartArgs, MONITOR_VIEW, _monitor_start),
    Method("monitor.change", MonitorChangeArgs, MONITOR_VIEW, _monitor_change),
    Method("monitor.stop", MonitorStopArgs, MONITOR_VIEW, _monitor_stop),
    Method("peer.reserve", PeerReserveArgs, PEER_OFFER, _peer_reserve),
    Method("peer.release", PeerReleaseArgs, RELEASED, _peer_release),
)

METHODS: Mapping[str, Method[Any]] = {m.name: m for m in _ALL}
