"""`hitcall agi`: run the FastAGI server on its own (``hitcall serve`` runs it too)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from ..settings import Settings
from ..store.db import Database
from .scripts import default_handlers
from .server import AgiServer


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agi", help="run the FastAGI server (lookup, optout) for the dialplan")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default HITCALL_AGI_PORT, 4573)")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    port = settings.agi_port if args.port is None else args.port
    if not 1 <= port <= 65535:
        sys.stderr.write(f"hitcall agi: --port must be 1-65535, got {port}\n")
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Database(settings) as db:
        server = AgiServer(db.pool, args.host, port, default_handlers())
        try:
            await server.start()
        except OSError as exc:
            sys.stderr.write(f"hitcall agi: cannot listen on {args.host}:{port}: {exc.strerror or exc}\n")
            return 1
        try:
            await stop.wait()
        finally:
            await server.close()
    return 0
