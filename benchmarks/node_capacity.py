"""Node capacity: how many agents and call attempts per second one HitCall node sustains.

One `hitcall serve` process (exactly what operators run: its own event loop, INFO logs to a
file, embedded PostgreSQL) is driven by the ARI load generator (benchmarks/ari_loadgen.py),
a stand-in for Asterisk on loopback that answers originates and emits the events Asterisk
emits. For each step of the ladder (`--agents 250,500,1000,...`) the step's agents log in
(StasisStart agent-login, as if each dialled *70), one predictive campaign runs for
`--seconds`, and the benchmark samples the service's /metrics (event-loop lag), its CPU time
(/proc) and the call attempts it wrote. A step is sustained when the loop lag p99 over the
campaign period stays under 50 ms, every attempt has a complete CDR, and no ERROR is logged.

`--validate` first runs the same small load (`--validate-agents`, default 20) against the
real sandboxed Asterisk (SIPp agent phones, sim customers with the same answer share and
talk times) and against the load generator, and prints the node's CPU per attempt on both:
the stand-in is a fair stand-in when the two are close.

    python benchmarks/node_capacity.py --agents 250,500,1000,1500 --seconds 60
    python benchmarks/node_capacity.py --validate --agents 1000 --seconds 60

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ari_loadgen import AriLoadGen, Behaviour, serve
from benchmarks.load import (
    _cpu_s,
    _hist_quantile,
    _log_errors,
    _profile_summary,
    _rss_mb,
    _scrape,
    _wait,
    attempt_counts,
    start_profile,
    start_service,
    stop_service,
    wait_ready,
)
from hitcall_pbx.demo.seed import ALL_DAY, create_campaign
from hitcall_pbx.logs import configure_logging
from hitcall_pbx.store import migrations
from hitcall_pbx.store.embedded import EmbeddedPostgres

LAG_TARGET_S = 0.05
TALK_S = (5.0, 20.0)
ANSWER_SHARE = 0.4


async def _seed(
    pool: asyncpg.Pool, agents: int, contacts: int, wrap_s: int, lines: float
) -> tuple[int, int, list[str]]:
    start = 1 + uuid.uuid4().int % 800_000
    numbers = [f"+3584{(start + i) % 100_000_000:08d}" for i in range(contacts)]
    cid, list_id = await create_campaign(
        pool,
        f"capacity-{uuid.uuid4().hex[:6]}",
        mode="predictive",
        numbers=numbers,
        wrap_up_s=wrap_s,
        ring_timeout_s=15,
        max_attempts=1,
        max_lines_per_agent=lines,
        **ALL_DAY,
    )
    suffix = uuid.uuid4().hex[:4]
    base = (1000 + uuid.uuid4().int % 9000) * 100_000
    rows = [(str(base + i), f"Agent {i}", f"cap{suffix}-{i}") for i in range(agents)]
    async with pool.acquire() as conn:
        ids = await conn.fetch(
            "INSERT INTO agents (number, name, endpoint) SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) "
            "RETURNING id",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
        )
        await conn.executemany(
            "INSERT INTO agent_campaigns (agent_id, campaign_id) VALUES ($1, $2)", [(r["id"], cid) for r in ids]
        )
    return cid, list_id, [r[2] for r in rows]


async def step(args: argparse.Namespace, tmp: Path, dsn: str, agents: int) -> dict[str, Any]:
    """One rung of the ladder: a fresh load generator and service, `agents` agents, one campaign."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    rate_guess = agents / (sum(TALK_S) / 2 + 2.5 + args.wrap_s) / ANSWER_SHARE
    contacts = int(rate_guess * args.seconds * 1.5) + 1000
    cid, _list_id, endpoints = await _seed(pool, agents, contacts, args.wrap_s, args.lines_per_agent)
    gen = AriLoadGen(Behaviour(answer_share=ANSWER_SHARE, talk_s=TALK_S, seed=agents))
    runner, ari_port = await serve(gen)
    workdir = tmp / f"step-{agents}"
    workdir.mkdir()
    svc, http_port, log_path = start_service(
        workdir,
        dsn,
        f"http://127.0.0.1:{ari_port}/ari",
        HITCALL_ARI_USER="loadgen",
        HITCALL_ARI_PASSWORD="loadgen",
    )
    samples: list[dict[str, Any]] = []
    spy: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await wait_ready(http, svc, http_port, log_path, also=lambda: bool(gen.sockets))
            t_login = time.monotonic()
            gen.login(endpoints)

            async def logged_in() -> bool:
                return (await _scrape(http, http_port)).agents >= agents

            await _wait(logged_in, 120, f"{agents} agents to log in", step=0.2)
            login_s = time.monotonic() - t_login
            base = await _scrape(http, http_port)
            originates0 = gen.originates
            await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", cid)
            t0, cpu0 = time.monotonic(), _cpu_s(svc.pid)
            profile_at = args.seconds / 2 if args.profile_s else None
            while (elapsed := time.monotonic() - t0) < args.seconds:
                if svc.poll() is not None:
                    raise RuntimeError(f"service exited with {svc.returncode} mid-run; see {log_path}")
                if profile_at is not None and elapsed >= profile_at:
                    profile_at = None
                    spy = start_profile(svc.pid, 100, args.profile_s, workdir / "profile.txt")
                scrape = await _scrape(http, http_port)
                samples.append(
                    {
                        "t": elapsed,
                        "lag_recent_p99_s": scrape.lag_recent_p99_s,
                        "lag_recent_max_s": scrape.lag_recent_max_s,
                        **gen.snapshot(),
                    }
                )
                await asyncio.sleep(max(0.0, args.sample_s - (time.monotonic() - t0 - elapsed)))
            end = await _scrape(http, http_port)
            wall = time.monotonic() - t0
            cpu = _cpu_s(svc.pid) - cpu0
            originated = gen.originates - originates0
            rss = _rss_mb(svc.pid)
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)

            async def drained() -> bool:
                return gen.snapshot()["customer_calls"] == 0

            await _wait(drained, 90, "calls to end after the pause")
    finally:
        if spy is not None:
            spy.wait(timeout=args.profile_s + 30)
        stop_service(svc)
        await runner.cleanup()
    counts = await attempt_counts(pool, cid)
    await pool.close()
    buckets = [(b, c - c0) for (b, c), (_, c0) in zip(end.lag_buckets, base.lag_buckets)]
    within = dict(buckets)[LAG_TARGET_S] / max(1.0, buckets[-1][1])
    errors = _log_errors(log_path)
    attempts = int(counts["attempts"])
    out = {
        "agents": agents,
        "login_s": round(login_s, 2),
        "seconds": round(wall, 1),
        "attempts": attempts,
        "attempts_per_s": round(originated / wall, 1),
        "connected": counts["connected"],
        "connects_per_s": round(int(counts["connected"]) / wall, 2),
        "abandoned": counts["abandoned"],
        "cdr_missing": attempts - int(counts["with_cdr"]),
        "originates_seen_by_loadgen": originated,
        "customer_calls_in_flight_max": max((s["customer_calls"] for s in samples), default=0),
        "service_cpu_cores": round(cpu / wall, 3),
        "cpu_ms_per_attempt": round(1000 * cpu / max(1, originated), 3),
        "rss_mb": round(rss, 1),
        "loop_lag_ms": {
            "p50": round(1000 * _hist_quantile(buckets, 0.5), 2),
            "p99": round(1000 * _hist_quantile(buckets, 0.99), 2),
            "worst_window_p99": round(1000 * max((s["lag_recent_p99_s"] for s in samples), default=0), 1),
            "share_within_50ms": round(within, 5),
        },
        "errors": errors,
        "loadgen_unknown_requests": dict(gen.unknown),
    }
    if spy is not None:
        out["profile"] = _profile_summary(workdir / "profile.txt", args.profile_s, 100)
    out["sustained"] = bool(
        within >= 0.99 and out["cdr_missing"] == 0 and not errors and svc.returncode in (0, -signal.SIGTERM)
    )
    return out


async def validate_real(args: argparse.Namespace) -> dict[str, Any]:
    """The same small load on the real sandboxed Asterisk (benchmarks/load.py), for CPU per attempt."""
    cmd = [
        sys.executable,
        str(Path(__file__).with_name("load.py")),
        "--minutes",
        str(args.validate_seconds / 60),
        "--agents",
        str(args.validate_agents),
        "--answer-pct",
        str(int(ANSWER_SHARE * 100)),
        "--wrap-s",
        str(args.wrap_s),
        "--sample-s",
        "5",
    ]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
    raw, _ = await proc.communicate()
    real = json.loads(raw)
    attempts = real["calls"]["attempts"]
    return {
        "agents": args.validate_agents,
        "attempts": attempts,
        "attempts_per_s": round(attempts / real["duration_s"], 2),
        "service_cpu_cores": real["service_cpu_cores_mean"],
        "cpu_ms_per_attempt": round(1000 * real["service_cpu_cores_mean"] * real["duration_s"] / max(1, attempts), 3),
        "loop_lag_ms_p99": real["loop_lag_ms"]["p99"],
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", default="250,500,1000", help="comma-separated ladder of agent counts")
    ap.add_argument("--seconds", type=float, default=60.0, help="campaign time per step")
    ap.add_argument("--wrap-s", type=int, default=2)
    ap.add_argument("--lines-per-agent", type=float, default=2.0)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--validate", action="store_true", help="first compare CPU/attempt with real Asterisk")
    ap.add_argument("--validate-agents", type=int, default=20)
    ap.add_argument("--validate-seconds", type=float, default=90.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (service logs)")
    ap.add_argument("--profile-s", type=int, default=0, help="py-spy each step's service this long from mid-run")
    args = ap.parse_args()
    configure_logging("WARNING")
    ladder = [int(x) for x in args.agents.split(",") if x.strip()]
    result: dict[str, Any] = {"benchmark": "node_capacity", "answer_share": ANSWER_SHARE, "talk_s": list(TALK_S)}
    if args.validate:
        real = await validate_real(args)
        tmp = Path(tempfile.mkdtemp(prefix="hitcall-capacity-v-"))
        pg = EmbeddedPostgres(tmp / "pg")
        await asyncio.to_thread(pg.start)
        try:
            pool = await asyncpg.create_pool(pg.uri, min_size=1, max_size=2)
            await migrations.apply(pool)
            await pool.close()
            small = argparse.Namespace(**{**vars(args), "seconds": args.validate_seconds})
            fake = await step(small, tmp, pg.uri, args.validate_agents)
        finally:
            await asyncio.to_thread(pg.stop)
            shutil.rmtree(tmp, ignore_errors=True)
        result["validation"] = {
            "real_asterisk": real,
            "loadgen": {
                k: fake[k] for k in ("agents", "attempts", "attempts_per_s", "service_cpu_cores", "cpu_ms_per_attempt")
            }
            | {"loop_lag_ms_p99": fake["loop_lag_ms"]["p99"]},
            "cpu_per_attempt_ratio_loadgen_to_real": round(
                fake["cpu_ms_per_attempt"] / max(1e-9, real["cpu_ms_per_attempt"]), 2
            ),
        }
    tmp = Path(tempfile.mkdtemp(prefix="hitcall-capacity-"))
    pg = EmbeddedPostgres(tmp / "pg")
    await asyncio.to_thread(pg.start)
    steps: list[dict[str, Any]] = []
    try:
        pool = await asyncpg.create_pool(pg.uri, min_size=1, max_size=2)
        await migrations.apply(pool)
        await pool.close()
        for n in ladder:
            steps.append(await step(args, tmp, pg.uri, n))
            print(json.dumps({"step": steps[-1]}), file=sys.stderr, flush=True)
    finally:
        await asyncio.to_thread(pg.stop)
        if args.keep:
            result["workdir"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    sustained = [s for s in steps if s["sustained"]]
    best = max(sustained, key=lambda s: s["agents"], default=None)
    result["steps"] = steps
    result["max_sustained"] = (
        {
            "agents": best["agents"],
            "attempts_per_s": best["attempts_per_s"],
            "cpu_ms_per_attempt": best["cpu_ms_per_attempt"],
        }
        if best
        else None
    )
    result["targets"] = {
        "agents_ge_1000": bool(best and best["agents"] >= 1000),
        "attempts_per_s_ge_100": bool(best and best["attempts_per_s"] >= 100),
    }
    result["note"] = (
        "one node on 2 shared cores; the load generator runs in the benchmark's own process on loopback; "
        "loop lag p99 interpolated in the service's histogram over the campaign period"
    )
    print(json.dumps(result, indent=2))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
