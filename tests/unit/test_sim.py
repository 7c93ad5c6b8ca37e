"""Simulator: the same pacing code against modelled agents and customers."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import pytest

from hitcall_pbx.core import pacing
from hitcall_pbx.core.compliance import CampaignMode
from hitcall_pbx.sim import model as sim_model
from hitcall_pbx.sim.command import add_parser, run
from hitcall_pbx.sim.model import simulate
from hitcall_pbx.sim.scenario import Distribution, Scenario, ScenarioError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hitcall")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["simulate", *argv])


def test_progressive_never_abandons_even_with_agents_logging_in_and_out() -> None:
    sc = Scenario(
        mode="progressive",
        contact_rate=0.35,
        hours=1.0,
        days=2,
        seed=3,
        agents_by_hour=((0.0, 8.0), (0.3, 3.0), (0.6, 10.0)),
    )
    out = simulate(sc).to_dict()
    assert out["abandoned"] == 0 and out["abandon_rate"] == 0.0
    assert out["connected"] > 100
    assert out["answer_to_agent_ms_p99"] == pytest.approx(sc.bridge_ms)
    # logged-in time follows the schedule (0.3 h × 8 + 0.3 h × 3 + 0.4 h × 10 per day),
    # plus the calls that agents leaving finish first
    assert 2 * (2.4 + 0.9 + 4.0) <= out["agent_hours"] <= 2 * (2.4 + 0.9 + 4.0) * 1.1


def test_predictive_keeps_every_day_under_the_cap_and_beats_progressive() -> None:
    common: dict[str, Any] = dict(agents=20, contact_rate=0.2, hours=1.5, days=2, seed=11)
    pred = simulate(Scenario(mode="predictive", **common)).to_dict()
    prog = simulate(Scenario(mode="progressive", **common)).to_dict()
    assert len(pred["daily"]) == 2
    assert all(day["abandon_rate"] <= 0.03 for day in pred["daily"])
    assert pred["max_daily_abandon_rate"] <= 0.03 and pred["fallback_minutes"] == 0
    assert pred["abandoned"] > 0  # it does dial ahead of the agents
    assert pred["talk_minutes_per_agent_hour"] >= 1.3 * prog["talk_minutes_per_agent_hour"]
    assert pred["occupancy"] > prog["occupancy"]
    # answered calls reach an agent within the 2-second limit or are abandoned
    assert pred["answer_to_agent_ms_p99"] <= 2000 + Scenario().bridge_ms


@pytest.mark.parametrize("mode", [CampaignMode.PREDICTIVE, CampaignMode.PROGRESSIVE])
def test_simulator_paces_with_the_dialers_policy(mode: CampaignMode, monkeypatch) -> None:
    """Every decision the simulator acts on is the one the dialer's `pace_decision` makes
    for the same snapshot and statistics. With two agents the predictive floor binds:
    the model alone (`decide`) would have left a ready agent without a call."""
    real = sim_model.make_pacer
    seen: list[tuple[pacing.PacingDecision, pacing.PacingDecision, pacing.PacingDecision]] = []

    def recording(name: str) -> Callable[[pacing.PacingSnapshot, pacing.PacingStats], pacing.PacingDecision]:
        pacer = real(name)

        def pace(snapshot: pacing.PacingSnapshot, stats: pacing.PacingStats) -> pacing.PacingDecision:
            shipped = pacing.pace_decision(mode, snapshot, stats)
            model_only = pacing.decide(snapshot, stats)
            decision = pacer(snapshot, stats)
            seen.append((decision, shipped, model_only))
            return decision

        return pace

    monkeypatch.setattr(sim_model, "make_pacer", recording)
    out = simulate(Scenario(mode=mode.value, agents=2, contact_rate=0.3, hours=0.5, seed=4)).to_dict()
    assert out["connected"] > 0 and len(seen) > 100
    assert all(decision == shipped for decision, shipped, _ in seen)
    if mode is CampaignMode.PREDICTIVE:
        assert not any(d.reserve_agents for d, _, _ in seen if d.mode_effective == pacing.MODE_PREDICTIVE)
        assert any(decision.dial_now > model_only.dial_now for decision, _, model_only in seen)
    else:
        assert out["abandoned"] == 0 and all(decision.reserve_agents for decision, _, _ in seen if decision.dial_now)


def test_daily_counters_reset_and_add_up() -> None:
    out = simulate(Scenario(agents=6, contact_rate=0.3, hours=0.25, days=3, seed=2)).to_dict()
    days = out["daily"]
    assert [d["day"] for d in days] == [1, 2, 3]
    assert sum(d["connected"] for d in days) == out["connected"]
    assert sum(d["abandoned"] for d in days) == out["abandoned"]
    assert out["max_daily_abandon_rate"] == pytest.approx(max(d["abandon_rate"] for d in days), abs=1e-4)


def test_simulation_is_deterministic_for_a_seed() -> None:
    sc = Scenario(agents=8, contact_rate=0.25, hours=0.25, seed=7)
    first = simulate(sc).to_dict()
    assert simulate(sc).to_dict() == first
    other = simulate(Scenario(agents=8, contact_rate=0.25, hours=0.25, seed=8)).to_dict()
    assert (other["placed"], other["connected"]) != (first["placed"], first["connected"])


def test_adaptive_baseline_runs_and_reports() -> None:
    out = simulate(Scenario(mode="adaptive-baseline", agents=10, contact_rate=0.3, hours=0.5, seed=5)).to_dict()
    assert out["mode"] == "adaptive-baseline" and out["connected"] > 0
    assert 0.0 < out["occupancy"] < 1.0


def test_scenario_file_with_distributions_and_schedules(tmp_path, capsys) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "mode": "predictive",
                "agents_by_hour": [[0, 6], [0.25, 4]],
                "contact_rate_by_hour": [[0, 0.15], [0.5, 0.3]],
                "talk": {"dist": "exponential", "mean": 90},
                "wrap": {"dist": "uniform", "mean": 8, "sd": 2},
                "ring_to_answer": {"dist": "lognormal", "mean": 7, "sd": 3},
                "busy_rate": 0.1,
                "hours": 0.5,
                "seed": 3,
            }
        )
    )
    assert run(parse(["--scenario", str(path), "--json", "--days", "2"])) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "abandon_rate",
        "max_daily_abandon_rate",
        "occupancy",
        "talk_minutes_per_agent_hour",
        "mean_agent_wait_s",
        "placed",
        "connected",
        "abandoned",
        "answer_to_agent_ms_p99",
    ):
        assert key in out
    assert out["days"] == 2 and out["busy"] > 0 and out["agents"] == 6
    assert out["talk_mean_s"] == 90 and out["wrap_s"] == 8


def test_human_table_output(capsys) -> None:
    assert run(parse(["--agents", "3", "--hours", "0.2", "--mode", "progressive"])) == 0
    out = capsys.readouterr().out
    assert "occupancy" in out and "abandon rate" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--agents", "-1"],
        ["--contact-rate", "1.5"],
        ["--hours", "0"],
        ["--days", "0"],
        ["--talk-mean", "nan"],
    ],
)
def test_command_rejects_bad_options(argv: list[str], capsys) -> None:
    assert run(parse(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("hitcall simulate: error:") and err.count("\n") == 1


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"agents": "many"}),
        json.dumps({"agents": 5, "color": "blue"}),
        json.dumps({"talk": {"dist": "weibull", "mean": 100}}),
        json.dumps({"agents_by_hour": [[2, 5], [1, 3]]}),
        json.dumps({"contact_rate_by_hour": [[0, 1.4]]}),
        json.dumps({"mode": "turbo"}),
    ],
)
def test_command_rejects_malformed_scenario_files(content: str, tmp_path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert run(parse(["--scenario", str(path)])) == 2
    err = capsys.readouterr().err
    assert "scenario file" in err and err.count("\n") == 1


def test_command_reports_a_missing_scenario_file(tmp_path, capsys) -> None:
    assert run(parse(["--scenario", str(tmp_path / "nope.json")])) == 2
    assert "not found" in capsys.readouterr().err


def test_distributions_sample_with_the_requested_mean() -> None:
    import random

    rng = random.Random(1)
    for dist in (
        Distribution("lognormal", 120, 90),
        Distribution("exponential", 60, 60),
        Distribution("uniform", 10, 2),
        Distribution("constant", 5, 0),
    ):
        draw = dist.sampler(rng)
        values = [draw() for _ in range(20000)]
        assert sum(values) / len(values) == pytest.approx(dist.mean, rel=0.05)
        assert min(values) >= 0
    with pytest.raises(ScenarioError):
        Distribution("uniform", 1, 5)


def test_a_busy_morning_does_not_leave_predictive_in_progressive_for_the_day() -> None:
    """35 agents, a high contact rate and short talks: the day starts without an
    abandon budget, earns it with connects, and never spends more than it has."""
    common: dict[str, Any] = dict(agents=35, contact_rate=0.55, talk=Distribution("lognormal", 60.0, 45.0), hours=2.0)
    for seed in (1, 3):
        pred = simulate(Scenario(mode="predictive", seed=seed, **common)).to_dict()
        base = simulate(Scenario(mode="adaptive-baseline", seed=seed, **common)).to_dict()
        assert pred["max_daily_abandon_rate"] <= 0.03
        assert pred["fallback_minutes"] < 0.1 * 120
        assert pred["abandoned"] > 0  # it does dial ahead once it has earned the budget
        assert pred["talk_minutes_per_agent_hour"] >= base["talk_minutes_per_agent_hour"]


def test_a_morning_that_answers_well_then_falls_off_stays_under_the_cap() -> None:
    sc = Scenario(
        mode="predictive",
        agents=35,
        contact_rate_by_hour=((0.0, 0.6), (0.5, 0.35), (1.0, 0.15), (2.0, 0.3)),
        hours=3.0,
        days=2,
        seed=4,
    )
    out = simulate(sc).to_dict()
    assert all(day["abandon_rate"] <= 0.03 for day in out["daily"])
    assert out["fallback_minutes"] < 0.1 * 2 * 180
    prog = simulate(sc.with_overrides(mode="progressive")).to_dict()
    assert out["talk_minutes_per_agent_hour"] >= 1.15 * prog["talk_minutes_per_agent_hour"]


def test_the_oracle_pacer_sees_every_talk_end_in_advance(monkeypatch) -> None:
    """The benchmark's frontier: the same predictive pacer, shown each agent on a call
    as free at its known talk end plus the wrap-up, never as a call of unknown length."""
    real = sim_model.make_pacer
    seen: list[tuple[pacing.PacingSnapshot, list[float]]] = []

    def recording(name: str) -> Callable[[pacing.PacingSnapshot, pacing.PacingStats], pacing.PacingDecision]:
        pacer = real(name)

        def pace(snapshot: pacing.PacingSnapshot, stats: pacing.PacingStats) -> pacing.PacingDecision:
            sim = sim_self[0]
            ends = sorted(a.talk_end - snapshot.now + 10.0 for a in sim.talking.values() if not a.leaving)
            seen.append((snapshot, ends))
            return pacer(snapshot, stats)

        return pace

    sim_self: list[Any] = []
    original_init = sim_model._Simulation.__init__

    def init(self: Any, *args: Any) -> None:
        original_init(self, *args)
        sim_self.append(self)

    monkeypatch.setattr(sim_model, "make_pacer", recording)
    monkeypatch.setattr(sim_model._Simulation, "__init__", init)
    sc = Scenario(mode="predictive", agents=6, contact_rate=0.3, hours=0.5, seed=5)
    out = simulate(sc, oracle=True).to_dict()
    assert out["connected"] > 20 and out["max_daily_abandon_rate"] <= 0.03
    talking = [(snap, ends) for snap, ends in seen if ends]
    assert talking
    for snap, ends in talking:
        assert snap.talk_elapsed_s == ()
        assert all(any(abs(w - e) < 1e-9 for w in snap.wrap_remaining_s) for e in ends)
