"""TaskSet: tasks stay referenced until done, failures are logged, close waits for them."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from hitcall_pbx.tasks import TaskSet


async def test_tasks_are_tracked_until_done_and_failures_logged():
    tasks = TaskSet("dialer")
    gate = asyncio.Event()

    async def waits():
        await gate.wait()

    async def fails():
        raise RuntimeError("boom")

    with capture_logs() as logs:
        tasks.spawn(waits())
        tasks.spawn(fails())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(tasks) == 1, "the failed task is gone, the waiting one is still held"
        gate.set()
        await tasks.wait()
    assert len(tasks) == 0 and not tasks
    assert [(e["event"], e["error"]) for e in logs] == [("dialer.task_failed", "RuntimeError('boom')")]
