"""The agent's disposition of a call, on the dialing process: the campaign's code list
(phone keys 3-9 and the API), the code's rule (core.dispositions) applied to the
contact once the call has ended, and the campaign setting that keeps the agent in
wrap-up until the call has a disposition.

Writes go through `store.dispositions.record` in one transaction (code on the attempt,
do-not-call entry, callback, ``disposition.set`` event, audit row); a code the campaign
lacks, or a callback time the rules refuse, changes nothing. The contact's next step
waits for the call's end (its close goes through the call journal first): a code given
during the call is kept here and applied when the call ends; a later code replaces it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ..agents.sessions import AgentSession, AgentSessions
from ..ari import AriError
from ..auth import Actor
from ..core.dispositions import ContactEffect, Disposition, by_key, contact_effect, find, wrap_up_may_end
from ..core.outcomes import Outcome
from ..core.states import AgentState
from ..errors import Conflict, HitCallError, NotFound
from ..logs import get_logger
from ..records.journal import CallJournal
from ..store import dispositions as store
from ..store.dispositions import AttemptRef, CallbackSpec
from .calls import LiveCall
from .store import CallStore

log = get_logger("hitcall.dispositions")


def _listed(codes: tuple[Disposition, ...], code: str) -> Disposition | None:
    """The campaign's code `code`, or None when the list no longer has it."""
    return next((d for d in codes if d.code == code), None)


REFUSED_SOUND = "sound:beeperr"  # a key the agent may not use now (no code, disposition required)
FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class _Pending:
    attempt: AttemptRef
    effect: ContactEffect
    code: str


class DispositionDesk:
    @property
    def pool(self) -> asyncpg.Pool:
        return self.store.pool

    def __init__(
        self,
        store: CallStore,
        sessions: AgentSessions,
        journal: CallJournal,
        calls: dict[str, LiveCall],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.journal = journal
        self.calls = calls
        self._spawn = spawn
        self._pending: dict[str, _Pending] = {}  # by attempt id: contact step waiting for the call's end
        self._missing: dict[int, str] = {}  # agent id -> attempt id whose disposition the campaign requires
        sessions.on_wrap_end(self._may_end_wrap)

    # ---------------------------------------------------------- phone keys ---
    def key(self, session: AgentSession, digit: str) -> bool:
        """A key 3-9 during a call or wrap-up: the code with that key in the campaign's list."""
        if digit not in "3456789" or session.state not in (AgentState.ON_CALL, AgentState.WRAP_UP):
            return False
        self._spawn(self._key(session, digit))
        return True

    async def _key(self, session: AgentSession, digit: str) -> None:
        actor = Actor(f"agent:{session.agent_id}", "agent")
        try:
            if session.campaign_id is None:
                raise Conflict("the agent's call belongs to no campaign", code="no_campaign")
            codes = await store.load(self.pool, session.campaign_id)
            d = by_key(codes, digit)
            if d is None:
                raise Conflict(f"the campaign has no disposition on key {digit}", code="no_code")
            await self.set(session.agent_id, d.code, attempt_id=None, actor=actor, callback=CallbackSpec(at=None))
        except HitCallError as exc:
            log.info("disposition.key_refused", agent_id=session.agent_id, digit=digit, reason=exc.message)
            await self._beep(session)
        except Exception:
            log.exception("disposition.key_failed", agent_id=session.agent_id, digit=digit)
            await self._beep(session)

    async def _beep(self, session: AgentSession) -> None:
        try:
            await self.sessions.ari.rest.play(session.channel_id, REFUSED_SOUND)
        except AriError:
            pass  # the phone went away

    # ------------------------------------------------------------- setting ---
    async def set(
        self,
        agent_id: int,
        code: str,
        *,
        attempt_id: uuid.UUID | None,
        actor: Actor,
        callback: CallbackSpec | None,
    ) -> dict[str, Any]:
        """Set the disposition of the agent's call `attempt_id` (None: its current or last
        call). ValidationFailed (field disposition / callback_at) and nothing changed for a
        code the campaign lacks or a callback time the rules refuse."""
        if attempt_id is None:
            session = self.sessions.get(agent_id)
            if session.attempt_id is None:
                raise Conflict("agent has no current or last call", details={"agent_id": agent_id})
            try:
                attempt_id = uuid.UUID(session.attempt_id)
            except ValueError:
                raise Conflict(
                    "the agent's call is an inbound call, not a campaign attempt: no disposition",
                    details={"agent_id": agent_id},
                ) from None
        call = self.calls.get(str(attempt_id))
        if call is not None and call.agent_id == agent_id:
            a = call.attempt
            ref = AttemptRef(a.id, a.campaign_id, a.contact_id, a.attempt_no, a.number, agent_id)
        else:
            call = None
            found = await store.attempt_ref(self.pool, attempt_id)
            if found is None or found.agent_id != agent_id:
                raise NotFound(
                    "no call of this agent with that attempt id",
                    details={"field": "attempt_id", "attempt_id": str(attempt_id), "agent_id": agent_id},
                )
            ref = found
        d = find(await store.load(self.pool, ref.campaign_id), code)
        now = datetime.now(UTC)
        effect = contact_effect(d, now)
        key = str(attempt_id)
        live = call is not None and key in self.calls
        if live and effect.status is not None:
            self._pending[key] = _Pending(ref, effect, d.code)  # applied when the call ends
        elif live:
            self._pending.pop(key, None)  # a callback: the contact keeps it after the call
        else:
            await self._flush()  # the contact's close is committed before its next step is written
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                payload = await store.record(
                    conn, ref, d, agent_id=agent_id, actor=actor, now=now, call_ended=not live, callback=callback
                )
        except BaseException:
            if live:
                self._pending.pop(key, None)
            raise
        if call is not None:
            call.disposition = d.code
        self._disposed(agent_id, key)
        log.info("disposition.set", agent_id=agent_id, attempt_id=key, code=d.code, rule=d.rule.value, live=live)
        return payload

    async def _flush(self) -> None:
        try:
            await self.journal.flush(FLUSH_TIMEOUT_S)
        except TimeoutError:
            log.warning("disposition.journal_slow")

    # ------------------------------------------------------------ call end ---
    def call_ended(self, call: LiveCall, outcome: Outcome) -> None:
        """The dialer's call-end listener: a code given during the call takes effect on the
        contact; a campaign that requires one keeps the agent in wrap-up until it has one."""
        key = call.channel_id
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._spawn(self._apply_later(pending))
        elif call.disposition is not None:
            # a code given before a restart (the call was adopted): its rule applies now
            self._spawn(self._apply_code_later(call, call.disposition))
        talked = call.bridged_at is not None
        required = call.campaign.disposition_required
        if call.agent_id is not None and not wrap_up_may_end(
            required=required, talked=talked, disposition=call.disposition
        ):
            self._missing[call.agent_id] = key

    async def _apply_code_later(self, call: LiveCall, code: str) -> None:
        a = call.attempt
        try:
            codes = await store.load(self.pool, a.campaign_id)
        except Exception:
            log.exception("disposition.apply_failed", attempt_id=str(a.id), code=code)
            return
        d = _listed(codes, code)
        if d is None:
            return
        effect = contact_effect(d, datetime.now(UTC))
        if effect.status is not None:
            ref = AttemptRef(a.id, a.campaign_id, a.contact_id, a.attempt_no, a.number, call.agent_id)
            await self._apply_later(_Pending(ref, effect, d.code))

    async def _apply_later(self, p: _Pending) -> None:
        await self._flush()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await store.apply_contact_effect(conn, p.attempt, p.effect, code=p.code)
        except Exception:
            log.exception("disposition.apply_failed", attempt_id=str(p.attempt.id), code=p.code)

    # ------------------------------------------------------------- wrap-up ---
    def _may_end_wrap(self, session: AgentSession) -> str | None:
        missing = self._missing.get(session.agent_id)
        if missing is None:
            return None
        if session.attempt_id != missing:
            self._missing.pop(session.agent_id, None)  # another call since (a stale entry)
            return None
        return "the campaign requires a disposition for the call before wrap-up ends"

    def _disposed(self, agent_id: int, attempt_key: str) -> None:
        if self._missing.get(agent_id) == attempt_key:
            del self._missing[agent_id]
            self.sessions.end_expired_wrap(agent_id)

    def forget_agent(self, agent_id: int) -> None:
        self._missing.pop(agent_id, None)
