"""`hitcall simulate`: run the pacing code against the discrete-event model.

The main CLI registers the sub-command with `add_parser(subparsers)` and calls
`run(args)`; `python -m hitcall_pbx.sim` does the same on its own.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from hitcall_pbx.core.pacing import PACING_MODES
from hitcall_pbx.sim.model import simulate
from hitcall_pbx.sim.scenario import Scenario, ScenarioError

__all__ = ["add_parser", "build_scenario", "run"]

_HELP = "simulate agents and customers against the pacing controller, much faster than real time"


def add_parser(subparsers: Any) -> None:
    """Register the `simulate` sub-command on an argparse subparsers object."""
    p = subparsers.add_parser("simulate", help=_HELP, description=_HELP)
    p.add_argument("--mode", choices=PACING_MODES, default=None, help="pacing mode (default predictive)")
    p.add_argument("--agents", type=int, default=None, help="agents logged in all day (default 20)")
    p.add_argument("--contact-rate", type=float, default=None, help="share of calls answered by a person (default 0.2)")
    p.add_argument(
        "--talk-mean", type=float, default=None, help="mean talk seconds (default 120, log-normal sd 0.75 × mean)"
    )
    p.add_argument("--wrap", type=float, default=None, help="wrap-up seconds after each call (default 10)")
    p.add_argument("--hours", type=float, default=None, help="dialling hours per simulated day (default 8)")
    p.add_argument("--days", type=int, default=None, help="simulated calendar days (default 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 1)")
    p.add_argument(
        "--scenario",
        metavar="FILE.json",
        default=None,
        help="scenario file: the same fields plus distributions and schedules; options override it",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def build_scenario(args: argparse.Namespace) -> Scenario:
    """The scenario from --scenario (if any) with the command-line options on top."""
    for name in ("contact_rate", "talk_mean", "wrap", "hours"):
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise ScenarioError(f"--{name.replace('_', '-')}: expected a finite number")
    base = Scenario()
    path = getattr(args, "scenario", None)
    if path:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScenarioError(f"scenario file {path}: not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"scenario file {path}: cannot read ({exc})") from None
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"scenario file {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        try:
            base = Scenario.from_dict(raw)
        except ScenarioError as exc:
            raise ScenarioError(f"scenario file {path}: {exc}") from None
    return base.with_overrides(
        mode=getattr(args, "mode", None),
        agents=getattr(args, "agents", None),
        contact_rate=getattr(args, "contact_rate", None),
        talk_mean=getattr(args, "talk_mean", None),
        wrap=getattr(args, "wrap", None),
        hours=getattr(args, "hours", None),
        days=getattr(args, "days", None),
        seed=getattr(args, "seed", None),
    )


def _table(result: dict[str, Any], out: TextIO) -> None:
    rows = [
        ("mode", result["mode"]),
        ("agents / contact rate", f"{result['agents']} / {result['contact_rate']:g}"),
        ("days × hours", f"{result['days']} × {result['hours']:g}"),
        ("placed / connected / abandoned", f"{result['placed']} / {result['connected']} / {result['abandoned']}"),
        ("abandon rate (max day)", f"{result['abandon_rate']:.2%} ({result['max_daily_abandon_rate']:.2%})"),
        ("occupancy", f"{result['occupancy']:.1%}"),
        ("talk min per agent hour", f"{result['talk_minutes_per_agent_hour']:.1f}"),
        ("mean agent wait", f"{result['mean_agent_wait_s']:.1f} s"),
        ("answer to agent p99", f"{result['answer_to_agent_ms_p99']:.0f} ms"),
        ("progressive fallback", f"{result['fallback_minutes']:.0f} min"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key.ljust(width)}  {value}\n")


def run(args: argparse.Namespace) -> int:
    """Run the simulation; 0 on success, 2 on bad input (one line on stderr)."""
    try:
        scenario = build_scenario(args)
    except (ScenarioError, ValueError) as exc:
        sys.stderr.write(f"hitcall simulate: error: {exc}\n")
        return 2
    result = simulate(scenario).to_dict()
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        _table(result, sys.stdout)
    return 0
