"""Bridge recordings from Asterisk into the recordings store.

The dialer starts an ARI bridge recording when a customer joins an agent's
bridge (campaign with recording on). When the call ends the recording is
stopped; when Asterisk reports it finished, the file is fetched over ARI (so
Asterisk may run on another host), moved into the store with its sha256, size
and duration, its row written with `retention_until`, and the copy in
Asterisk's spool deleted.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from ..ari import AriError, AriPort
from ..core.retention import RetentionPolicy
from ..logs import get_logger
from .recordings import RecordingStore

log = get_logger("hitcall.recorder")


@dataclass(frozen=True)
class _Pending:
    recording_id: uuid.UUID
    attempt_id: uuid.UUID
    campaign_id: int
    call_at: datetime
    policy: RetentionPolicy


class Recorder:
    def __init__(self, ari: AriPort, pool: asyncpg.Pool, store: RecordingStore, incoming_dir: Path) -> None:
        self.ari = ari
        self.pool = pool
        self.store = store
        self.incoming = incoming_dir
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.finalized = 0
        self.failed = 0

    def call_ended(self, call: Any, outcome: Any) -> None:
        """Dialer hook: stop the call's bridge recording; it is stored when Asterisk finishes it."""
        if call.recording_id is None:
            return
        name = str(call.recording_id)
        self._pending[name] = _Pending(
            call.recording_id,
            call.attempt.id,
            call.campaign.id,
            call.answered_at or call.attempt.created_at,
            call.campaign.retention,
        )
        self._spawn(self._stop(name))

    async def _stop(self, name: str) -> None:
        try:
            await self.ari.rest.stop_live(name)
        except AriError:
            pass  # already finished (e.g. the bridge went away)

    async def handle_event(self, ev: Any) -> None:
        etype = getattr(ev, "type", None)
        if etype not in ("RecordingFinished", "RecordingFailed"):
            return
        name = ev.recording.name
        pending = self._pending.pop(name, None)
        if pending is None:
            return
        if etype == "RecordingFailed":
            self.failed += 1
            log.warning("recording.failed", recording_id=name, cause=getattr(ev.recording, "cause", None))
            return
        self._spawn(self._store(name, pending, ev.recording.format or "wav"))

    async def _store(self, name: str, p: _Pending, fmt: str) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)
        tmp = self.incoming / f"{name}.{fmt}"
        try:
            data = await self.ari.rest.get_stored_file(name)
            await asyncio.to_thread(tmp.write_bytes, data)
            rec = await self.store.finalize(
                self.pool,
                source_path=tmp,
                recording_id=p.recording_id,
                attempt_id=p.attempt_id,
                campaign_id=p.campaign_id,
                call_at=p.call_at,
                policy=p.policy,
                format=fmt,
            )
            try:
                await self.ari.rest.delete_stored(name)
            except AriError:
                pass
            self.finalized += 1
            log.info("recording.stored", recording_id=name, attempt_id=str(p.attempt_id), size=rec.size_bytes)
        except Exception:
            self.failed += 1
            log.exception("recording.store_failed", recording_id=name, attempt_id=str(p.attempt_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for recordings of ended calls to be stored (shutdown, tests)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._pending or self._tasks) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - two conditions, no event
            await asyncio.sleep(0.05)
