"""Discrete-event model of agents and customers that drives the real pacing code.

A heap of timed events and one seeded `random.Random`. Calls are placed when the
pacer says so; each is answered by a person with the contact rate of that hour after
a ring-to-answer time, is busy, or rings out at the ring timeout. An answered call
goes to the longest-idle ready agent (or its reserved agent); with none it waits, and
if no agent frees up within the connect limit (2 s) the customer hears the
information message and the call is abandoned. Agents talk, wrap up, become ready,
and log in and out by the scenario's schedule. The pacer is asked after every batch
of state changes and every `tick_s` seconds. Each simulated day is `hours` long,
starts at its own midnight (abandon counters reset), and the run reports totals,
per-day figures and the 30-day rate.

About 540 lines: one event loop whose handlers (dial, answer, connect, talk, wrap-up,
shifts) share the agents' and calls' state; the pacing it drives is core.pacing's.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from hitcall_pbx.core.pacing import (
    MODE_FALLBACK,
    PacingSettings,
    PacingSnapshot,
    PacingStats,
    abandon_rate,
    make_pacer,
)
from hitcall_pbx.sim.scenario import Scenario

__all__ = ["DayResult", "SimResult", "simulate"]

DAY_S = 86_400.0

# event kinds (heap order at equal times: by kind, then sequence)
_ANSWER, _RING_END, _ABANDON, _TALK_END, _WRAP_END, _STAFF, _DAY_END, _TICK, _DECIDE = range(9)

# agent states
_OUT, _READY, _RESERVED, _TALK, _WRAP = range(5)


class _Agent:
    __slots__ = ("call", "id", "leaving", "ready_since", "since", "state", "talk_end", "wrap_start")

    def __init__(self, ident: int) -> None:
        self.id = ident
        self.state = _OUT
        self.since = 0.0
        self.call: _Call | None = None
        self.leaving = False
        self.ready_since = 0.0
        self.wrap_start = 0.0
        self.talk_end = 0.0


class _Call:
    __slots__ = ("agent", "answered_at", "id", "placed")

    def __init__(self, ident: int, placed: float, agent: _Agent | None) -> None:
        self.id = ident
        self.placed = placed
        self.agent = agent
        self.answered_at = 0.0


@dataclass
class DayResult:
    day: int
    placed: int = 0
    answered: int = 0
    connected: int = 0
    abandoned: int = 0
    no_answer: int = 0
    busy: int = 0
    talk_s: float = 0.0
    wrap_s: float = 0.0
    idle_s: float = 0.0
    logged_in_s: float = 0.0
    agent_wait_total_s: float = 0.0
    fallback_seconds: float = 0.0
    decisions: int = 0
    answer_to_agent_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def abandon_rate(self) -> float:
        return abandon_rate(self.abandoned, self.connected)

    @property
    def occupancy(self) -> float:
        return (self.talk_s + self.wrap_s) / self.logged_in_s if self.logged_in_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "placed": self.placed,
            "connected": self.connected,
            "abandoned": self.abandoned,
            "abandon_rate": round(self.abandon_rate, 5),
            "occupancy": round(self.occupancy, 4),
            "talk_minutes_per_agent_hour": round(_per_agent_hour(self.talk_s, self.logged_in_s), 3),
            "fallback_minutes": round(self.fallback_seconds / 60.0, 1),
        }


def _per_agent_hour(talk_s: float, logged_in_s: float) -> float:
    return (talk_s / 60.0) / (logged_in_s / 3600.0) if logged_in_s > 0 else 0.0


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


@dataclass
class SimResult:
    scenario: Scenario
    days: list[DayResult]

    def to_dict(self) -> dict[str, Any]:
        s = self.scenario
        tot = DayResult(day=-1)
        for d in self.days:
            for name in (
                "placed",
                "answered",
                "connected",
                "abandoned",
                "no_answer",
                "busy",
                "talk_s",
                "wrap_s",
                "idle_s",
                "logged_in_s",
                "agent_wait_total_s",
                "fallback_seconds",
                "decisions",
            ):
                setattr(tot, name, getattr(tot, name) + getattr(d, name))
        ms = sorted(x for d in self.days for x in d.answer_to_agent_ms)
        rates = [d.abandon_rate for d in self.days]
        windows = [
            abandon_rate(
                sum(d.abandoned for d in self.days[max(0, i - 29) : i + 1]),
                sum(d.connected for d in self.days[max(0, i - 29) : i + 1]),
            )
            for i in range(len(self.days))
        ]
        return {
            "mode": s.mode,
            "agents": max(n for _, n in s.agent_schedule()),
            "contact_rate": s.contact_rate,
            "contact_rate_by_hour": [list(x) for x in s.contact_rate_by_hour] if s.contact_rate_by_hour else None,
            "talk_mean_s": s.talk.mean,
            "wrap_s": s.wrap.mean,
            "hours": s.hours,
            "days": len(self.days),
            "seed": s.seed,
            "placed": tot.placed,
            "answered": tot.answered,
            "connected": tot.connected,
            "abandoned": tot.abandoned,
            "no_answer": tot.no_answer,
            "busy": tot.busy,
            "abandon_rate": round(tot.abandon_rate, 5),
            "max_daily_abandon_rate": round(max(rates) if rates else 0.0, 5),
            "max_30_day_abandon_rate": round(max(windows) if windows else 0.0, 5),
            "days_over_cap": sum(1 for r in rates if r > s.abandon_cap),
            "occupancy": round(tot.occupancy, 4),
            "talk_minutes_per_agent_hour": round(_per_agent_hour(tot.talk_s, tot.logged_in_s), 3),
            "mean_agent_wait_s": round(tot.agent_wait_total_s / tot.connected, 2) if tot.connected else 0.0,
            "agent_hours": round(tot.logged_in_s / 3600.0, 2),
            "answer_to_agent_ms_p50": round(_percentile(ms, 0.50), 1),
            "answer_to_agent_ms_p99": round(_percentile(ms, 0.99), 1),
            "fallback_minutes": round(tot.fallback_seconds / 60.0, 1),
            "decisions": tot.decisions,
            "daily": [d.to_dict() for d in self.days],
        }


class _Simulation:
    def __init__(self, scenario: Scenario, stats: PacingStats | None, oracle: bool = False) -> None:
        self.sc = scenario
        self.oracle = oracle
        self.rng = random.Random(scenario.seed)
        self.stats = stats if stats is not None else PacingStats(ring_timeout_s=scenario.ring_timeout)
        self.pacer = make_pacer(scenario.mode)
        target = (
            {}
            if scenario.abandon_target is None
            else {"target_fraction": scenario.abandon_target / scenario.abandon_cap}
        )
        self.settings = PacingSettings(
            **target,
            abandon_cap=scenario.abandon_cap,
            max_lines_per_agent=scenario.max_lines_per_agent,
            ring_timeout_s=scenario.ring_timeout,
            connect_limit_s=scenario.connect_limit_s,
        )
        rng = self.rng
        self.talk = scenario.talk.sampler(rng)
        self.wrap = scenario.wrap.sampler(rng)
        self.ring = scenario.ring_to_answer.sampler(rng)
        self.busy_time = scenario.busy_time.sampler(rng)
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = itertools.count()
        self.call_ids = itertools.count(1)
        self.agents: list[_Agent] = []
        self.ready: dict[int, _Agent] = {}
        self.talking: dict[int, _Agent] = {}
        self.wrapping: dict[int, _Agent] = {}
        self.dialling: dict[int, _Call] = {}
        self.reserved_calls = 0
        self.waiting: dict[int, _Call] = {}
        self.logged_in = 0
        self.leaving = 0
        self.dialing_open = False
        self.day_start = 0.0
        self.day: DayResult = DayResult(day=0)
        self.fallback_since: float | None = None
        self.now = 0.0

    # -- plumbing
    def push(self, t: float, kind: int, obj: Any = None) -> None:
        heapq.heappush(self.heap, (t, kind, next(self.seq), obj))

    def _account(self, agent: _Agent, t: float) -> None:
        """Close the agent's current state interval into today's totals."""
        dt = t - agent.since
        st = agent.state
        if st == _TALK:
            self.day.talk_s += dt
        elif st == _WRAP:
            self.day.wrap_s += dt
        elif st in (_READY, _RESERVED):
            self.day.idle_s += dt
        if st != _OUT:
            self.day.logged_in_s += dt
        agent.since = t

    def _set(self, agent: _Agent, state: int, t: float) -> None:
        self._account(agent, t)
        old = agent.state
        if old == _READY:
            del self.ready[agent.id]
        elif old == _TALK:
            del self.talking[agent.id]
        elif old == _WRAP:
            del self.wrapping[agent.id]
        agent.state = state
        if state == _READY:
            self.ready[agent.id] = agent
            agent.ready_since = t
        elif state == _TALK:
            self.talking[agent.id] = agent
        elif state == _WRAP:
            self.wrapping[agent.id] = agent
            agent.wrap_start = t

    # -- agents
    def _login(self, t: float) -> None:
        agent = next((a for a in self.agents if a.state == _OUT), None)
        if agent is None:
            agent = _Agent(len(self.agents))
            self.agents.append(agent)
        agent.since = t
        agent.leaving = False
        self.logged_in += 1
        self._free(agent, t)

    def _logout(self, agent: _Agent, t: float) -> None:
        if agent.leaving:
            agent.leaving = False
            self.leaving -= 1
        self._set(agent, _OUT, t)
        self.logged_in -= 1

    def _staff(self, want: int, t: float) -> None:
        have = self.logged_in - self.leaving
        if want > have:
            # first keep agents that were about to leave
            for a in self.agents:
                if want <= have:
                    break
                if a.leaving:
                    a.leaving = False
                    self.leaving -= 1
                    have += 1
            for _ in range(want - have):
                self._login(t)
        elif want < have:
            drop = have - want
            for a in list(self.ready.values()):
                if drop == 0:
                    break
                self._logout(a, t)
                drop -= 1
            for a in self.agents:
                if drop == 0:
                    break
                if a.state in (_TALK, _WRAP, _RESERVED) and not a.leaving:
                    a.leaving = True
                    self.leaving += 1
                    drop -= 1

    def _calls_in_flight(self) -> bool:
        return bool(self.dialling or self.waiting or self.reserved_calls)

    def _free(self, agent: _Agent, t: float) -> None:
        """The agent is available: log out if leaving (or the day is over and no call
        is left), else take a waiting call, else ready."""
        if agent.leaving or (not self.dialing_open and not self._calls_in_flight()):
            self._logout(agent, t)
            return
        if self.waiting:
            call = self.waiting.pop(next(iter(self.waiting)))
            self._set(agent, _READY, t)
            self._connect(call, agent, t)
            return
        self._set(agent, _READY, t)

    def _connect(self, call: _Call, agent: _Agent, t: float) -> None:
        self.day.agent_wait_total_s += t - agent.ready_since
        self._set(agent, _TALK, t)
        agent.call = call
        self.day.connected += 1
        self.day.answer_to_agent_ms.append((t - call.answered_at) * 1000.0 + self.sc.bridge_ms)
        self.stats.observe_connect()
        agent.talk_end = t + self.talk()
        self.push(agent.talk_end, _TALK_END, agent)

    # -- calls
    def _place(self, t: float, reserve: bool) -> None:
        agent = None
        if reserve:
            if not self.ready:
                return
            agent = self.ready[next(iter(self.ready))]
            self._set(agent, _RESERVED, t)
            self.reserved_calls += 1
        call = _Call(next(self.call_ids), t, agent)
        if agent is None:
            self.dialling[call.id] = call
        else:
            agent.call = call
        self.day.placed += 1
        rate = self.sc.contact_rate_at((t - self.day_start) / 3600.0)
        u = self.rng.random()
        timeout = self.sc.ring_timeout
        if u < rate:
            ring = self.ring()
            tries = 0
            while ring >= timeout and tries < 50:
                ring = self.ring()
                tries += 1
            self.push(t + min(ring, timeout * 0.999), _ANSWER, call)
        elif u < rate + self.sc.busy_rate:
            self.push(t + min(self.busy_time(), timeout), _RING_END, call)
        else:
            self.push(t + timeout, _RING_END, call)

    def _end_ringing(self, call: _Call) -> None:
        if call.agent is None:
            del self.dialling[call.id]
        else:
            self.reserved_calls -= 1

    def _on_answer(self, call: _Call, t: float) -> None:
        self._end_ringing(call)
        self.day.answered += 1
        self.stats.observe_attempt(t, t - call.placed, True)
        call.answered_at = t
        agent = call.agent
        if agent is not None and agent.state == _RESERVED and agent.call is call:
            agent.state = _READY  # reserved time counts as idle either way
            self.ready[agent.id] = agent
            self._connect(call, agent, t)
            return
        if self.ready:
            agent = self.ready[next(iter(self.ready))]
            self._connect(call, agent, t)
            return
        self.waiting[call.id] = call
        self.push(t + self.sc.connect_limit_s, _ABANDON, call)

    def _on_ring_end(self, call: _Call, t: float) -> None:
        self._end_ringing(call)
        rang = t - call.placed
        if rang < self.sc.ring_timeout - 1e-9:
            self.day.busy += 1
        else:
            self.day.no_answer += 1
        self.stats.observe_attempt(t, rang, False)
        agent = call.agent
        if agent is not None and agent.call is call:
            agent.call = None
            agent.state = _READY  # back to plain ready (time stays idle)
            self.ready[agent.id] = agent
            if agent.leaving or self.waiting:
                del self.ready[agent.id]
                agent.state = _RESERVED
                self._free(agent, t)

    def _on_abandon(self, call: _Call, t: float) -> None:
        if self.waiting.pop(call.id, None) is not None:
            self.day.abandoned += 1
            self.stats.observe_abandon()

    def _on_talk_end(self, agent: _Agent, t: float) -> None:
        self.stats.observe_talk(t - agent.since)
        agent.call = None
        self._set(agent, _WRAP, t)
        self.push(t + self.wrap(), _WRAP_END, agent)

    def _on_wrap_end(self, agent: _Agent, t: float) -> None:
        self.stats.observe_wrap(t - agent.wrap_start)
        self._free(agent, t)

    # -- pacing
    def _snapshot(self, t: float) -> PacingSnapshot:
        wrap_mean = self.sc.wrap.mean
        if self.oracle:
            return self._oracle_snapshot(t)
        return PacingSnapshot(
            now=t,
            agents_logged_in=self.logged_in,
            agents_ready=len(self.ready),
            wrap_remaining_s=tuple(
                [max(0.0, wrap_mean - (t - a.wrap_start)) for a in self.wrapping.values() if not a.leaving]
            ),
            talk_elapsed_s=tuple([t - a.since for a in self.talking.values() if not a.leaving]),
            dialling_elapsed_s=tuple([t - c.placed for c in self.dialling.values()]),
            answered_waiting=len(self.waiting),
            reserved_calls=self.reserved_calls,
            agents_paused=self.leaving,
            settings=self.settings,
        )

    def _oracle_snapshot(self, t: float) -> PacingSnapshot:
        """What a pacer told every agent's talk end in advance sees: each agent on a
        call is free at a known time (talk end + mean wrap-up), like one in wrap-up."""
        wrap_mean = self.sc.wrap.mean
        known = [max(0.0, wrap_mean - (t - a.wrap_start)) for a in self.wrapping.values() if not a.leaving]
        known += [a.talk_end - t + wrap_mean for a in self.talking.values() if not a.leaving]
        return PacingSnapshot(
            now=t,
            agents_logged_in=self.logged_in,
            agents_ready=len(self.ready),
            wrap_remaining_s=tuple(known),
            dialling_elapsed_s=tuple([t - c.placed for c in self.dialling.values()]),
            answered_waiting=len(self.waiting),
            reserved_calls=self.reserved_calls,
            agents_paused=self.leaving,
            settings=self.settings,
        )

    def _decide(self, t: float) -> None:
        self.day.decisions += 1
        decision = self.pacer(self._snapshot(t), self.stats)
        fallback = decision.mode_effective == MODE_FALLBACK
        if fallback and self.fallback_since is None:
            self.fallback_since = t
        elif not fallback and self.fallback_since is not None:
            self.day.fallback_seconds += t - self.fallback_since
            self.fallback_since = None
        for _ in range(decision.dial_now):
            self._place(t, decision.reserve_agents)

    # -- run
    def run(self) -> list[DayResult]:
        sc = self.sc
        results: list[DayResult] = []
        for d in range(sc.days):
            start = d * DAY_S
            end = start + sc.hours * 3600.0
            if d > 0:
                self.stats.new_day()
            self.day = DayResult(day=d + 1)
            self.day_start = start
            self.dialing_open = True
            for hour, n in sc.agent_schedule():
                if hour * 3600.0 < sc.hours * 3600.0:
                    self.push(start + hour * 3600.0, _STAFF, n)
            self.push(end, _DAY_END)
            self.push(start, _TICK)
            self._loop(start)
            self._close_day(end)
            results.append(self.day)
        return results

    def _loop(self, start: float) -> None:
        heap = self.heap
        pop = heapq.heappop
        tick = self.sc.tick_s
        gap = self.sc.decision_gap_s
        self.last_decision = -math.inf
        self.decide_pending = False
        dirty = False
        changed = True
        t = start
        while heap:
            t, kind, _, obj = pop(heap)
            if kind == _ANSWER:
                self._on_answer(obj, t)
            elif kind == _RING_END:
                self._on_ring_end(obj, t)
            elif kind == _ABANDON:
                self._on_abandon(obj, t)
            elif kind == _TALK_END:
                self._on_talk_end(obj, t)
            elif kind == _WRAP_END:
                self._on_wrap_end(obj, t)
            elif kind == _STAFF:
                if self.dialing_open:
                    self._staff(int(obj), t)
            elif kind == _DAY_END:
                # stop dialling; agents stay until the calls in flight are handled
                self.dialing_open = False
            if not self.dialing_open and self.ready and not self._calls_in_flight():
                for agent in list(self.ready.values()):
                    self._logout(agent, t)
            elif kind == _TICK:
                if not self.dialing_open:
                    continue
                self.push(t + tick, _TICK)
                # time passing is a change once the pacer has not run for a tick
                changed = t - self.last_decision >= tick - 1e-9
            elif kind == _DECIDE:
                self.decide_pending = False
            if changed:
                dirty = True
            changed = True
            if dirty and self.dialing_open and (not heap or heap[0][0] > t):
                # once per batch of simultaneous changes, at most every decision_gap_s
                if t - self.last_decision >= gap - 1e-9:
                    self.last_decision = t
                    dirty = False
                    self._decide(t)
                elif not self.decide_pending:
                    self.decide_pending = True
                    self.push(self.last_decision + gap, _DECIDE)
        self.now = t

    def _close_day(self, end: float) -> None:
        t = max(end, self.now)
        for a in self.agents:
            if a.state != _OUT:
                self._logout(a, t)
        if self.fallback_since is not None:
            self.day.fallback_seconds += end - self.fallback_since
            self.fallback_since = None


def simulate(scenario: Scenario, *, stats: PacingStats | None = None, oracle: bool = False) -> SimResult:
    """Run the scenario (all its days) and return per-day and total figures.

    `oracle`: the pacer is told every agent's talk end in advance (agents on a call are
    shown to it as free at a known time); the best a pacer could do, for the benchmark's
    frontier."""
    return SimResult(scenario, _Simulation(scenario, stats, oracle).run())
