"""The one composition root: builds every part of the service and wires them.

Nothing else constructs long-lived service objects; everything is injected from
here, so tests and the demo run exactly what `hitcall serve` runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .agents.sessions import AgentSessions
from .ari import AriClient
from .dialer.engine import Dialer
from .dialer.hopper import Hopper
from .logs import get_logger
from .records.cdr import CdrWriter
from .settings import Settings
from .store import migrations
from .store.db import Database

log = get_logger("hitcall.app")


@dataclass
class Options:
    """What to run. `hitcall serve` runs everything; tests switch parts off."""

    dialer_tick_s: float = 0.25
    campaign_refresh_s: float = 1.0
    migrate: bool = True
    ari_wait_s: float | None = 15.0


@dataclass
class HitCall:
    settings: Settings
    options: Options = field(default_factory=Options)
    db: Database | None = None
    ari: AriClient | None = None
    sessions: AgentSessions | None = None
    dialer: Dialer | None = None
    cdr: CdrWriter | None = None
    _stack: list[Any] = field(default_factory=list)

    async def start(self) -> "HitCall":
        s = self.settings
        self.db = Database(s)
        await self.db.open()
        self._stack.append(self.db.close)
        pool = self.db.pool
        if self.options.migrate:
            applied = await migrations.apply(pool)
            if applied:
                log.info("app.migrated", applied=applied)

        self.cdr = CdrWriter(pool, s.data_dir / "spool" / "cdr")
        await self.cdr.start()
        self._stack.append(self.cdr.close)

        assert s.ari_password is not None
        self.ari = AriClient(s.ari_url, s.ari_user, s.ari_password, s.ari_app)
        self.sessions = AgentSessions(self.ari, pool)
        await self.sessions.start()
        self._stack.append(self.sessions.close)
        self.dialer = Dialer(self.ari, pool, self.sessions, Hopper(pool), self.cdr,
                             tick_s=self.options.dialer_tick_s,
                             campaign_refresh_s=self.options.campaign_refresh_s)
        self.ari.on_event(self.dialer.handle_event)
        self.ari.on_resync(self.dialer.handle_resync)
        await self.dialer.start()
        self._stack.append(self.dialer.close)
        await self.ari.start(wait=self.options.ari_wait_s)
        # Closed first: no new events while the rest shuts down.
        self._stack.append(self.ari.close)
        return self

    async def close(self) -> None:
        while self._stack:
            closer = self._stack.pop()
            try:
                await closer()
            except Exception:
                log.exception("app.close_failed", part=getattr(closer, "__qualname__", str(closer)))

    async def __aenter__(self) -> "HitCall":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run_forever(self, stop: asyncio.Event) -> None:
        await stop.wait()
