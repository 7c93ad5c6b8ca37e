"""A stand-in for the dialing process's supervisor monitoring (api.deps.MonitoringControl)
for tests of the REST layer: sessions live in memory; it refuses what the real one
refuses for ids it does not know."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hitcall_pbx.auth import Actor
from hitcall_pbx.core.monitoring import MonitorMode
from hitcall_pbx.errors import Conflict, NotFound


@dataclass
class FakeMonitoring:
    sessions: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def active(self) -> list[dict[str, Any]]:
        return [s for s in self.sessions.values() if s["ended_at"] is None]

    async def start_session(
        self, *, user_id: int, username: str, role: str, attempt_id: str, mode: MonitorMode, actor: Actor
    ) -> dict[str, Any]:
        self.calls.append(("start", attempt_id))
        now = datetime.now(UTC)
        monitor_id = len(self.sessions) + 1
        self.sessions[monitor_id] = session = {
            "id": monitor_id,
            "supervisor": username,
            "supervisor_user_id": user_id,
            "phone_agent_id": None,
            "attempt_id": attempt_id,
            "campaign_id": None,
            "agent_id": None,
            "mode": MonitorMode(mode).value,
            "modes": [{"mode": MonitorMode(mode).value, "at": now}],
            "started_at": now,
            "ended_at": None,
            "end_reason": None,
        }
        return session

    def _live(self, monitor_id: int) -> dict[str, Any]:
        session = self.sessions.get(monitor_id)
        if session is None or session["ended_at"] is not None:
            raise NotFound(f"no live monitoring session {monitor_id}", details={"monitor_id": monitor_id})
        return session

    async def change(self, monitor_id: int, mode: MonitorMode, **kw: Any) -> dict[str, Any]:
        session = self._live(monitor_id)
        if session["mode"] == MonitorMode(mode).value:
            raise Conflict("the session is already in that mode", code="same_mode")
        session["mode"] = MonitorMode(mode).value
        session["modes"].append({"mode": session["mode"], "at": datetime.now(UTC)})
        return session

    async def stop(self, monitor_id: int, **kw: Any) -> dict[str, Any]:
        session = self._live(monitor_id)
        session["ended_at"], session["end_reason"] = datetime.now(UTC), "stopped"
        return session
