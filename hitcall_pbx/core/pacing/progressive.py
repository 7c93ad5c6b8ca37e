"""Progressive pacing and the guards every pacer shares: one call per ready agent,
the agent reserved; no call without an active agent; the lines-per-agent cap."""

from __future__ import annotations

import math

from hitcall_pbx.core.pacing.types import MODE_IDLE, MODE_PROGRESSIVE, PacingDecision, PacingSnapshot

__all__ = ["decide_progressive", "line_room"]


def line_room(snapshot: PacingSnapshot) -> int:
    """New calls allowed by the lines-per-agent cap (may be 0)."""
    limit = math.floor(snapshot.settings.max_lines_per_agent * snapshot.active_agents + 1e-9)
    return max(0, limit - snapshot.lines_in_use)


def _no_agents(snapshot: PacingSnapshot) -> PacingDecision | None:
    if snapshot.agents_logged_in <= 0:
        return PacingDecision(0, "no agent logged in", MODE_IDLE)
    if snapshot.active_agents <= 0:
        return PacingDecision(0, "every agent paused", MODE_IDLE)
    return None


def decide_progressive(snapshot: PacingSnapshot) -> PacingDecision:
    """One call per ready agent that no ringing call already serves; each new call
    reserves its agent, so an answered call always has one (never abandons)."""
    idle = _no_agents(snapshot)
    if idle is not None:
        return idle
    want = snapshot.agents_ready - len(snapshot.dialling_elapsed_s) - snapshot.answered_waiting
    n = max(0, min(want, line_room(snapshot)))
    return PacingDecision(
        n, f"progressive: {snapshot.agents_ready} ready agents without a call", MODE_PROGRESSIVE, True
    )
