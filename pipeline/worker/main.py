"""The worker process: the only owner of models, GPU memory and the warm browser.

It is started by the server's supervisor (multiprocessing: forked from a forkserver that holds
the worker side's imports, see ``pipeline/jobs/supervisor.py``) and runs jobs one at a time from
a command queue, reporting events on another. It exits when told to, or when the server
disappears, so a killed server never leaves it behind.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import signal
import sys
from multiprocessing.sharedctypes import SynchronizedString
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.messages import Command, Event, RunJob, Shutdown, WorkerExiting, WorkerReady, WorkerState
from pipeline.priority import yield_the_cores
from pipeline.worker.backends.base import Backend
from pipeline.worker.backends.draft import DraftBackend
from pipeline.worker.design.fontembed import use_disk_cache, warm_default
from pipeline.worker.design.local_llm import LocalDesigner
from pipeline.worker.hooks import WorkerHooks, load_hooks
from pipeline.worker.render.browser import TextRenderer
from pipeline.worker.runner import JobRunner

if TYPE_CHECKING:
    from pipeline.worker.backends.diffusion import DiffusionBackend

log = logging.getLogger("adgen.worker")


class BackendRegistry:
    """Resolves the default backend once, and keeps backend instances (models stay cached between jobs)."""

    def __init__(self, settings: Settings, hooks: WorkerHooks | None = None) -> None:
        self.settings = settings
        self.hooks = hooks or WorkerHooks()
        self._draft = DraftBackend()
        self._diffusion: DiffusionBackend | None = None
        self.default, self.reason = self._resolve_default()
        log.info("default backend: %s (%s)", self.default, self.reason)
        self._warm = self.warmup_wanted()
        if self.default == "diffusion":
            self._diffusion_backend()  # decides device and precision now (loads nothing), for get_resources

    def _resolve_default(self) -> tuple[str, str]:
        wanted = self.settings.backend
        if wanted == "draft":
            return "draft", "configured"
        try:
            import diffusers  # noqa: F401
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            missing = f"the model packages are missing ({exc.name}): pip install 'adgen[models]'"
            return "draft", f"{wanted} requested but {missing}"
        if wanted == "diffusion":
            return "diffusion", "configured"
        if not torch.cuda.is_available():
            return "draft", "auto: no CUDA device"
        from pipeline.worker.models.loader import weights_resolvable

        ok, why = weights_resolvable(self.settings)
        return ("diffusion", f"auto: CUDA present, {why}") if ok else ("draft", f"auto: {why}")

    def _diffusion_backend(self) -> DiffusionBackend:
        if self._diffusion is None:
            from pipeline.worker.backends.diffusion import DiffusionBackend

            self._diffusion = DiffusionBackend(self.settings, self.hooks)
        return self._diffusion

    def __call__(self, name: str) -> Backend:
        """The backend the server chose for a job at submit ("draft" or "diffusion")."""
        return self._draft if name == "draft" else self._diffusion_backend()

    def info(self) -> dict[str, Any]:
        return self._diffusion.info() if self._diffusion is not None else self._draft.info()

    def warmup_wanted(self) -> bool:
        """ADGEN_WARMUP, by default on when the diffusion backend runs on CUDA."""
        if self.default != "diffusion":
            return False
        if self.settings.warmup is None:
            import torch

            return torch.cuda.is_available()
        return self.settings.warmup

    def warming(self) -> bool:
        return self._warm and self._diffusion is not None and bool(self._diffusion.warmup_pending())

    def warm_one(self) -> None:
        """Load the next model the memory plan keeps resident (one at a time, so a job waits for one load)."""
        try:
            if self._diffusion is not None:
                self._diffusion.warm_one()
        except Exception as exc:  # a missing model: the first job reports it; stop warming
            log.error("warm start stopped: %s", exc)
            self._warm = False


class ServerWatch:
    """Whether the server that started this worker is gone.

    Not the parent: a forked worker's parent is the forkserver, which lives on as long as any worker it
    forked does. The server's pid is watched through a pidfd (no pid-reuse race) where Linux has them.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = None
        self._gone = False
        try:
            self._fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._gone = True  # died before we started
        except (AttributeError, OSError):
            pass  # no pidfds here: signal 0 stands in

    def gone(self) -> bool:
        if not self._gone:
            if self._fd is not None:
                self._gone = bool(select.select([self._fd], [], [], 0)[0])  # readable once it has exited
            else:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    self._gone = True
                except PermissionError:
                    pass
        return self._gone


class Worker:
    """One worker process's life: set up once, then run commands until told to stop or orphaned."""

    def __init__(self, settings: Settings, commands: Any, events: Any, stop_flag: SynchronizedString,
                 server_pid: int) -> None:
        self.commands, self.events, self.stop_flag = commands, events, stop_flag
        self.server = ServerWatch(server_pid)
        hooks = load_hooks(settings.worker_hooks)
        self.backends = BackendRegistry(settings, hooks)
        self.renderer = TextRenderer(settings.chromium_path, settings.fonts_dir, settings.render_timeout_s,
                                     hooks=hooks)
        try:
            self.renderer.start()  # warm: the first job should not pay for the browser launch
        except Exception as exc:
            log.error("chromium did not start (%s); will retry on first render", exc)
        use_disk_cache(settings.cache_dir)
        warm_default(settings.fonts_dir)  # the default family's fonts ready to subset fast (a thread)
        self.local = (LocalDesigner(settings.local_llm, settings.local_llm_max_new_tokens, settings.cache_dir)
                      if settings.local_llm else None)
        # The server's LLM designers have llm_timeout_s; allow for the hop both ways.
        self.runner = JobRunner(self.backends, self.renderer, self.emit, self.stop_requested, self.receive,
                                settings.llm_timeout_s + 5, settings.fonts_dir, settings.output_dir, self.local)

    def emit(self, event: Event) -> None:
        self.events.put(event)

    def orphaned(self) -> bool:
        return self.server.gone()

    def stop_requested(self, job_id: str) -> bool:
        # A vanished server also stops the job at its next safe point (then the loop exits).
        return self.stop_flag.value.decode() == job_id or self.orphaned()

    def receive(self, timeout: float) -> Command | None:
        """A command arriving while a job runs (a design answer); a Shutdown ends the job's process."""
        try:
            cmd: Command = self.commands.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(cmd, Shutdown):
            self.commands.put(cmd)  # handled by the main loop once this job has stopped
            raise SystemExit(0)
        return cmd

    def state(self) -> WorkerState:
        return WorkerState(self.backends.default, self.backends.reason, self.backends.info(),
                           self.renderer.launches, self.local.info() if self.local else None,
                           warming=self.backends.warming())

    def next_command(self) -> Command | None:
        """The next command, or None after a second of quiet. While warming up, None right after loading one
        more model instead: a job that arrives meanwhile runs (loading what it needs) and warming goes on."""
        if self.backends.warming():
            try:
                cmd: Command = self.commands.get_nowait()
                return cmd
            except queue.Empty:
                self.backends.warm_one()
                if not self.backends.warming():
                    self.emit(self.state())  # warm: /health and get_resources stop saying "warming"
                return None
        try:
            cmd = self.commands.get(timeout=1.0)
            return cmd
        except queue.Empty:
            return None

    def run_job(self, cmd: RunJob) -> None:
        finished = self.runner.run(cmd)
        self.emit(self.state())  # cache contents, renderer launches: current before the job reads as done
        self.emit(finished)
        if self.runner.fatal:
            log.error("device error poisoned this process; exiting so the server starts a fresh worker")
            self.emit(WorkerExiting(self.runner.fatal))
            self.events.close()
            self.events.join_thread()  # the failure report must reach the server before we go
            os._exit(70)

    def serve(self) -> None:
        self.emit(WorkerReady(os.getpid(), self.state()))
        try:
            while True:
                cmd = self.next_command()
                if cmd is None and self.orphaned():
                    log.warning("server went away; worker exiting")
                    return
                if isinstance(cmd, Shutdown):
                    return
                if isinstance(cmd, RunJob):
                    self.run_job(cmd)
        finally:
            self.renderer.close()


def worker_main(settings: Settings, commands: Any, events: Any, stop_flag: SynchronizedString,
                server_pid: int) -> None:
    """The worker process's entry point (started by the server's supervisor)."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s worker[%(process)d] %(levelname)s %(message)s"
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when we stop
    os.setpgid(0, 0)  # lead a process group, so the server can reap the browser with us
    os.dup2(2, 1)  # stdout may be the MCP stdio transport: nothing here may write to it
    yield_the_cores(settings.worker_nice)
    Worker(settings, commands, events, stop_flag, server_pid).serve()
