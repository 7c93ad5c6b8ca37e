"""Simulation scenario: agents, customers and campaign settings, from CLI options or JSON.

JSON fields (all optional):

    {
      "mode": "predictive" | "progressive" | "adaptive-baseline",
      "agents": 20,                       # logged in all day, unless agents_by_hour
      "agents_by_hour": [[0, 20], [4, 12], [5, 20]],   # from hour h of the day, n agents
      "contact_rate": 0.2,                # share of calls answered by a person
      "contact_rate_by_hour": [[0, 0.15], [4, 0.3], [8, 0.2]],  # piecewise linear
      "talk_mean": 120,                   # shorthand for talk {"dist": "lognormal", sd 0.75 × mean}
      "talk": {"dist": "lognormal" | "exponential" | "constant" | "uniform", "mean": 120, "sd": 90},
      "wrap": 10 | {"dist": ..., "mean": 10, "sd": 3},
      "ring_to_answer": {"dist": "lognormal", "mean": 8, "sd": 4},   # answered calls
      "ring_timeout": 25,
      "busy_rate": 0.0, "busy_time": {"dist": "constant", "mean": 4},
      "hours": 8, "days": 1, "seed": 1,
      "abandon_cap": 0.03, "abandon_target": 0.027,   # target: default 0.9 × cap
      "max_lines_per_agent": 5, "connect_limit_s": 2.0,
      "bridge_ms": 10, "tick_s": 1.0, "decision_gap_s": 1.0
    }

The pacer is asked after every batch of state changes, at most every decision_gap_s,
and at least every tick_s.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hitcall_pbx.core.pacing import PACING_MODES

__all__ = ["Distribution", "Scenario", "ScenarioError"]

_DIST_KINDS = ("constant", "exponential", "lognormal", "uniform")


class ScenarioError(ValueError):
    """A scenario that cannot be simulated; the message names the field."""


def _number(
    name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None, strict_min: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f"{name}: expected a finite number, got {value!r}")
    if minimum is not None and (value < minimum or (strict_min and value == minimum)):
        raise ScenarioError(f"{name}: must be {'>' if strict_min else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ScenarioError(f"{name}: must be <= {maximum:g}, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or (
        not isinstance(value, int) and not (isinstance(value, float) and value.is_integer())
    ):
        raise ScenarioError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ScenarioError(f"{name}: must be >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Distribution:
    """A positive duration: constant, exponential, log-normal or uniform, by mean and sd."""

    dist: str = "constant"
    mean: float = 1.0
    sd: float = 0.0

    def __post_init__(self) -> None:
        if self.dist not in _DIST_KINDS:
            raise ScenarioError(f"dist: expected one of {', '.join(_DIST_KINDS)}, got {self.dist!r}")
        _number("mean", self.mean, minimum=0.0)
        _number("sd", self.sd, minimum=0.0)
        if self.dist in ("lognormal", "exponential") and self.mean <= 0:
            raise ScenarioError(f"{self.dist} distribution needs mean > 0")
        if self.dist == "uniform" and self.sd * math.sqrt(3.0) > self.mean:
            raise ScenarioError("uniform distribution: sd too large for a positive duration")

    @classmethod
    def parse(cls, name: str, raw: Any, *, default_sd_ratio: float = 0.0) -> Distribution:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return cls("constant", _number(name, raw, minimum=0.0), 0.0)
        if not isinstance(raw, dict):
            raise ScenarioError(f"{name}: expected a number or an object with dist/mean/sd")
        unknown = set(raw) - {"dist", "mean", "sd"}
        if unknown:
            raise ScenarioError(f"{name}: unknown keys {sorted(unknown)}")
        dist = raw.get("dist", "lognormal")
        if not isinstance(dist, str):
            raise ScenarioError(f"{name}.dist: expected a string")
        if "mean" not in raw:
            raise ScenarioError(f"{name}.mean: required")
        mean = _number(f"{name}.mean", raw["mean"], minimum=0.0)
        sd_default = mean if dist == "exponential" else mean * default_sd_ratio
        sd = _number(f"{name}.sd", raw.get("sd", sd_default), minimum=0.0)
        try:
            return cls(dist, mean, sd)
        except ScenarioError as exc:
            raise ScenarioError(f"{name}: {exc}") from None

    def sampler(self, rng: random.Random):
        mean, sd = self.mean, self.sd
        if self.dist == "constant" or (sd == 0.0 and self.dist != "exponential"):
            return lambda: mean
        if self.dist == "exponential":
            rate = 1.0 / mean
            return lambda: rng.expovariate(rate)
        if self.dist == "uniform":
            half = sd * math.sqrt(3.0)
            lo, hi = mean - half, mean + half
            return lambda: rng.uniform(lo, hi)
        s2 = math.log1p((sd / mean) ** 2)
        mu, sigma = math.log(mean) - s2 / 2.0, math.sqrt(s2)
        return lambda: rng.lognormvariate(mu, sigma)

    def to_dict(self) -> dict[str, Any]:
        return {"dist": self.dist, "mean": self.mean, "sd": self.sd}


def _schedule(name: str, raw: Any, *, kind: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{name}: expected a non-empty list of [hour, value] pairs")
    out: list[tuple[float, float]] = []
    for i, item in enumerate(raw):
        if isinstance(item, dict):
            item = [item.get("hour"), item.get("value", item.get(kind))]
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ScenarioError(f"{name}[{i}]: expected [hour, value]")
        hour = _number(f"{name}[{i}] hour", item[0], minimum=0.0, maximum=24.0)
        if kind == "agents":
            value = float(_integer(f"{name}[{i}] agents", item[1]))
        else:
            value = _number(f"{name}[{i}] rate", item[1], minimum=0.0, maximum=1.0)
        if out and hour <= out[-1][0]:
            raise ScenarioError(f"{name}: hours must increase")
        out.append((hour, value))
    return tuple(out)


@dataclass(frozen=True)
class Scenario:
    mode: str = "predictive"
    agents: int = 20
    agents_by_hour: tuple[tuple[float, float], ...] | None = None
    contact_rate: float = 0.2
    contact_rate_by_hour: tuple[tuple[float, float], ...] | None = None
    talk: Distribution = field(default_factory=lambda: Distribution("lognormal", 120.0, 90.0))
    wrap: Distribution = field(default_factory=lambda: Distribution("constant", 10.0, 0.0))
    ring_to_answer: Distribution = field(default_factory=lambda: Distribution("lognormal", 8.0, 4.0))
    ring_timeout: float = 25.0
    busy_rate: float = 0.0
    busy_time: Distribution = field(default_factory=lambda: Distribution("constant", 4.0, 0.0))
    hours: float = 8.0
    days: int = 1
    seed: int = 1
    abandon_cap: float = 0.03
    abandon_target: float | None = None
    max_lines_per_agent: float = 5.0
    connect_limit_s: float = 2.0
    bridge_ms: float = 10.0
    tick_s: float = 1.0
    decision_gap_s: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in PACING_MODES:
            raise ScenarioError(f"mode: expected one of {', '.join(PACING_MODES)}, got {self.mode!r}")
        _integer("agents", self.agents)
        _number("contact_rate", self.contact_rate, minimum=0.0, maximum=1.0)
        _number("ring_timeout", self.ring_timeout, minimum=1.0)
        _number("busy_rate", self.busy_rate, minimum=0.0, maximum=1.0)
        if self.contact_rate_by_hour is None and self.contact_rate + self.busy_rate > 1.0:
            raise ScenarioError("contact_rate + busy_rate must be <= 1")
        _number("hours", self.hours, minimum=0.0, maximum=24.0, strict_min=True)
        _integer("days", self.days, minimum=1)
        if self.days > 400:
            raise ScenarioError("days: at most 400")
        _integer("seed", self.seed)
        _number("abandon_cap", self.abandon_cap, minimum=0.0, maximum=1.0, strict_min=True)
        if self.abandon_target is not None:
            _number("abandon_target", self.abandon_target, minimum=0.0, maximum=self.abandon_cap, strict_min=True)
        _number("max_lines_per_agent", self.max_lines_per_agent, minimum=1.0)
        _number("connect_limit_s", self.connect_limit_s, minimum=0.0)
        _number("bridge_ms", self.bridge_ms, minimum=0.0)
        _number("tick_s", self.tick_s, minimum=0.0, strict_min=True)
        _number("decision_gap_s", self.decision_gap_s, minimum=0.0)
        if self.ring_to_answer.mean <= 0:
            raise ScenarioError("ring_to_answer.mean: must be > 0")

    # -- construction
    @classmethod
    def from_dict(cls, raw: Any) -> Scenario:
        if not isinstance(raw, dict):
            raise ScenarioError("scenario: expected a JSON object")
        known = {f.name for f in fields(cls)} | {"talk_mean"}
        unknown = set(raw) - known
        if unknown:
            raise ScenarioError(f"scenario: unknown fields {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for key in ("mode",):
            if key in raw:
                if not isinstance(raw[key], str):
                    raise ScenarioError(f"{key}: expected a string")
                kw[key] = raw[key]
        for key in ("agents", "days", "seed"):
            if key in raw:
                kw[key] = _integer(key, raw[key])
        for key in (
            "contact_rate",
            "ring_timeout",
            "busy_rate",
            "hours",
            "abandon_cap",
            "abandon_target",
            "max_lines_per_agent",
            "connect_limit_s",
            "bridge_ms",
            "tick_s",
            "decision_gap_s",
        ):
            if key in raw:
                kw[key] = _number(key, raw[key])
        if "talk" in raw:
            kw["talk"] = Distribution.parse("talk", raw["talk"], default_sd_ratio=0.75)
        elif "talk_mean" in raw:
            mean = _number("talk_mean", raw["talk_mean"], minimum=0.0, strict_min=True)
            kw["talk"] = Distribution("lognormal", mean, 0.75 * mean)
        if "wrap" in raw:
            kw["wrap"] = Distribution.parse("wrap", raw["wrap"])
        if "ring_to_answer" in raw:
            kw["ring_to_answer"] = Distribution.parse("ring_to_answer", raw["ring_to_answer"], default_sd_ratio=0.5)
        if "busy_time" in raw:
            kw["busy_time"] = Distribution.parse("busy_time", raw["busy_time"])
        if raw.get("agents_by_hour") is not None:
            kw["agents_by_hour"] = _schedule("agents_by_hour", raw["agents_by_hour"], kind="agents")
        if raw.get("contact_rate_by_hour") is not None:
            kw["contact_rate_by_hour"] = _schedule("contact_rate_by_hour", raw["contact_rate_by_hour"], kind="rate")
        return cls(**kw)

    def with_overrides(self, **overrides: Any) -> Scenario:
        """A copy with the given (non-None) fields replaced; `talk_mean` keeps the talk
        distribution's kind and sd / mean ratio, `wrap` may be a number."""
        kw = {k: v for k, v in overrides.items() if v is not None}
        if "talk_mean" in kw:
            mean = _number("talk-mean", kw.pop("talk_mean"), minimum=0.0, strict_min=True)
            ratio = self.talk.sd / self.talk.mean if self.talk.mean > 0 else 0.75
            kw["talk"] = Distribution(self.talk.dist, mean, ratio * mean)
        if "wrap" in kw and not isinstance(kw["wrap"], Distribution):
            value = _number("wrap", kw["wrap"], minimum=0.0)
            ratio = self.wrap.sd / self.wrap.mean if self.wrap.mean > 0 else 0.0
            kw["wrap"] = Distribution(self.wrap.dist if value > 0 else "constant", value, ratio * value)
        for key in ("agents", "days", "seed"):
            if key in kw:
                kw[key] = _integer(key.replace("_", "-"), kw[key], minimum=-(2**63))
        return replace(self, **kw)

    # -- time-varying inputs
    def contact_rate_at(self, hour: float) -> float:
        curve = self.contact_rate_by_hour
        if not curve:
            return self.contact_rate
        if hour <= curve[0][0]:
            return curve[0][1]
        for (h0, v0), (h1, v1) in itertools.pairwise(curve):
            if hour <= h1:
                return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
        return curve[-1][1]

    def agent_schedule(self) -> tuple[tuple[float, int], ...]:
        """(hour, agents) steps within a day; the day starts with the first step."""
        if not self.agents_by_hour:
            return ((0.0, self.agents),)
        steps = [(h, int(n)) for h, n in self.agents_by_hour]
        if steps[0][0] > 0.0:
            steps.insert(0, (0.0, 0))
        return tuple(steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "agents": self.agents,
            "agents_by_hour": [list(x) for x in self.agents_by_hour] if self.agents_by_hour else None,
            "contact_rate": self.contact_rate,
            "contact_rate_by_hour": [list(x) for x in self.contact_rate_by_hour] if self.contact_rate_by_hour else None,
            "talk": self.talk.to_dict(),
            "wrap": self.wrap.to_dict(),
            "ring_to_answer": self.ring_to_answer.to_dict(),
            "ring_timeout": self.ring_timeout,
            "busy_rate": self.busy_rate,
            "hours": self.hours,
            "days": self.days,
            "seed": self.seed,
            "abandon_cap": self.abandon_cap,
            "abandon_target": self.abandon_target,
            "max_lines_per_agent": self.max_lines_per_agent,
        }
