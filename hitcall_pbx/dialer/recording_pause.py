"""Recording pause: an agent pauses and resumes the recording of its current call (to
take a card number), by a phone key or through the API.

The rules are `core.recording_pause`; this adapter mutes the live ARI bridge recording
(Asterisk writes silence in place of the audio, so the file keeps the call's length and
a span sits at its own offset) and unmutes it, and queues each span to the call journal
(recording_pauses, its audit row, and the recording.paused / recording.resumed webhook
event, in one transaction, spooled while Postgres is down). A span opens once Asterisk
has muted the recording and closes when the unmute is sent, so the stored span lies
within the silence. A span still open when the call ends closes at the call's end.

No prompt is played to the agent: a playback on a channel of the recorded bridge stops
Asterisk's bridge recording from writing (seen on Asterisk 22), so the state is in the
API's answer and the webhook events.

Requests for one call are handled one at a time (a phone key pressed twice, the API at
the same moment): each sees the state the previous one left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..agents.sessions import KEY_RECORDING_PAUSE, AgentSession, AgentSessions
from ..ari import AriError, AriNotFound, AriPort, Resync
from ..core.outcomes import Outcome
from ..core.recording_pause import NotRecorded, PauseSpan, RecordingPauses
from ..core.states import AgentState
from ..errors import Conflict, Unavailable
from ..hooks.events import enqueue
from ..logs import get_logger
from ..records.journal import CallJournal, RecordingPauseSpan
from .calls import LiveCall

if TYPE_CHECKING:
    from .engine import Dialer

log = get_logger("hitcall.recording_pause")


@dataclass(frozen=True)
class PauseState:
    """What a pause or resume left: the call, its recording and every span so far."""

    attempt_id: str
    recording_id: str
    paused: bool
    spans: tuple[PauseSpan, ...]


@dataclass
class _Live:
    call: LiveCall
    pauses: RecordingPauses
    lock: asyncio.Lock


_SPANS = """SELECT * FROM recording_pauses WHERE attempt_id = ANY($1::uuid[]) ORDER BY attempt_id, seq"""
# Open spans of calls no process follows any more: closed at the CDR's end, else now.
_CLOSE_ORPHANS = """
WITH s AS (
    UPDATE recording_pauses p
    SET resumed_at = greatest(p.paused_at, coalesce(c.ended_at, now())), resumed_by = 'system', ended_by_call = true
    FROM recording_pauses o LEFT JOIN call_attempts c ON c.id = o.attempt_id
    WHERE o.resumed_at IS NULL AND o.attempt_id <> ALL($1::uuid[])
      AND p.recording_id = o.recording_id AND p.seq = o.seq
    RETURNING p.*),
a AS (
    INSERT INTO audit_log (actor, actor_role, action, object_type, object_id, details)
    SELECT 'system', 'system', 'recording.resume', 'recording', recording_id::text,
           jsonb_build_object('attempt_id', attempt_id, 'seq', seq, 'at', resumed_at, 'ended_by_call', true)
    FROM s)
SELECT * FROM s
"""


def _now() -> datetime:
    return datetime.now(UTC)


class RecordingPauser:
    def __init__(self, ari: AriPort, dialer: Dialer, sessions: AgentSessions, journal: CallJournal) -> None:
        self.ari = ari
        self.dialer = dialer
        self.sessions = sessions
        self.journal = journal
        self._live: dict[str, _Live] = {}
        sessions.on_dtmf(self._key)
        dialer.on_call_end.append(self.call_ended)
        dialer.recovery.on_restart.append(self.recover)

    # ------------------------------------------------------------ keys ---
    def _key(self, session: AgentSession, digit: str) -> bool:
        if digit != KEY_RECORDING_PAUSE or session.state is not AgentState.ON_CALL:
            return False
        self.dialer._spawn(self._toggle(session.agent_id))
        return True

    async def _toggle(self, agent_id: int) -> None:
        actor = f"agent:{agent_id}"
        try:
            live = self._current(agent_id)
            if live.pauses.paused:
                await self.resume(agent_id, by=actor, role="agent")
            else:
                await self.pause(agent_id, by=actor, role="agent")
        except Conflict as exc:
            log.info("recording_pause.key_refused", agent_id=agent_id, reason=exc.message, code=exc.code)
        except Exception:
            log.exception("recording_pause.key_failed", agent_id=agent_id)

    # --------------------------------------------------------- controls ---
    def _current(self, agent_id: int) -> _Live:
        """The agent's current call and its pauses; Conflict when the agent has no recorded call."""
        session = self.sessions.get(agent_id)
        call = self.dialer.calls.get(session.attempt_id or "")
        if session.state is not AgentState.ON_CALL or call is None or call.agent_id != agent_id:
            raise Conflict(
                "the agent has no current call to pause the recording of",
                details={"agent_id": agent_id, "state": session.state.value},
                code="no_current_call",
            )
        if call.recording_id is None:
            raise NotRecorded(
                "the agent's current call is not recorded",
                details={"agent_id": agent_id, "attempt_id": call.channel_id},
            )
        live = self._live.get(call.channel_id)
        if live is None or live.call is not call:
            live = _Live(call, RecordingPauses(str(call.recording_id)), asyncio.Lock())
            self._live[call.channel_id] = live
        return live

    async def pause(self, agent_id: int, *, by: str, role: str | None) -> PauseState:
        live = self._current(agent_id)
        async with live.lock:
            live.pauses.pause(_now(), by)  # refused before Asterisk is asked
            await self._ari(live, mute=True)
            live.pauses, span = live.pauses.pause(_now(), by)
            self._journal(live, span, role)
        log.info("recording.paused", agent_id=agent_id, attempt_id=live.call.channel_id, seq=span.seq)
        return self._state(live)

    async def resume(self, agent_id: int, *, by: str, role: str | None) -> PauseState:
        live = self._current(agent_id)
        async with live.lock:
            at = _now()  # before the unmute: the stored span ends within the silence
            live.pauses.resume(at, by)  # refused (409) when not paused, before Asterisk is asked
            await self._ari(live, mute=False)
            live.pauses, span = live.pauses.resume(at, by)
            self._journal(live, span, role)
        log.info("recording.resumed", agent_id=agent_id, attempt_id=live.call.channel_id, seq=span.seq)
        return self._state(live)

    def call_ended(self, call: LiveCall, outcome: Outcome) -> None:
        """Dialer hook: a span still open closes at the call's end."""
        live = self._live.pop(call.channel_id, None)
        if live is None:
            return
        live.pauses, span = live.pauses.close(call.fsm.ended_at or _now())
        if span is not None:
            self._journal(live, span, "system")

    async def handle_event(self, ev: object) -> None:
        """A paused call's recording started again (a transfer carries it to another bridge,
        appended to the same file): mute the new one too."""
        if getattr(ev, "type", None) != "RecordingStarted":
            return
        name = getattr(getattr(ev, "recording", None), "name", None)
        for live in self._live.values():
            if str(live.call.recording_id) == name and live.pauses.paused:
                try:
                    await self.ari.rest.mute_live(name)
                    log.info("recording_pause.kept", attempt_id=live.call.channel_id, recording_id=name)
                except AriError as exc:
                    log.error("recording_pause.not_kept", attempt_id=live.call.channel_id, error=exc.message)

    # ---------------------------------------------------------- restart ---
    async def recover(self, snap: Resync) -> None:
        """At the first connect after a start: an adopted call paused by the previous process
        stays paused here (its open span is loaded, closed by a resume or the call's end);
        an open span of a call that is no longer live closes at the call's end (its CDR),
        or now, as ended by the call."""
        await self.journal.flush()  # what the previous process left in the spool first
        adopted = {c.channel_id: c for c in self.dialer.calls.values() if c.recording_id is not None}
        pool = self.dialer.pool
        rows = await pool.fetch(_SPANS, [c.attempt.id for c in adopted.values()])
        for r in rows:
            call = adopted[str(r["attempt_id"])]
            live = self._live.setdefault(
                call.channel_id, _Live(call, RecordingPauses(str(call.recording_id)), asyncio.Lock())
            )
            span = PauseSpan(r["seq"], r["paused_at"], r["paused_by"], r["resumed_at"], r["resumed_by"])
            live.pauses = replace(live.pauses, spans=(*live.pauses.spans, span))
        async with pool.acquire() as conn, conn.transaction():
            closed = await conn.fetch(_CLOSE_ORPHANS, [c.attempt.id for c in adopted.values()])
            for r in closed:
                await enqueue(
                    conn,
                    "recording.resumed",
                    f"attempt:{r['attempt_id']}",
                    {
                        "attempt_id": str(r["attempt_id"]),
                        "recording_id": str(r["recording_id"]),
                        "seq": r["seq"],
                        "paused_at": r["paused_at"].isoformat(),
                        "paused_by": r["paused_by"],
                        "resumed_at": r["resumed_at"].isoformat(),
                        "resumed_by": "system",
                        "ended_by_call": True,
                    },
                )
        if rows or closed:
            log.warning("recording_pause.recovered", adopted_spans=len(rows), closed=len(closed))

    # ---------------------------------------------------------- helpers ---
    async def _ari(self, live: _Live, *, mute: bool) -> None:
        name = str(live.call.recording_id)
        try:
            if mute:
                await self.ari.rest.mute_live(name)
            else:
                await self.ari.rest.unmute_live(name)
        except AriNotFound:
            raise NotRecorded(
                "the call's recording is no longer live", details={"attempt_id": live.call.channel_id}
            ) from None
        except AriError as exc:
            raise Unavailable(
                f"Asterisk refused to {'pause' if mute else 'resume'} the recording: {exc.message}",
                details={"attempt_id": live.call.channel_id},
            ) from exc

    def _journal(self, live: _Live, span: PauseSpan, role: str | None) -> None:
        call = live.call
        assert call.recording_id is not None
        self.journal.recording_pause(
            RecordingPauseSpan(
                recording_id=call.recording_id,
                attempt_id=call.attempt.id,
                seq=span.seq,
                paused_at=span.paused_at,
                paused_by=span.paused_by,
                paused_role=role if span.open else None,  # a span's first op opens it (journal)
                resumed_at=span.resumed_at,
                resumed_by=span.resumed_by,
                resumed_role=role,
                ended_by_call=span.ended_by_call,
            )
        )
        self.journal.event(
            "recording.paused" if span.open else "recording.resumed",
            f"attempt:{call.attempt.id}",
            {
                "attempt_id": str(call.attempt.id),
                "recording_id": str(call.recording_id),
                "campaign_id": call.campaign.id,
                "agent_id": call.agent_id,
                "seq": span.seq,
                "paused_at": span.paused_at.isoformat(),
                "paused_by": span.paused_by,
                "resumed_at": span.resumed_at.isoformat() if span.resumed_at else None,
                "resumed_by": span.resumed_by,
                "ended_by_call": span.ended_by_call,
            },
        )

    @staticmethod
    def _state(live: _Live) -> PauseState:
        return PauseState(
            attempt_id=live.call.channel_id,
            recording_id=str(live.call.recording_id),
            paused=live.pauses.paused,
            spans=live.pauses.spans,
        )
