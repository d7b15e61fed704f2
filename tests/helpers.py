"""Waiting in tests: one helper that polls a condition and fails with a message on timeout.

Deadlines here only catch hangs; they are never performance claims (benchmarks hold timings).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from pipeline.jobs import JobManager

T = TypeVar("T")
TERMINAL = frozenset({"completed", "failed", "stopped"})
# A worker imports torch and launches Chromium before it is ready: seconds when quiet, but a loaded
# 2-core CI machine has needed over a minute. Only a hang should fail this.
READY_S = 180.0


async def wait_until(
    condition: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``condition`` (sync or async) until it returns something truthy; return that value."""
    deadline = anyio.current_time() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if anyio.current_time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await anyio.sleep(interval)


def wait_until_sync(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """The same for plain (non-async) tests and fixtures."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def wait_for_job(m: JobManager, job_id: str, states: frozenset[str] | set[str] = TERMINAL,
                       timeout: float = 60) -> str:
    """Wait (on the job's change events, not a busy loop) until the job reaches one of ``states``."""
    async def reached() -> str | None:
        status = m.status(job_id, with_metrics=False).status
        if status in states:
            return status
        await m.wait_for_change(job_id, 0.2)
        return None

    return await wait_until(reached, timeout, f"job {job_id} to reach {sorted(states)}", interval=0)


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """An ASGI app served by a real uvicorn on a free loopback port, in this event loop: its base URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(web.serve)
        with anyio.fail_after(20):
            while not web.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            web.should_exit = True
