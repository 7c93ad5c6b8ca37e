"""The service's processes run their event loop on uvloop where it is installed (a
dependency on Linux), and on asyncio's own loop where it is not."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest
import uvloop

from hitcall_pbx import runner


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_the_service_loop_is_uvloop_where_installed() -> None:
    assert runner.run(_loop_type()) is uvloop.Loop


def test_without_uvloop_it_is_asyncios_own(monkeypatch: pytest.MonkeyPatch) -> None:
    plain_import = builtins.__import__
    ran: list[str] = []

    def no_uvloop(name: str, *args: Any, **kw: Any) -> Any:
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return plain_import(name, *args, **kw)

    def asyncio_run(main: Any) -> Any:
        ran.append("asyncio.run")
        return asyncio.new_event_loop().run_until_complete(main)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    monkeypatch.setattr(runner.asyncio, "run", asyncio_run)
    assert runner.run(_done()) == "done" and ran == ["asyncio.run"]


async def _done() -> str:
    return "done"


async def test_the_tests_themselves_run_on_the_service_loop() -> None:
    assert type(asyncio.get_running_loop()) is uvloop.Loop  # tests/conftest.py
