"""The dialing engine's controls as the REST API sees them (api.deps.DialerControl).

A thin adapter: each call maps to the engine or the agent sessions and writes
its audit row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from ..agents.sessions import AgentSessions
from ..api.deps import LiveCall, RecordingPauseSpan, RecordingPauseStatus, TransferStatus
from ..auth import Actor
from ..core.callbacks import CallbackKind
from ..core.outcomes import CallMode
from ..core.states import AgentState
from ..core.transfer import TargetKind, Transfer, TransferEvent, TransferKind, parse_target
from ..errors import Conflict, Unavailable
from ..store import audit, dispositions
from ..store.dispositions import CallbackSpec
from .engine import Dialer
from .manual import ManualTarget
from .recording_pause import PauseState, RecordingPauser


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _pause_status(state: PauseState) -> RecordingPauseStatus:
    return RecordingPauseStatus(
        attempt_id=uuid.UUID(state.attempt_id),
        recording_id=uuid.UUID(state.recording_id),
        paused=state.paused,
        spans=[
            RecordingPauseSpan(
                seq=s.seq,
                paused_at=s.paused_at,
                paused_by=s.paused_by,
                resumed_at=s.resumed_at,
                resumed_by=s.resumed_by,
                ended_by_call=s.ended_by_call,
            )
            for s in state.spans
        ],
    )


def _callback(at: datetime | None, kind: CallbackKind) -> CallbackSpec | None:
    """The callback a callback disposition asks for through the API (a time is needed)."""
    return None if at is None else CallbackSpec(at=at, kind=kind)


class EngineControl:
    def __init__(self, dialer: Dialer, sessions: AgentSessions, *, recording: RecordingPauser | None = None) -> None:
        self.dialer = dialer
        self.sessions = sessions
        self.recording = recording

    async def _audit(self, actor: Actor, action: str, agent_id: int | None = None, **details: object) -> None:
        await audit.record(
            self.dialer.pool,
            actor=actor.name,
            actor_role=actor.role,
            action=action,
            object_type="agent" if agent_id is not None else "call",
            object_id=agent_id if agent_id is not None else _text_or_none(details.get("attempt_id")),
            details={k: str(v) for k, v in details.items() if v is not None},
            source_ip=actor.source_ip,
        )

    async def campaign_changed(self, campaign_id: int) -> None:
        await self.dialer.refresh_campaigns()
        self.dialer.wake()

    async def agent_changed(self, agent_id: int) -> None:
        await self.sessions.refresh_campaigns()
        self.dialer.wake()

    async def pause_agent(self, agent_id: int, pause_code: str, *, actor: Actor) -> None:
        self.sessions.pause(agent_id, pause_code)
        await self._audit(actor, "agent.pause", agent_id, pause_code=pause_code)

    async def unpause_agent(self, agent_id: int, *, actor: Actor) -> None:
        self.sessions.unpause(agent_id)
        await self._audit(actor, "agent.unpause", agent_id)

    async def end_wrap_up(self, agent_id: int, *, actor: Actor) -> None:
        self.sessions.end_wrap(agent_id)
        await self._audit(actor, "agent.end_wrap_up", agent_id)

    async def log_out_agent(self, agent_id: int, *, actor: Actor) -> None:
        session = self.sessions.get(agent_id)
        if session.state in (AgentState.ON_CALL, AgentState.RESERVED):
            raise Conflict(
                "the agent is on a call or has one coming; log out after it",
                details={"agent_id": agent_id, "state": session.state.value},
                code="agent_busy",
            )
        await self.sessions.logout(session.channel_id, reason="logged_out_by_user")
        await self._audit(actor, "agent.logout", agent_id)

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
        # checked, applied and audited in one transaction (dialer.dispositions)
        await self.dialer.set_disposition(
            agent_id,
            disposition,
            attempt_id=attempt_id,
            actor=actor,
            callback=_callback(callback_at, callback_kind),
        )

    async def accept_offer(self, agent_id: int, *, actor: Actor) -> uuid.UUID:
        attempt = await self.dialer.accept_offer(agent_id)
        await self._audit(actor, "preview.accept", agent_id, attempt_id=attempt.id)
        return attempt.id

    async def skip_offer(self, agent_id: int, reason: str | None, *, actor: Actor) -> None:
        offer_id = await self.dialer.skip_offer(agent_id, reason or "skipped")
        # The reason is free text (it may name the person): it stays on the offer row, which
        # erasure removes with the contact; the append-only audit row names the offer only.
        await self._audit(actor, "preview.skip", agent_id, offer_id=offer_id)

    async def live_calls(self, *, campaign_id: int | None = None, agent_id: int | None = None) -> list[LiveCall]:
        out = []
        for c in self.dialer.calls.values():
            if campaign_id is not None and c.campaign.id != campaign_id:
                continue
            if agent_id is not None and c.agent_id != agent_id:
                continue
            out.append(
                LiveCall(
                    attempt_id=c.attempt.id,
                    campaign_id=c.campaign.id,
                    agent_id=c.agent_id,
                    contact_id=c.attempt.contact_id,
                    number=c.attempt.number,
                    state=c.state,
                    mode=CallMode(c.attempt.mode),
                    originated_at=c.originated_at,
                    answered_at=c.answered_at,
                    bridged_at=c.bridged_at,
                )
            )
        return out

    async def hang_up(self, attempt_id: uuid.UUID, *, actor: Actor) -> None:
        await self.dialer.hangup_call(str(attempt_id))
        await self._audit(actor, "call.hangup", None, attempt_id=attempt_id)

    def _pauser(self) -> RecordingPauser:
        if self.recording is None:
            raise Unavailable("recording pause is not available in this process", code="recording_pause_unavailable")
        return self.recording

    # Audited with the span itself (recording.pause / recording.resume, through the call journal).
    async def pause_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        return _pause_status(await self._pauser().pause(agent_id, by=actor.name, role=actor.role))

    async def resume_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        return _pause_status(await self._pauser().resume(agent_id, by=actor.name, role=actor.role))

    async def manual_dial(
        self, agent_id: int, *, campaign_id: int | None, number: str | None, contact_id: int | None, actor: Actor
    ) -> uuid.UUID:
        attempt = await self.dialer.manual.dial(agent_id, ManualTarget(campaign_id, number, contact_id))
        # The number is personal data: the append-only audit row names the attempt and contact only.
        await self._audit(
            actor,
            "call.manual_dial",
            agent_id,
            attempt_id=attempt.id,
            campaign_id=attempt.campaign_id,
            contact_id=attempt.contact_id,
        )
        return attempt.id

    async def transfer(
        self, agent_id: int, kind: Literal["blind", "attended"], target: dict[str, Any], *, actor: Actor
    ) -> TransferStatus:
        t = await self.dialer.transfers.start(agent_id, TransferKind(kind), parse_target(target))
        status = _transfer_status(t)
        # An external number is personal data: the append-only audit row says "number" only (the
        # CDR and the call's legs keep it, and anonymise it with the call).
        named = "number" if t.target.kind is TargetKind.NUMBER else t.target.describe()
        await self._audit(actor, "call.transfer", agent_id, attempt_id=status.attempt_id, kind=kind, target=named)
        return status

    async def transfer_action(
        self, agent_id: int, action: Literal["complete", "cancel", "conference"], *, actor: Actor
    ) -> TransferStatus:
        t = await self.dialer.transfers.act(agent_id, TransferEvent(action))
        status = _transfer_status(t)
        await self._audit(actor, f"call.transfer_{action}", agent_id, attempt_id=status.attempt_id)
        return status


def _transfer_status(t: Transfer) -> TransferStatus:
    return TransferStatus(
        attempt_id=uuid.UUID(t.attempt_id),
        kind=t.kind.value,
        state=t.state.value,
        from_agent_id=t.from_agent_id,
        target=t.target.kind.value,
        to_agent_id=t.to_agent_id,
        target_campaign_id=t.target.campaign_id,
        number=t.target.number,
        cause=t.cause,
    )


class ApiOnlyControl:
    """The controls of a process that serves the API only (`hitcall serve --api-only`):
    live call and agent control belong to the one process that dials on this database,
    so they answer 503; what is stored (a disposition on a named attempt) works here."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @staticmethod
    def _elsewhere() -> Unavailable:
        return Unavailable(
            "this HitCall process serves the API only; live calls and agents are controlled "
            "through the process that dials",
            code="dialer_elsewhere",
        )

    async def campaign_changed(self, campaign_id: int) -> None:
        """Nothing to do: the dialing process reads campaign changes every second."""

    async def agent_changed(self, agent_id: int) -> None:
        """Nothing to do: the dialing process reads agent changes every second."""

    async def pause_agent(self, agent_id: int, pause_code: str, *, actor: Actor) -> None:
        raise self._elsewhere()

    async def unpause_agent(self, agent_id: int, *, actor: Actor) -> None:
        raise self._elsewhere()

    async def end_wrap_up(self, agent_id: int, *, actor: Actor) -> None:
        raise self._elsewhere()

    async def log_out_agent(self, agent_id: int, *, actor: Actor) -> None:
        raise self._elsewhere()

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
        if attempt_id is None:
            raise self._elsewhere()
        await dispositions.set_on_ended_call(
            self.pool,
            attempt_id,
            disposition,
            agent_id=agent_id,
            actor=actor,
            now=datetime.now(UTC),
            callback=_callback(callback_at, callback_kind),
        )

    async def accept_offer(self, agent_id: int, *, actor: Actor) -> uuid.UUID:
        raise self._elsewhere()

    async def skip_offer(self, agent_id: int, reason: str | None, *, actor: Actor) -> None:
        raise self._elsewhere()

    async def live_calls(self, *, campaign_id: int | None = None, agent_id: int | None = None) -> list[LiveCall]:
        raise self._elsewhere()

    async def hang_up(self, attempt_id: uuid.UUID, *, actor: Actor) -> None:
        raise self._elsewhere()

    async def transfer(
        self, agent_id: int, kind: Literal["blind", "attended"], target: dict[str, Any], *, actor: Actor
    ) -> TransferStatus:
        parse_target(target)  # bad input is refused here as well
        raise self._elsewhere()

    async def transfer_action(
        self, agent_id: int, action: Literal["complete", "cancel", "conference"], *, actor: Actor
    ) -> TransferStatus:
        raise self._elsewhere()

    async def manual_dial(
        self, agent_id: int, *, campaign_id: int | None, number: str | None, contact_id: int | None, actor: Actor
    ) -> uuid.UUID:
        raise self._elsewhere()

    async def pause_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        raise self._elsewhere()

    async def resume_recording(self, agent_id: int, *, actor: Actor) -> RecordingPauseStatus:
        raise self._elsewhere()
