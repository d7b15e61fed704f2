"""Supervision of the one worker process: start it, read its events, notice its death, replace it.

The server never blocks on the worker: events are read by a thread hop, and a dead worker
is noticed within a fraction of a second. The worker leads its own process group, so a
crash or a kill never leaves its Chromium behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from pipeline.config import Settings
from pipeline.messages import Command, Event, Shutdown, WorkerReady, WorkerState

log = logging.getLogger("adgen.supervisor")


def _worker_entry(env: dict[str, str], *args: object) -> None:
    # A worker forked from the forkserver has the environment the forkserver started with: take the server's
    # as it is now, as a spawned worker would.
    os.environ.clear()
    os.environ.update(env)
    # Imported in the child only: the server process never loads the worker side (cv2, stages, torch).
    from pipeline.worker.main import worker_main

    worker_main(*args)  # type: ignore[arg-type]


def worker_context(settings: Settings) -> Any:
    """How worker processes start: forked from a forkserver that has imported the worker side once.

    A spawned worker paid its imports at every start (~1 s for the draft backend, ~10 s of CPU for torch,
    diffusers and transformers); forked, a restart after a crash is ready in about a second. The forkserver
    is a clean single-threaded process (it never touches CUDA), started at the first worker; it imports the
    model libraries only when the configured backend may need them. Spawn where there is no forkserver.
    """
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # Takes effect when the forkserver (re)starts: the first worker of this process sets what it holds.
    ctx.set_forkserver_preload(_preload(with_models=settings.backend != "draft"))
    return ctx


def _preload(with_models: bool) -> list[str]:
    return ["pipeline.worker.preload"] + (["pipeline.worker.models.preload"] if with_models else [])


def start_forkserver(with_models: bool) -> None:
    """Start this process's forkserver now, holding the model libraries too when ``with_models``.

    For a process that starts workers of several backends (the test suite): otherwise its first worker
    decides, and after a draft one every model worker imports torch, diffusers and transformers itself
    (~15 s of CPU each)."""
    if "forkserver" in mp.get_all_start_methods():
        from multiprocessing import forkserver

        mp.get_context("forkserver").set_forkserver_preload(_preload(with_models))
        forkserver.ensure_running()


class WorkerHandle:
    """One incarnation of the worker process with its own queues (never reused after a crash)."""

    def __init__(self, settings: Settings) -> None:
        ctx = worker_context(settings)
        self.commands: mp.Queue = ctx.Queue()
        self.events: mp.Queue = ctx.Queue()
        # A bytes buffer shared with the worker: the id of the job asked to stop ('' = none).
        self.stop_flag: Any = ctx.Array(ctypes.c_char, 64, lock=False)
        self.process = ctx.Process(
            target=_worker_entry,
            args=(dict(os.environ), settings, self.commands, self.events, self.stop_flag, os.getpid()),
            name="adgen-worker", daemon=True,
        )
        self.process.start()
        self.ready = False
        self.state: WorkerState | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def send(self, cmd: Command) -> None:
        self.commands.put(cmd)

    def request_stop(self, job_id: str) -> None:
        self.stop_flag.value = job_id.encode()

    def clear_stop(self) -> None:
        self.stop_flag.value = b""

    def next_event(self) -> Event | None:
        try:
            event: Event = self.events.get(timeout=0.2)
            return event
        except (queue.Empty, EOFError, OSError):
            return None

    def kill(self, grace: float = 2.0) -> None:
        """Terminate, then kill, then reap; also the worker's children (the browser)."""
        p = self.process
        if p.is_alive():
            p.terminate()
            p.join(grace)
        if p.is_alive():
            p.kill()
        p.join(5)
        self.reap_group()

    def reap_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.killpg(self.process.pid or 0, signal.SIGKILL)

    def shutdown(self, timeout: float = 10.0) -> None:
        try:
            self.commands.put(Shutdown())
            self.process.join(timeout)
        except Exception:
            pass
        self.kill()
        for q in (self.commands, self.events):
            q.close()
            q.cancel_join_thread()

    def describe_exit(self) -> str:
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


class WorkerSupervisor:
    """Keeps exactly one live worker; hands its events to ``on_event`` and its death to ``on_death``."""

    def __init__(
        self, settings: Settings, on_event: Callable[[Event], None], on_death: Callable[[str], Awaitable[None]]
    ) -> None:
        self.settings = settings
        self._on_event = on_event
        self._on_death = on_death
        self.handle: WorkerHandle | None = None
        self.restarts = 0

    async def start(self) -> None:
        self.handle = await anyio.to_thread.run_sync(WorkerHandle, self.settings)

    async def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(handle.shutdown)

    @property
    def ready(self) -> bool:
        return bool(self.handle and self.handle.ready and self.handle.alive())

    @property
    def state(self) -> WorkerState | None:
        return self.handle.state if self.handle else None

    def alive(self) -> bool:
        return bool(self.handle and self.handle.alive())

    async def pump(self) -> None:
        """Forever: read the current worker's events; on its death, report and replace it."""
        while True:
            handle = self.handle
            if handle is None:  # being replaced
                await anyio.sleep(0.05)
                continue
            event = await anyio.to_thread.run_sync(handle.next_event, abandon_on_cancel=True)
            if handle is not self.handle:
                continue  # stale: that worker was replaced while we waited
            if event is None:
                if not handle.alive():
                    cause = f"worker process died ({handle.describe_exit()})"
                    log.error("%s; restarting it", cause)
                    await anyio.to_thread.run_sync(handle.reap_group)
                    await self._replace(cause)
                continue
            if isinstance(event, WorkerReady):
                handle.ready, handle.state = True, event.state
            elif isinstance(event, WorkerState):
                handle.state = event
            self._on_event(event)

    async def kill_and_replace(self, cause: str) -> None:
        """Used when a job does not stop in time: the worker is killed and a fresh one started."""
        handle, self.handle = self.handle, None  # the pump ignores the dying handle from now on
        if handle is not None:
            await anyio.to_thread.run_sync(handle.kill)
        await self._replace(cause)

    async def _replace(self, cause: str) -> None:
        self.handle = None
        self.restarts += 1
        await self._on_death(cause)
        self.handle = await anyio.to_thread.run_sync(WorkerHandle, self.settings)
