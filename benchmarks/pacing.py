"""Pacing benchmark: the shipped predictive pacer on days that change, against the
classic adaptive dial level, progressive, and an oracle told every talk end in advance.

Predictive and progressive are the policies the dialer ships: the simulator paces with
`core.pacing.pace_decision` for that campaign mode (predictive = the model's `decide`
floored at progressive, `decide_predictive`); the JSON's config names the function
each mode ran. The oracle is the same predictive pacer shown every agent on a call as
free at its known talk end (+ wrap-up): the distance to it is what better talk-time
prediction could still buy.

Day types (each a multi-day run per seed; talk log-normal 120/90 s, wrap-up 10 s,
ring-to-answer log-normal 8/4 s, ring timeout 25 s, cap 3 %, and --busy (default 15 %) of
the calls placed meeting a busy line after a log-normal 1.0/0.5 s, unless the type changes it):

* flat          contact rate --contact (default 0.2) all day
* by-hour       contact 0.45 in the morning, 0.12 at midday, rising to 0.40 in the evening
* shifts        agents log in and out in blocks: all, half, all, 60 %, all
* heavy-tail    talk log-normal mean 120 s, sd 300 s
* quick-answer  ring-to-answer log-normal 3/1.5 s
* slow-answer   ring-to-answer log-normal 18/4 s

Per cell (day type × team size) the figures are means over seeds, measured in the same
run for every mode: predictive's highest daily abandon rate, its share of the day in
progressive fallback, talk minutes per agent-hour for every mode, occupancy of
predictive, oracle and progressive. Targets checked per cell: never over the cap on
any day; fallback under 10 % of the day; talk >= the adaptive baseline's; talk >= 1.15
x progressive's where progressive's occupancy is under 0.75; predictive's occupancy
within 0.01 of the oracle's at 20 agents and more.

    .venv/bin/python benchmarks/pacing.py [--agents 2,5,20,50] [--types flat,by-hour,...]
        [--seeds 2] [--days 2] [--hours 8] [--jobs 2] [--markdown]

Prints one JSON object (or, with --markdown, the table for docs/pacing-benchmark.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from hitcall_pbx.core.pacing import make_pacer
from hitcall_pbx.sim.model import simulate
from hitcall_pbx.sim.scenario import Distribution, Scenario

CAP = 0.03
DAY_TYPES = ("flat", "by-hour", "shifts", "heavy-tail", "quick-answer", "slow-answer")
VARIANTS = ("predictive", "oracle", "adaptive-baseline", "progressive")


def scenario_for(job: dict[str, Any]) -> Scenario:
    """The scenario of one run: the day type's changes on top of the common settings."""
    hours = float(job["hours"])
    agents = int(job["agents"])
    kind = job["type"]
    kw: dict[str, Any] = dict(
        mode="predictive" if job["variant"] == "oracle" else job["variant"],
        agents=agents,
        contact_rate=job["contact"],
        hours=hours,
        days=job["days"],
        seed=job["seed"],
        abandon_cap=CAP,
        busy_rate=job["busy"],
        busy_time=Distribution("lognormal", 1.0, 0.5),
    )
    if kind == "by-hour":
        kw["contact_rate_by_hour"] = tuple(
            (round(f * hours, 4), rate)
            for f, rate in ((0.0, 0.45), (0.2, 0.35), (0.4, 0.12), (0.6, 0.12), (0.85, 0.35), (1.0, 0.40))
        )
    elif kind == "shifts":
        half, most = max(1, agents // 2), max(1, round(agents * 0.6))
        kw["agents_by_hour"] = tuple(
            (round(f * hours, 4), float(n))
            for f, n in ((0.0, agents), (0.25, half), (0.4, agents), (0.6, most), (0.8, agents))
        )
    elif kind == "heavy-tail":
        kw["talk"] = Distribution("lognormal", 120.0, 300.0)
    elif kind == "quick-answer":
        kw["ring_to_answer"] = Distribution("lognormal", 3.0, 1.5)
    elif kind == "slow-answer":
        kw["ring_to_answer"] = Distribution("lognormal", 18.0, 4.0)
    elif kind != "flat":
        raise ValueError(f"unknown day type {kind!r}")
    return Scenario(**kw)


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    started = time.process_time()
    out = simulate(scenario_for(job), oracle=job["variant"] == "oracle").to_dict()
    out["cpu_s"] = round(time.process_time() - started, 2)
    out.update(variant=job["variant"], type=job["type"], team=job["agents"])
    return out


def policy_of(mode: str) -> str:
    """The function a simulated mode paces with, by its import path."""
    pacer = make_pacer(mode)
    func = getattr(pacer, "func", pacer)
    args = "".join(f"{arg}, " for arg in getattr(pacer, "args", ()))
    return f"{func.__module__}.{func.__qualname__}({args}snapshot, stats)"


def mean(runs: list[dict[str, Any]], field: str) -> float:
    return statistics.fmean(r[field] for r in runs)


def cell_figures(runs: dict[str, list[dict[str, Any]]], day_minutes: float) -> dict[str, Any]:
    pred = runs["predictive"]
    talk = {v: round(mean(runs[v], "talk_minutes_per_agent_hour"), 2) for v in VARIANTS}
    occ = {v: round(mean(runs[v], "occupancy"), 4) for v in VARIANTS}
    max_day = max(r["max_daily_abandon_rate"] for r in pred)
    fallback_share = max(r["fallback_minutes"] / (len(r["daily"]) * day_minutes) for r in pred)
    return {
        "talk_minutes_per_agent_hour": talk,
        "occupancy": occ,
        "abandon_rate": {v: round(mean(runs[v], "abandon_rate"), 5) for v in VARIANTS},
        "max_day_abandon_rate": {v: max(r["max_daily_abandon_rate"] for r in runs[v]) for v in VARIANTS},
        "predictive_max_day_abandon_rate": max_day,
        "predictive_days_over_cap": sum(r["days_over_cap"] for r in pred),
        "predictive_fallback_share_max": round(fallback_share, 4),
        "talk_vs_baseline": round(talk["predictive"] / max(talk["adaptive-baseline"], 1e-9), 3),
        "talk_vs_progressive": round(talk["predictive"] / max(talk["progressive"], 1e-9), 3),
        "oracle_occupancy_gap": round(occ["oracle"] - occ["predictive"], 4),
        "cpu_s": round(sum(r["cpu_s"] for v in VARIANTS for r in runs[v]), 1),
        "runs": len(pred),
    }


def checks_for(team: int, fig: dict[str, Any]) -> dict[str, Any]:
    prog_occ = fig["occupancy"]["progressive"]
    return {
        "never_over_cap": fig["predictive_days_over_cap"] == 0,
        "fallback_under_10pct": fig["predictive_fallback_share_max"] < 0.10,
        "talk_ge_baseline": fig["talk_vs_baseline"] >= 1.0,
        "talk_ge_1_15x_progressive": (fig["talk_vs_progressive"] >= 1.15) if prog_occ < 0.75 else None,
        "within_0_01_of_oracle": (fig["oracle_occupancy_gap"] <= 0.01) if team >= 20 else None,
    }


def markdown(cells: list[dict[str, Any]]) -> str:
    def mark(value: bool | None) -> str:
        return "–" if value is None else ("yes" if value else "**no**")

    lines = [
        "| day type | agents | max day abandon | fallback | talk min/agent-h pred / base / prog "
        "| vs base | vs prog (prog occ) | occupancy pred / oracle | targets: cap, fallback, base, 1.15×, oracle |",
        "|---|---:|---:|---:|---|---:|---|---|---|",
    ]
    for c in cells:
        f, k = c["figures"], c["checks"]
        t, o = f["talk_minutes_per_agent_hour"], f["occupancy"]
        lines.append(
            f"| {c['type']} | {c['agents']} | {f['predictive_max_day_abandon_rate']:.2%} "
            f"| {f['predictive_fallback_share_max']:.1%} "
            f"| {t['predictive']:.1f} / {t['adaptive-baseline']:.1f} / {t['progressive']:.1f} "
            f"| {f['talk_vs_baseline']:.2f} | {f['talk_vs_progressive']:.2f} ({o['progressive']:.2f}) "
            f"| {o['predictive']:.3f} / {o['oracle']:.3f} "
            f"| {mark(k['never_over_cap'])}, {mark(k['fallback_under_10pct'])}, {mark(k['talk_ge_baseline'])}, "
            f"{mark(k['talk_ge_1_15x_progressive'])}, {mark(k['within_0_01_of_oracle'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", default="2,5,20,50")
    ap.add_argument("--types", default=",".join(DAY_TYPES))
    ap.add_argument("--contact", type=float, default=0.2, help="contact rate of the day types that keep it fixed")
    ap.add_argument("--busy", type=float, default=0.15, help="share of calls placed that meet a busy line")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--days", type=int, default=2, help="simulated days per seed (the stats carry over)")
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--markdown", action="store_true", help="print the table for the docs instead of JSON")
    args = ap.parse_args(argv)
    teams = [int(x) for x in args.agents.split(",")]
    types = [x.strip() for x in args.types.split(",")]
    for kind in types:
        if kind not in DAY_TYPES:
            ap.error(f"--types: unknown day type {kind!r}; expected some of {', '.join(DAY_TYPES)}")
    started = time.time()
    jobs = [
        dict(
            variant=v,
            type=kind,
            agents=a,
            contact=args.contact,
            busy=args.busy,
            hours=args.hours,
            days=args.days,
            seed=1000 * a + s,
        )
        for a in sorted(teams, reverse=True)  # largest first so the pool stays busy
        for kind in types
        for v in VARIANTS
        for s in range(1, args.seeds + 1)
    ]
    results: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(run_one, jobs):
            results.setdefault((r["type"], r["team"], r["variant"]), []).append(r)
    cells = []
    for kind in types:
        for a in teams:
            fig = cell_figures({v: results[(kind, a, v)] for v in VARIANTS}, args.hours * 60.0)
            cells.append({"type": kind, "agents": a, "figures": fig, "checks": checks_for(a, fig)})
    if args.markdown:
        sys.stdout.write(markdown(cells))
        return 0
    summary: dict[str, Any] = {}
    for name in (
        "never_over_cap",
        "fallback_under_10pct",
        "talk_ge_baseline",
        "talk_ge_1_15x_progressive",
        "within_0_01_of_oracle",
    ):
        applies = [c for c in cells if c["checks"][name] is not None]
        summary[name] = {
            "met": sum(1 for c in applies if c["checks"][name]),
            "cells": len(applies),
            "missed": [f"{c['type']}@{c['agents']}" for c in applies if not c["checks"][name]],
        }
    summary["predictive_max_day_abandon_rate"] = max(c["figures"]["predictive_max_day_abandon_rate"] for c in cells)
    summary["simulated_days"] = sum(len(r["daily"]) for rs in results.values() for r in rs)
    summary["wall_s"] = round(time.time() - started, 1)
    json.dump(
        {
            "config": {
                "agents": teams,
                "types": types,
                "contact": args.contact,
                "busy": args.busy,
                "seeds": args.seeds,
                "days_per_seed": args.days,
                "hours": args.hours,
                "cap": CAP,
                "policies": {mode: policy_of(mode) for mode in ("predictive", "progressive", "adaptive-baseline")},
                "oracle": "predictive, shown every talk end in advance (hitcall_pbx.sim.model.simulate(oracle=True))",
            },
            "cells": cells,
            "summary": summary,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
