"""The `hitcall` command."""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import sys
from collections.abc import Callable

from . import __version__
from .errors import ConfigError, HitCallError
from .logs import configure_logging
from .settings import Settings, load_settings


class UsageError(HitCallError):
    code = "usage_error"


def _out(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ migrate ---
async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from .store import migrations
    from .store.db import Database

    async with Database(settings) as db:
        if args.status:
            rows = await migrations.status(db.pool)
            for r in rows:
                when = r.applied_at.isoformat() if r.applied_at else "pending"
                sys.stdout.write(f"{r.name:<40} {when}\n")
            return 0
        applied = await db.migrate()  # as the schema owner, then the service role's grants
    if applied:
        for name in applied:
            sys.stdout.write(f"applied {name}\n")
    else:
        sys.stdout.write("up to date\n")
    return 0


# ------------------------------------------------------------------- doctor ---
async def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from .doctor import run_checks

    checks = await run_checks(settings)
    ok = all(c.ok for c in checks)
    if args.json:
        _out({"ok": ok, "checks": [c.as_dict() for c in checks]})
    else:
        for c in checks:
            sys.stdout.write(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<32} {c.detail}\n")
    if not ok and not args.json:
        failed = next(c for c in checks if not c.ok)
        sys.stderr.write(f"hitcall doctor: {failed.name}: {failed.detail}\n")
    return 0 if ok else 1


# ------------------------------------------------------------------ sandbox ---
def _sandbox(args: argparse.Namespace) -> int:
    from .sandbox import Sandbox

    box = Sandbox(instance=args.instance)
    if args.action == "start":
        info = box.start()
    elif args.action == "restart":
        info = box.restart()
    elif args.action == "stop":
        box.stop()
        info = box.status()
    else:
        info = box.status()
    if args.json:
        _out(info.as_dict())
    else:
        state = f"running (pid {info.pid})" if info.running else "stopped"
        which = "" if info.instance == 1 else f" {info.instance}"
        sys.stdout.write(f"Asterisk sandbox{which}: {state}\n")
        if info.running:
            sys.stdout.write(
                f"  version   {info.asterisk_version}\n  ARI       {info.ari_url}\n"
                f"  user      {info.ari_user}\n  password  {info.ari_password}\n"
                f"  SIP       {info.sip}\n  root      {info.root}\n"
                f"  FastAGI   {info.agi_url} HITCALL_AGI_SECRET={info.agi_secret}\n"
                f"  peer      trunk [peer] to {info.peer} (Local/<endpoint>@hitcall-peer)\n"
            )
    return 0 if (info.running or args.action == "stop") else 1


# --------------------------------------------------------------------- demo ---
async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(settings, args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hitcall", description="HitCall outbound dialer on Asterisk ARI")
    p.add_argument("--version", action="version", version=f"hitcall {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("migrate", help="apply database migrations (idempotent)")
    m.add_argument("--status", action="store_true", help="list migrations and whether they are applied")

    d = sub.add_parser("doctor", help="check database, migrations, ARI, Asterisk version and modules")
    d.add_argument("--json", action="store_true")

    s = sub.add_parser("sandbox", help="the local Asterisk 22 sandbox (Debian sid chroot, needs root)")
    s.add_argument("action", choices=["start", "stop", "status", "restart"])
    s.add_argument(
        "--instance",
        type=int,
        choices=[1, 2],
        default=1,
        help="2: the second Asterisk in the same chroot (ARI :8089, SIP :5062), trunk 'peer' to the first",
    )
    s.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="run a demo on the sandbox with simulated customers and SIPp agents")
    demo.add_argument("--agents", type=int, default=4)
    demo.add_argument("--customers", type=int, default=200)
    demo.add_argument("--minutes", type=float, default=3.0)
    demo.add_argument("--keep-sandbox", action="store_true", help="leave Asterisk running afterwards")
    demo.add_argument("--json", action="store_true", help="summary as JSON on stdout")

    sv = sub.add_parser("serve", help="run the service: ARI, dialer, REST API, FastAGI, webhooks, purge")
    sv.add_argument(
        "--api-only",
        action="store_true",
        help="serve the REST API only, beside the process that dials (one dials per database)",
    )
    sv.set_defaults(handler=_serve)

    import importlib

    for module_name in _COMMAND_MODULES:
        module = importlib.import_module(module_name, __package__)
        before = set(sub.choices)
        module.add_parser(sub)
        run = module.run
        if len(inspect.signature(run).parameters) == 1:  # run(args): needs no settings
            run = functools.partial(_without_settings, run)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(handler=run)
    for name, handler in _ASYNC.items():
        sub.choices[name].set_defaults(handler=handler)
    return p


def _without_settings(run: Callable[[argparse.Namespace], int], settings: Settings, args: argparse.Namespace) -> int:
    return run(args)


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from .app import serve

    return await serve(settings, api_only=args.api_only)


# Sub-commands that live with their feature: each module has add_parser() and run().
_COMMAND_MODULES = (
    ".auth.command",
    ".hooks.command",
    ".agi.command",
    ".records.command",
    ".records.records_command",
    ".report.command",
    ".sim.command",
    ".cluster.command",
)

_ASYNC: dict[str, Callable[[Settings, argparse.Namespace], object]] = {
    "migrate": _migrate,
    "doctor": _doctor,
    "demo": _demo,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.stderr.write(f"hitcall: {exc.message}\n")
        return 2
    configure_logging(settings.log_level)
    try:
        if args.command == "sandbox":
            return _sandbox(args)
        result = args.handler(settings, args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except ConfigError as exc:
        sys.stderr.write(f"hitcall: {exc.message}\n")
        return 2
    except HitCallError as exc:
        sys.stderr.write(f"hitcall {args.command}: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
