"""How the service's processes run their event loop: on uvloop (libuv) where it is
installed, the default on Linux, else on asyncio's own loop. On the answer → agent path
uvloop cut the service's CPU per call by about a sixth (`benchmarks/bridge_latency.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on uvloop when it can be imported."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
