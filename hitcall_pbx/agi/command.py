"""`hitcall agi`: run the FastAGI server on its own (``hitcall serve`` runs it too)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from ..settings import Settings
from ..store.db import Database
from .scripts import default_handlers
from .server import AGI_UNCONFIGURED, AgiServer


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agi", help="run the FastAGI server (lookup, optout) for the dialplan")
    p.add_argument("--host", default=None, help="address to listen on (default HITCALL_AGI_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default HITCALL_AGI_PORT, 4573)")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    port = settings.agi_port if args.port is None else args.port
    host = settings.agi_host if args.host is None else args.host
    if not 1 <= port <= 65535:
        sys.stderr.write(f"hitcall agi: --port must be 1-65535, got {port}\n")
        return 2
    if settings.agi_secret is None:
        sys.stderr.write(f"hitcall agi: {AGI_UNCONFIGURED}\n")
        return 2
    secret = settings.agi_secret.get_secret_value()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Database(settings) as db:
        server = AgiServer(db.pool, host, port, default_handlers(), secret=secret)
        try:
            await server.start()
        except OSError as exc:
            sys.stderr.write(f"hitcall agi: cannot listen on {host}:{port}: {exc.strerror or exc}\n")
            return 1
        try:
            await stop.wait()
        finally:
            await server.close()
    return 0
