"""Background tasks a component starts from its event path and owns until they end."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from .logs import get_logger

log = get_logger("hitcall.tasks")


class TaskSet:
    """Keeps each task referenced until it is done, logs a failure with the owner's name,
    and lets the owner wait for all of them when it closes."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(f"{self.owner}.task_failed", error=repr(task.exception()))

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until every task started so far has ended."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
