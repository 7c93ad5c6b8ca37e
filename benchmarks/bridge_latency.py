"""Answer → agent bridge latency on the real sandboxed Asterisk: the product vs the raw floor.

Both runs use the same telephony: N SIPp agent phones logged in through the login
extension (*70) and parked in their own bridges, customers dialled through the
product's outbound context (`Local/<E.164>@hitcall-outbound`, sandbox customers
that answer after 0.5 s and hang up after 1.5 s of talk), one customer per free
agent, until `--calls` calls were bridged.

* floor: a bare aiohttp script that only parks agents and adds each answered
  customer to a free agent's bridge;
* product: `HitCall` (dialer, agent state machines, hopper, CDR writer, webhooks
  outbox) running a progressive campaign, started before the agents log in, so that, as
  in the floor, each agent gets its first customer as soon as it is ready (`--burst-start`:
  started once all are ready).

Latency = ChannelEnteredBridge.timestamp - StasisStart.timestamp of the customer
channel (Asterisk's own event clock, ms). The product's part is split in
`product_breakdown`: `to_request_ms` from StasisStart to the bridge request being
sent (event delivery, the answer path, anything queued on the event loop before it)
and `request_ms` the request's round trip. `answered_within_2ms_of_each` shows how bunched
the answers came, in both runs (p50 / p90 / max of the other customers answered within
±2 ms of each): calls placed together are answered together and queue for their agents
together; the floor's stay spread. Prints one JSON object.

    python benchmarks/bridge_latency.py --agents 50 --calls 500 [--runs 3]

Targets, per run (floor and product measured back to back): product p99 <= 2 x floor
p99 and <= floor p99 + 5 ms; product p50 <= floor p50 + 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hitcall_pbx.app import HitCall, Options, settle_heap
from hitcall_pbx.demo.seed import ALL_DAY, create_agent, create_campaign, sim_numbers
from hitcall_pbx.logs import configure_logging
from hitcall_pbx.sandbox import Sandbox, SippAgents
from hitcall_pbx.settings import SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER, load_settings
from hitcall_pbx.store.embedded import EmbeddedPostgres

ARI = "http://127.0.0.1:8088/ari"


def _ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "calls": len(ms),
        "p50_ms": round(_pct(ms, 0.5), 2),
        "p99_ms": round(_pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def _bunching(answers: list[float], window_s: float = 0.002) -> dict[str, float]:
    """How many other customers answered within ±`window_s` of each one (Asterisk's
    millisecond clock): calls placed together are answered together, and their bridge
    requests queue behind each other."""
    s = sorted(answers)
    near = [bisect.bisect_right(s, a + window_s) - bisect.bisect_left(s, a - window_s) - 1 for a in s]
    return {"p50": _pct(near, 0.5), "p90": _pct(near, 0.9), "max": max(near)}


async def floor_run(
    box: Sandbox, agents: int, calls: int, port: int, answers: list[float] | None = None
) -> list[float]:
    """The raw floor: park agents, add each answered customer to a free bridge."""
    headers = {"Authorization": aiohttp.encode_basic_auth(SANDBOX_ARI_USER, SANDBOX_ARI_PASSWORD)}
    latencies: list[float] = []
    free: asyncio.Queue[str] = asyncio.Queue()
    started: dict[str, datetime] = {}
    owner: dict[str, str] = {}
    placed = 0
    done = asyncio.Event()
    numbers = iter(sim_numbers(9, calls * 2, start=500_000))
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=32)) as http:

        async def originate(bridge: str) -> None:
            nonlocal placed
            placed += 1
            cid = f"floor-{uuid.uuid4().hex[:12]}"
            owner[cid] = bridge
            await http.post(
                f"{ARI}/channels/{cid}",
                params={
                    "endpoint": f"Local/{next(numbers)}@hitcall-outbound",
                    "app": "hitcall",
                    "appArgs": "customer",
                    "timeout": "15",
                },
            )

        async def feeder() -> None:
            while not done.is_set():
                bridge = await free.get()
                if placed < calls:
                    await originate(bridge)

        ws = await http.ws_connect(f"{ARI.replace('http', 'ws')}/events", params={"app": "hitcall"})
        feed = asyncio.create_task(feeder())
        sipp = SippAgents(box, [f"agent{i}" for i in range(1, agents + 1)], port=port)
        sipp.start()
        try:
            async for msg in ws:
                ev = json.loads(msg.data)
                t = ev.get("type")
                ch = ev.get("channel") or {}
                cid = ch.get("id", "")
                if t == "StasisStart" and ev.get("args", [""])[0] == "agent-login":
                    bridge = f"floor-agent-{cid}"
                    await http.post(f"{ARI}/bridges/{bridge}", params={"type": "mixing"})
                    await http.post(f"{ARI}/bridges/{bridge}/addChannel", params={"channel": cid})
                    free.put_nowait(bridge)
                elif t == "StasisStart" and cid in owner:
                    started[cid] = _ts(ev["timestamp"])
                    await http.post(f"{ARI}/bridges/{owner[cid]}/addChannel", params={"channel": cid})
                elif t == "ChannelEnteredBridge" and cid in started:
                    answered = started.pop(cid)
                    latencies.append((_ts(ev["timestamp"]) - answered).total_seconds() * 1000)
                    if answers is not None:
                        answers.append(answered.timestamp())
                    if len(latencies) >= calls:
                        break
                elif t == "ChannelDestroyed" and cid in owner:
                    bridge = owner.pop(cid)
                    started.pop(cid, None)
                    free.put_nowait(bridge)
        finally:
            done.set()
            feed.cancel()
            await ws.close()
            async with http.get(f"{ARI}/channels") as r:
                for ch in await r.json():
                    await http.delete(f"{ARI}/channels/{ch['id']}")
            async with http.get(f"{ARI}/bridges") as r:
                for br in await r.json():
                    if br["id"].startswith("floor-agent-"):
                        await http.delete(f"{ARI}/bridges/{br['id']}")
            sipp.stop()
    return latencies


async def product_run(
    box: Sandbox,
    agents: int,
    calls: int,
    port: int,
    dsn: str,
    data_dir: Path,
    run: int = 0,
    breakdown: dict[str, list[float]] | None = None,
    burst_start: bool = False,
    answers: list[float] | None = None,
) -> list[float]:
    if breakdown is None:
        breakdown = {}
    breakdown.setdefault("to_request_ms", [])
    breakdown.setdefault("request_ms", [])
    settings = load_settings(database_url=dsn, data_dir=data_dir, ari_url=ARI, ari_app="hitcall")
    async with HitCall(settings, Options(dialer_tick_s=0.05)) as app:
        settle_heap()  # as `hitcall serve` does once started
        # Where the product's time goes: StasisStart (Asterisk's clock) → the bridge request
        # sent, and the request's round trip (this machine's clock, the same as Asterisk's).
        assert app.ari is not None and app.dialer is not None
        rest, dialer = app.ari.rest, app.dialer
        plain_add = rest.add_channel

        async def timed_add(bridge_id: str, channel: Any, **kw: Any) -> Any:
            sent = time.time()
            call = dialer.calls.get(channel) if isinstance(channel, str) else None
            try:
                return await plain_add(bridge_id, channel, **kw)
            finally:
                if call is not None and call.answered_at is not None:
                    breakdown["to_request_ms"].append((sent - call.answered_at.timestamp()) * 1000.0)
                    breakdown["request_ms"].append((time.time() - sent) * 1000.0)

        rest.add_channel = timed_add  # type: ignore[method-assign]  # timing wrapper, same signature
        pool = app.db.pool
        cid, list_id = await create_campaign(
            pool,
            f"latency-{uuid.uuid4().hex[:6]}",
            mode="progressive",
            numbers=sim_numbers(9, calls, start=100_000 + run * calls),
            wrap_up_s=0,
            ring_timeout_s=15,
            **ALL_DAY,
        )
        for i in range(1, agents + 1):
            known = await pool.fetchval("SELECT id FROM agents WHERE number = $1", str(5000 + i))
            if known is None:
                await create_agent(pool, str(5000 + i), f"agent{i}", [cid])
            else:  # an earlier run's agent
                await pool.execute("INSERT INTO agent_campaigns (agent_id, campaign_id) VALUES ($1, $2)", known, cid)
        # As in the floor, each agent gets a customer as soon as it is logged in: the campaign
        # runs before the phones log in. With `burst_start` it is started once every agent is
        # ready: the first calls of all agents go out in one pass, and since every sandbox
        # customer answers after the same 0.5 s and talks the same 1.5 s, that wave comes back
        # round after round (a load the floor never sees).
        if not burst_start:
            await start_campaign(app, cid)
        sipp = SippAgents(box, [f"agent{i}" for i in range(1, agents + 1)], port=port)
        sipp.start()
        try:
            if burst_start:
                deadline = time.monotonic() + 30
                while len(app.sessions.by_agent) < agents and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await start_campaign(app, cid)
            deadline = time.monotonic() + max(120, calls / 5)
            while time.monotonic() < deadline:
                done = await pool.fetchval(
                    "SELECT count(*) FROM contacts WHERE list_id = $1 AND status IN ('done', 'failed')", list_id
                )
                if done >= calls:
                    break
                await asyncio.sleep(0.5)
            await pool.execute("UPDATE campaigns SET state = 'paused' WHERE id = $1", cid)
            await app.dialer.idle(30)
            await app.cdr.flush()
            rows = await pool.fetch(
                "SELECT answer_to_bridge_ms, answered_at FROM all_attempts"
                " WHERE campaign_id = $1 AND bridged_at IS NOT NULL",
                cid,
            )
            errors = await pool.fetchval(
                "SELECT count(*) FROM all_attempts WHERE campaign_id = $1 AND outcome <> 'answered_human'", cid
            )
        finally:
            for ch in await app.ari.rest.list_channels():
                try:
                    await app.ari.rest.hangup(ch.id)
                except Exception:
                    pass
            sipp.stop()
    if errors:
        print(json.dumps({"warning": f"{errors} attempts did not reach an agent"}), file=sys.stderr)
    if answers is not None:
        answers.extend(r["answered_at"].timestamp() for r in rows)
    return [float(r["answer_to_bridge_ms"]) for r in rows]


async def start_campaign(app: HitCall, campaign_id: int) -> None:
    """Run the campaign, known to the dialer at once (as the API's start does)."""
    assert app.dialer is not None
    await app.db.pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", campaign_id)
    await app.dialer.refresh_campaigns()
    app.dialer.wake()


@contextlib.asynccontextmanager
async def live_environment(prefix: str) -> AsyncIterator[tuple[Sandbox, Path, str]]:
    """The sandboxed Asterisk (held exclusively; started if it was not running, stopped
    again then) and an embedded PostgreSQL in a fresh temp dir: (sandbox, temp dir, dsn)."""
    box = Sandbox()
    with box.exclusive():
        started = box.pid() is None
        box.start()
        tmp = Path(tempfile.mkdtemp(prefix=prefix))
        pg = EmbeddedPostgres(tmp / "pg")
        await asyncio.to_thread(pg.start)
        try:
            yield box, tmp, pg.uri
        finally:
            await asyncio.to_thread(pg.stop)
            if started:
                box.stop()


def _targets(f: dict[str, float], p: dict[str, float]) -> dict[str, bool]:
    return {
        "product_p99_le_2x_floor_p99": p["p99_ms"] <= 2 * f["p99_ms"],
        "product_p99_le_floor_p99_plus_5ms": p["p99_ms"] <= f["p99_ms"] + 5.0,
        "product_p50_le_floor_p50_plus_2ms": p["p50_ms"] <= f["p50_ms"] + 2.0,
    }


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--runs", type=int, default=1, help="floor + product pairs in a row (one sandbox session)")
    ap.add_argument(
        "--burst-start", action="store_true", help="start the campaign once every agent is ready (one wave of calls)"
    )
    args = ap.parse_args()
    configure_logging("WARNING")
    runs = []
    async with live_environment("hitcall-bench-") as (box, tmp, dsn):
        for i in range(args.runs):
            floor_answers: list[float] = []
            product_answers: list[float] = []
            floor = await floor_run(box, args.agents, args.calls, port=5301, answers=floor_answers)
            breakdown: dict[str, list[float]] = {}
            product = await product_run(
                box,
                args.agents,
                args.calls,
                5302,
                dsn,
                tmp / f"data{i}",
                run=i,
                breakdown=breakdown,
                burst_start=args.burst_start,
                answers=product_answers,
            )
            f, p = _summary(floor), _summary(product)
            parts = {name: _summary(ms) for name, ms in breakdown.items() if ms}
            bunching = {"floor": _bunching(floor_answers), "product": _bunching(product_answers)}
            runs.append(
                {
                    "floor": f,
                    "product": p,
                    "product_breakdown": parts,
                    "answered_within_2ms_of_each": bunching,
                    "targets": _targets(f, p),
                }
            )
    out = {
        "benchmark": "bridge_latency",
        "agents": args.agents,
        "calls_target": args.calls,
        "start": "campaign started once every agent was ready"
        if args.burst_start
        else "agents log in to a running campaign",
        "runs": runs,
        "all_targets_met_every_run": all(all(r["targets"].values()) for r in runs),
        "note": "ms between StasisStart and ChannelEnteredBridge of the customer channel (Asterisk event clock)",
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
