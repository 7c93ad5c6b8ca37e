"""`hitcall demo`: the whole product on the local sandbox, watched live in the terminal.

Starts the Asterisk sandbox (unless it runs already) and the service (embedded
Postgres unless DATABASE_URL is set), creates a campaign of simulated customers
and agents on SIPp phones, dials in preview mode first (the demo's agents accept
every offer), then predictively, and ends with a summary and the day's compliance
report files in the data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from ..app import HitCall, Options
from ..auth import Actor, AuthService, Passwords, Role
from ..errors import NotFound
from ..logs import configure_logging
from ..report.command import write_files
from ..report.compute import percentile
from ..report.query import load_campaign_day
from ..sandbox import Sandbox, SippAgents
from ..store import supervision
from .seed import ALL_DAY, create_campaign, ensure_agent, sim_numbers

SIPP_PORT = 5271
LOGIN_TIMEOUT_S = 20.0
DRAIN_S = 10.0

# Simulated customers (see dialplan/sandbox/extensions_hitcall_local.conf): the
# behaviour digit and its share of the list.
CUSTOMER_MIX = (
    (0, 0.30),  # realistic random mix: talk 20-90 s, busy, no answer, congestion, machine
    (7, 0.45),  # answers after 1-4 s, talks 5-20 s
    (2, 0.08),  # busy
    (3, 0.07),  # never answers
    (5, 0.05),  # answering machine
    (9, 0.05),  # quick call
)
DNC_SHARE = 0.03


def check_args(args: argparse.Namespace) -> str | None:
    """One readable line naming the bad option, or None."""
    if not 1 <= args.agents <= 100:
        return "--agents must be 1..100"
    if not 1 <= args.customers <= 100_000:
        return "--customers must be 1..100000"
    if not 0.1 <= args.minutes <= 120:
        return "--minutes must be 0.1..120"
    return None


def customer_numbers(total: int, offset: int, rng: random.Random) -> list[str]:
    """`total` sandbox numbers in the demo mix, shuffled; `offset` keeps runs apart
    (a number abandoned in an earlier run is not dialled again within 72 h)."""
    numbers: list[str] = []
    for i, (behaviour, share) in enumerate(CUSTOMER_MIX):
        n = total - len(numbers) if i == len(CUSTOMER_MIX) - 1 else round(total * share)
        numbers += sim_numbers(behaviour, max(0, n), start=offset)
    rng.shuffle(numbers)
    return numbers[:total]


@dataclass
class Progress:
    elapsed_s: float
    total_s: float
    phase: str
    agents: dict[str, int]
    live: dict[str, int]
    attempts: int
    ended: int
    connects: int
    abandoned: int
    cap: float
    contacts: int

    @property
    def abandon_rate(self) -> float | None:
        total = self.abandoned + self.connects
        return self.abandoned / total if total else None


def _bar(fraction: float, width: int = 32) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def render_progress(p: Progress, *, colour: bool) -> list[str]:
    def c(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour else text

    rate = p.abandon_rate
    rate_txt = "–" if rate is None else f"{rate * 100:.1f} %"
    if rate is not None:
        rate_txt = c("32" if rate <= p.cap else "31;1", rate_txt)
    agents = "  ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(p.agents.items())) or "none logged in"
    live = "  ".join(f"{k} {v}" for k, v in sorted(p.live.items())) or "none"
    remaining = max(0.0, p.total_s - p.elapsed_s)
    return [
        f"{c('1', 'HitCall demo')} · {p.phase:<11} {_bar(p.elapsed_s / p.total_s if p.total_s else 1)} "
        f"{int(remaining // 60)}:{int(remaining % 60):02d} left",
        f"  agents    {agents}",
        f"  calls     {live}",
        f"  attempts  {p.attempts} of {p.contacts} customers · ended {p.ended} · connected {p.connects} · "
        f"abandoned {p.abandoned} · abandon rate {rate_txt} (cap {p.cap * 100:.0f} %)",
    ]


class Screen:
    """Live progress: redrawn in place on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, out: TextIO, *, tty: bool, plain_every_s: float = 5.0) -> None:
        self.out = out
        self.tty = tty
        self.plain_every_s = plain_every_s
        self._lines = 0
        self._last_plain = -1e9

    @property
    def interval_s(self) -> float:
        return 0.5 if self.tty else 1.0

    def show(self, p: Progress, *, force: bool = False) -> None:
        if self.tty:
            lines = render_progress(p, colour=True)
            up = f"\x1b[{self._lines}F" if self._lines else ""
            self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self._lines = len(lines)
        elif force or p.elapsed_s - self._last_plain >= self.plain_every_s:
            self._last_plain = p.elapsed_s
            lines = render_progress(p, colour=False)
            self.out.write(f"[{p.elapsed_s:5.0f} s] {p.phase} | " + " | ".join(s.strip() for s in lines[1:]) + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
        self._lines = 0


@contextlib.contextmanager
def _logging_to(path: Path, level: str) -> Iterator[None]:
    """The service logs to a file while the terminal shows the live view; the
    previous logging configuration is restored afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    with open(path, "a", encoding="utf-8") as fh:
        configure_logging(level, stream=fh)
        try:
            yield
        finally:
            structlog.configure(**saved)
            root.handlers[:] = handlers
            root.setLevel(root_level)


async def run_demo(settings: Any, args: argparse.Namespace, *, sandbox: Sandbox | None = None) -> int:
    """Run the demo. With `sandbox`, the caller holds and runs the sandbox; otherwise
    the demo takes the sandbox lock, starts it if needed and stops what it started."""
    problem = check_args(args)
    if problem:
        sys.stderr.write(f"hitcall demo: {problem}\n")
        return 2
    as_json = bool(getattr(args, "json", False))
    out = sys.stderr if as_json else sys.stdout
    screen = Screen(out, tty=out.isatty())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "demo.log"
    with _logging_to(log_path, settings.log_level):
        screen.say(f"Service log: {log_path}")
        summary = await _with_sandbox(settings, args, sandbox, screen)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        for line in summary_lines(summary):
            out.write(line + "\n")
    if summary["interrupted"]:
        return 130
    return 0 if summary["agents_logged_in"] else 1


async def _with_sandbox(
    settings: Any, args: argparse.Namespace, sandbox: Sandbox | None, screen: Screen
) -> dict[str, Any]:
    if sandbox is not None:
        return await _demo(settings, args, sandbox, screen)
    box = Sandbox()
    screen.say("Waiting for the Asterisk sandbox…")
    with box.exclusive():
        was_running = box.pid() is not None
        screen.say(
            "Starting Asterisk (the first run installs it: about a minute)…"
            if not was_running
            else "Asterisk sandbox already running: using it."
        )
        await asyncio.to_thread(box.start)
        try:
            return await _demo(settings, args, box, screen)
        finally:
            if not was_running and not getattr(args, "keep_sandbox", False):
                await asyncio.to_thread(box.stop)


async def _demo(settings: Any, args: argparse.Namespace, box: Sandbox, screen: Screen) -> dict[str, Any]:
    agents_n, customers, total_s = int(args.agents), int(args.customers), float(args.minutes) * 60
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        settings = _with_free_http_port(settings)
        async with HitCall(settings, Options(dialer_tick_s=0.1, webhooks=False, http=True)) as app:
            assert app.db and app.dialer and app.sessions and app.ari and app.cdr and app.recorder
            pool = app.db.pool
            stamp = datetime.now(UTC)
            rng = random.Random(stamp.timestamp())
            campaign_id, list_id = await create_campaign(
                pool,
                f"Demo {stamp:%Y-%m-%d %H:%M:%S}",
                mode="preview",
                record_calls=True,
                ring_timeout_s=15,
                wrap_up_s=1,
                max_attempts=1,
                preview_offer_timeout_s=10,
                **ALL_DAY,
            )
            numbers = customer_numbers(customers, (campaign_id * 1000) % 900_000 + 1, rng)
            await _add_customers(pool, campaign_id, list_id, numbers, rng)
            endpoints = [f"agent{n}" for n in range(1, agents_n + 1)]
            for n, endpoint in enumerate(endpoints, 1):
                await ensure_agent(pool, f"{900 + n}", endpoint, [campaign_id])
            screen.say(f"Campaign #{campaign_id}: {customers} simulated customers, {agents_n} agents on SIPp phones.")
            await _browser_logins(app, settings, campaign_id, endpoints[0], screen)
            phones = SippAgents(box, endpoints, port=SIPP_PORT)
            phones.start()
            try:
                logged_in = await _wait_logins(app, agents_n, stop)
                if logged_in:
                    await pool.execute("UPDATE campaigns SET state = 'running' WHERE id = $1", campaign_id)
                    await _dial(app, campaign_id, customers, total_s, stop, screen)
            finally:
                # Also on errors: no call, agent phone or running campaign is left behind.
                try:
                    await pool.execute("UPDATE campaigns SET state = 'finished' WHERE id = $1", campaign_id)
                    await _finish_calls(app)
                    await _log_out(app)
                finally:
                    phones.stop()
            await app.sessions.drain()
            summary = await _summary(app, campaign_id, settings.data_dir)
            summary |= {
                "agents": agents_n,
                "agents_logged_in": logged_in,
                "customers": customers,
                "interrupted": stop.is_set(),
            }
            return summary
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


DEMO_SUPERVISOR = "demo-supervisor"
DEMO_AGENT = "demo-agent"


def _with_free_http_port(settings: Any) -> Any:
    """The demo's web port: the configured one, or a free one when something else holds it."""
    with socket.socket() as s:
        try:
            s.bind((settings.http_host, settings.http_port))
            return settings
        except OSError:
            s.bind((settings.http_host, 0))
            return settings.model_copy(update={"http_port": s.getsockname()[1]})


async def _browser_logins(app: HitCall, settings: Any, campaign_id: int, endpoint: str, screen: Screen) -> None:
    """A supervisor and an agent user (the first phone's agent) with a fresh password each run,
    and the addresses to watch the campaign in the browser."""
    assert app.db is not None
    pool = app.db.pool
    auth = AuthService(pool, passwords=Passwords())
    actor = Actor("demo", "system")
    password = secrets.token_urlsafe(12)
    for username, role in ((DEMO_SUPERVISOR, Role.SUPERVISOR), (DEMO_AGENT, Role.AGENT)):
        user_id = await pool.fetchval("SELECT id FROM users WHERE lower(username) = lower($1)", username)
        if user_id is None:
            user_id = (await auth.create_user(username=username, role=role, password=password, actor=actor))["id"]
        else:
            await auth.update_user(user_id, password=password, disabled=False, actor=actor)
        if role is Role.AGENT:
            await pool.execute("UPDATE agents SET user_id = NULL WHERE user_id = $1", user_id)
            await pool.execute("UPDATE agents SET user_id = $2 WHERE endpoint = $1", endpoint, user_id)
        else:  # a supervisor supervises the campaigns of their phone's agent row (here one without a phone)
            if await pool.fetchval("SELECT id FROM agents WHERE user_id = $1", user_id) is None:
                await pool.execute(
                    "INSERT INTO agents (number, name, user_id) VALUES ('9999', 'Demo supervisor', $1)", user_id
                )
            await supervision.add_to_supervisor(pool, user_id, campaign_id)
    host = settings.http_host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:  # listening on every address: show the loopback one
            host = "127.0.0.1"
    base = f"http://{host}:{app.http_port}/web"
    screen.say(f"Wallboard:  {base}/supervisor?campaign={campaign_id}  (log in as {DEMO_SUPERVISOR})")
    screen.say(f"Agent desk: {base}/agent  (log in as {DEMO_AGENT}, the phone {endpoint})")
    screen.say(f"Password for both this run: {password}")


async def _add_customers(pool: Any, campaign_id: int, list_id: int, numbers: list[str], rng: random.Random) -> None:
    names = ["Aino", "Eero", "Helmi", "Juhani", "Kaisa", "Lauri", "Minna", "Oskari", "Sanna", "Ville"]
    surnames = ["Virtanen", "Korhonen", "Nieminen", "Mäkinen", "Hämäläinen", "Laine", "Heikkinen", "Koskinen"]
    rows = [(list_id, n, f"{rng.choice(names)} {rng.choice(surnames)}") for n in numbers]
    await pool.executemany(
        "INSERT INTO contacts (list_id, phone_e164, name, marketing_permission) VALUES ($1, $2, $3, true)", rows
    )
    # A few customers said no earlier: the dialler must skip them (they show in the report).
    dnc = rng.sample(numbers, k=max(1, int(len(numbers) * DNC_SHARE))) if len(numbers) > 10 else []
    await pool.executemany(
        "INSERT INTO dnc_entries (phone_e164, campaign_id, reason, source) VALUES ($1, $2, 'demo', 'manual')",
        [(n, campaign_id) for n in dnc],
    )


async def _wait_logins(app: HitCall, n: int, stop: asyncio.Event) -> int:
    assert app.sessions
    deadline = time.monotonic() + LOGIN_TIMEOUT_S
    # Polled: agent sessions signal no change; logins take seconds, 0.1 s granularity is plenty.
    while len(app.sessions.by_agent) < n and time.monotonic() < deadline and not stop.is_set():  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return len(app.sessions.by_agent)


async def _dial(
    app: HitCall, campaign_id: int, customers: int, total_s: float, stop: asyncio.Event, screen: Screen
) -> None:
    """Preview first (accepting offers for a few calls), then predictive until the time is up."""
    assert app.db and app.dialer and app.sessions
    pool, dialer = app.db.pool, app.dialer
    preview_s = min(30.0, max(8.0, total_s * 0.15))
    preview_calls = len(app.sessions.by_agent) * 2
    accepted = 0
    phase = "preview"
    t0 = time.monotonic()
    next_draw = 0.0
    while not stop.is_set():
        elapsed = time.monotonic() - t0
        if elapsed >= total_s:
            break
        for agent_id in list(dialer.offers):
            with contextlib.suppress(NotFound):
                await dialer.accept_offer(agent_id)
                accepted += 1
        if phase == "preview" and (accepted >= preview_calls or elapsed >= preview_s):
            await pool.execute("UPDATE campaigns SET mode = 'predictive' WHERE id = $1", campaign_id)
            await dialer.refresh_campaigns()
            phase = "predictive"
        if elapsed >= next_draw:
            screen.show(await _progress(app, campaign_id, customers, elapsed, total_s, phase))
            next_draw = elapsed + screen.interval_s
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    elapsed = min(time.monotonic() - t0, total_s)
    screen.show(
        await _progress(app, campaign_id, customers, elapsed, total_s, "stopped" if stop.is_set() else "done"),
        force=True,
    )


async def _progress(
    app: HitCall, campaign_id: int, customers: int, elapsed: float, total_s: float, phase: str
) -> Progress:
    assert app.db and app.dialer and app.sessions
    row = await app.db.pool.fetchrow(
        """SELECT count(*) AS attempts, count(*) FILTER (WHERE state = 'ended') AS ended,
                  count(*) FILTER (WHERE bridged_at IS NOT NULL) AS connects,
                  count(*) FILTER (WHERE abandoned) AS abandoned,
                  (SELECT abandon_cap FROM campaigns WHERE id = $1) AS cap
           FROM all_attempts WHERE campaign_id = $1 AND direction = 'outbound'""",
        campaign_id,
    )
    assert row is not None  # an aggregate without GROUP BY returns exactly one row
    live: dict[str, int] = {}
    for call in app.dialer.live_calls():
        live[call["state"]] = live.get(call["state"], 0) + 1
    return Progress(
        elapsed,
        total_s,
        phase,
        app.sessions.counts(),
        live,
        row["attempts"],
        row["ended"],
        row["connects"],
        row["abandoned"],
        float(row["cap"]),
        customers,
    )


async def _finish_calls(app: HitCall) -> None:
    """Stop dialling, hang up calls still in progress, store their CDRs and recordings."""
    assert app.dialer and app.cdr and app.recorder
    await app.dialer.close(hangup_calls=True)
    await app.dialer.idle(DRAIN_S)
    await app.recorder.drain(DRAIN_S)
    await app.cdr.flush()


async def _log_out(app: HitCall) -> None:
    """Hang up the agents' phones (SIPp ends each call on BYE)."""
    assert app.sessions and app.ari
    for session in list(app.sessions.by_agent.values()):
        with contextlib.suppress(Exception):
            await app.ari.rest.hangup(session.channel_id)
    deadline = time.monotonic() + 5
    # Polled: agent sessions signal no change; the wait is bounded by the deadline.
    while app.sessions.by_agent and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _summary(app: HitCall, campaign_id: int, data_dir: Path) -> dict[str, Any]:
    assert app.db and app.store
    pool = app.db.pool
    rows = await pool.fetch(
        "SELECT outcome, abandoned, bridged_at, answer_to_bridge_ms, mode, state FROM all_attempts "
        "WHERE campaign_id = $1 AND direction = 'outbound'",
        campaign_id,
    )
    cap = float(await pool.fetchval("SELECT abandon_cap FROM campaigns WHERE id = $1", campaign_id))
    outcomes: dict[str, int] = {}
    modes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"] or "in_progress"] = outcomes.get(r["outcome"] or "in_progress", 0) + 1
        modes[r["mode"]] = modes.get(r["mode"], 0) + 1
    connects = sum(1 for r in rows if r["bridged_at"] is not None)
    abandoned = sum(1 for r in rows if r["abandoned"])
    a2b = [
        r["answer_to_bridge_ms"] for r in rows if r["bridged_at"] is not None and r["answer_to_bridge_ms"] is not None
    ]
    recordings = await pool.fetch("SELECT path, retention_until FROM recordings WHERE campaign_id = $1", campaign_id)
    day = datetime.now(UTC).date()
    report = await load_campaign_day(pool, campaign_id, day)
    files = write_files([report], day, data_dir / "reports", f"compliance-{day.isoformat()}-campaign-{campaign_id}")
    return {
        "campaign_id": campaign_id,
        "attempts": len(rows),
        "cdrs": sum(1 for r in rows if r["state"] == "ended"),
        "by_mode": modes,
        "outcomes": dict(sorted(outcomes.items(), key=lambda kv: -kv[1])),
        "connects": connects,
        "abandoned": abandoned,
        "abandon_rate": abandoned / (abandoned + connects) if abandoned + connects else None,
        "abandon_cap": cap,
        "answer_to_agent_p50_ms": percentile(a2b, 50),
        "answer_to_agent_p99_ms": percentile(a2b, 99),
        "recordings": len(recordings),
        "recordings_dir": str(app.store.root),
        "blocked_dnc": report.blocked_dnc,
        "report_files": [str(p.resolve()) for p in files],
    }


def summary_lines(s: dict[str, Any]) -> list[str]:
    rate = s["abandon_rate"]
    rate_txt = "–" if rate is None else f"{rate * 100:.1f} %"
    verdict = "within" if (rate or 0) <= s["abandon_cap"] else "OVER"

    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f} ms"

    lines = [
        "",
        f"Summary of campaign #{s['campaign_id']}" + (" (stopped early)" if s["interrupted"] else ""),
        f"  agents logged in   {s['agents_logged_in']} of {s['agents']}",
        f"  call attempts      {s['attempts']}  ({', '.join(f'{k} {v}' for k, v in s['by_mode'].items()) or '–'})",
        f"  outcomes           {', '.join(f'{k} {v}' for k, v in s['outcomes'].items()) or '–'}",
        f"  connected to agent {s['connects']}",
        f"  abandoned          {s['abandoned']}  → abandon rate {rate_txt}, {verdict} the "
        f"{s['abandon_cap'] * 100:.0f} % cap",
        f"  answer → agent     p50 {fmt(s['answer_to_agent_p50_ms'])}, p99 {fmt(s['answer_to_agent_p99_ms'])}",
        f"  skipped (DNC)      {s['blocked_dnc']}",
        f"  recordings         {s['recordings']} in {s['recordings_dir']}",
        "Compliance report:",
    ]
    lines += [f"  {p}" for p in s["report_files"]]
    if not s["agents_logged_in"]:
        lines.append("No agent phone logged in: see `hitcall doctor` and the sandbox log.")
    return lines
