"""The job manager: validation, FIFO queue, worker supervision, status, progress and ETA.

It lives in the server process and never blocks its event loop: the worker is a separate
process fed through a command queue, and its events are read by a thread hop. It is the
one owner of job state; the MCP tools and the REST routes only call its methods.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc

from pipeline.config import Settings
from pipeline.fonts import FontCatalog
from pipeline.images import InputError, decode_base64, load_image, read_confined, save_png
from pipeline.design.llm import LLMDesigners, Sampler
from pipeline.design.prompt import DesignPrompt
from pipeline.messages import (
    DesignAnswer,
    DesignNeeded,
    Event,
    JobFinished,
    RunJob,
    Shutdown,
    StageFinished,
    StageProgress,
    StageStarted,
    WorkerReady,
)
from pipeline.metrics import system_metrics
from pipeline.runner import STAGE_LABELS, plan_stages, step_of
from pipeline.schemas import (
    TERMINAL_STATES,
    GenerateRequest,
    HealthResponse,
    JobAccepted,
    JobState,
    ResourcesResponse,
    StatusResponse,
    StopResponse,
    SystemMetrics,
)
from pipeline.stats import StageStats
from pipeline.store import JobStore
from pipeline.worker import worker_main

log = logging.getLogger("adgen.jobs")

ResultFormat = Literal["uri", "url"]
RESULT_FILES = {"step1_result": "step1.png", "step2_result": "text.png", "final_result": "final.png"}


class QueueFull(RuntimeError):
    def __init__(self, limit: int, retry_after: float) -> None:
        super().__init__(f"the queue is full ({limit} jobs waiting); retry in about {int(retry_after)} s")
        self.retry_after = retry_after


class StartupError(RuntimeError):
    pass


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return f"no job with id {self.args[0]!r}"


@dataclass
class Job:
    id: str
    params: dict[str, Any]
    width: int
    height: int
    backend: str
    created_at: float
    request: GenerateRequest | None = None  # None for jobs loaded from disk after a restart
    status: JobState = "pending"
    plan: tuple[str, ...] = ()
    stage: str | None = None
    stage_started: float = 0.0
    stage_fraction: float = 0.0
    sub_step: str | None = None
    message: str = "Queued"
    done: dict[str, float] = field(default_factory=dict)
    started_mono: float | None = None
    elapsed_final: float | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    progress: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def touch(self) -> None:
        """Wake everyone waiting on this job (tool calls streaming progress)."""
        self.changed.set()
        self.changed = anyio.Event()

    def record(self) -> dict[str, Any]:
        return {
            "job_id": self.id, "status": self.status, "created_at": self.created_at, "params": self.params,
            "width": self.width, "height": self.height, "backend": self.backend, "plan": list(self.plan),
            "done": self.done, "error": self.error, "info": self.info, "progress": self.progress,
            "message": self.message, "elapsed": self.elapsed(time.monotonic()),
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Job:
        job = cls(
            id=r["job_id"], params=r.get("params", {}), width=r.get("width", 1024), height=r.get("height", 1024),
            backend=r.get("backend", "draft"), created_at=r.get("created_at", 0.0), status=r.get("status", "failed"),
            plan=tuple(r.get("plan", ())), done=dict(r.get("done", {})), error=r.get("error"),
            info=dict(r.get("info", {})), progress=int(r.get("progress", 0)), message=r.get("message", ""),
        )
        job.elapsed_final = float(r.get("elapsed") or 0.0)
        return job

    def elapsed(self, now: float) -> float:
        if self.elapsed_final is not None:
            return self.elapsed_final
        return 0.0 if self.started_mono is None else now - self.started_mono


class WorkerHandle:
    """One incarnation of the worker process with its own queues (never reused after a crash)."""

    def __init__(self, settings: Settings) -> None:
        ctx = mp.get_context("spawn")
        self.commands = ctx.Queue()
        self.events = ctx.Queue()
        self.stop_flag = ctx.Array(ctypes.c_char, 64, lock=False)
        self.process = ctx.Process(
            target=worker_main, args=(settings, self.commands, self.events, self.stop_flag),
            name="adgen-worker", daemon=True,
        )
        self.process.start()
        self.ready = False
        self.info: dict[str, Any] = {}

    def alive(self) -> bool:
        return self.process.is_alive()

    def next_event(self) -> Event | None:
        try:
            return self.events.get(timeout=0.2)
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
        # The worker leads its own process group so a crash cannot orphan Chromium.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, TypeError):
            pass

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


class JobManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore(settings.jobs_dir)
        self.stats = StageStats(settings.stats_path)
        self.fonts = FontCatalog(settings.fonts_dir)
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.running: str | None = None
        self.worker: WorkerHandle | None = None
        self.worker_restarts = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._metrics: tuple[float, SystemMetrics] | None = None
        self.designers = LLMDesigners(settings.anthropic_model, settings.llm_timeout_s)
        # MCP sampling callbacks of tool calls that are still waiting on their job.
        self.samplers: dict[str, Sampler] = {}

    # ---- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> JobManager:
        self._check_vram()
        self._load_from_disk()
        self._prune()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self.worker = await anyio.to_thread.run_sync(WorkerHandle, self.settings)
        self._tg.start_soon(self._pump)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        if self.worker is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.worker.shutdown)
        for job in self.jobs.values():
            if job.status in ("pending", "running"):
                self._finish(job, "failed", "server shut down before the job finished")

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        with anyio.move_on_after(timeout):
            while not (self.worker and self.worker.ready):
                await anyio.sleep(0.05)
        return bool(self.worker and self.worker.ready)

    def _check_vram(self) -> None:
        """The design doc's start-up guard: enough free VRAM for the models, or warn / refuse."""
        s = self.settings
        if s.backend == "draft" or s.vram_check == "off":
            return
        gpus = self.metrics().gpu_info
        free_gb = max(((g.vram_total_mb - g.vram_used_mb) / 1024 for g in gpus), default=0.0)
        if free_gb >= s.min_free_vram_gb:
            return
        problem = (f"{free_gb:.1f} GB of VRAM free, {s.min_free_vram_gb:g} GB wanted" if gpus
                   else "no NVIDIA GPU found (NVML)")
        if s.vram_check == "refuse":
            raise StartupError(f"refusing to start the {s.backend} backend: {problem} "
                               "(set ADGEN_VRAM_CHECK=warn to start anyway)")
        log.warning("%s backend: %s; models will be offloaded or the draft backend used", s.backend, problem)

    def _load_from_disk(self) -> None:
        for record in self.store.load_all():
            try:
                job = Job.from_record(record)
            except (KeyError, TypeError, ValueError):
                continue
            if job.status not in TERMINAL_STATES:
                job.status, job.error, job.message = "failed", "interrupted by restart", "interrupted by restart"
                self.store.write_record(job.id, job.record())
            self.jobs[job.id] = job

    # ---- worker supervision ------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            handle = self.worker
            if handle is None:  # being replaced by stop()
                await anyio.sleep(0.05)
                continue
            event = await anyio.to_thread.run_sync(handle.next_event, abandon_on_cancel=True)
            if handle is not self.worker:
                continue  # stale: that worker was replaced while we waited
            if event is None:
                if not handle.alive():
                    await self._on_worker_death(handle)
                continue
            self._handle(event)

    async def _on_worker_death(self, handle: WorkerHandle) -> None:
        cause = f"worker process died ({handle.describe_exit()})"
        log.error("%s; restarting it", cause)
        await anyio.to_thread.run_sync(handle.reap_group)
        if self.running:
            self._finish(self.jobs[self.running], "failed", f"{cause} while running this job")
        await self._replace_worker()

    async def _replace_worker(self) -> None:
        self.running = None
        self.worker_restarts += 1
        self.worker = await anyio.to_thread.run_sync(WorkerHandle, self.settings)
        self._dispatch()

    def _handle(self, ev: Event) -> None:
        if isinstance(ev, WorkerReady):
            assert self.worker is not None
            self.worker.ready, self.worker.info = True, ev.info
            self._dispatch()
            return
        job = self.jobs.get(ev.job_id)
        if job is None or job.status != "running":
            return  # a stopped or relabelled job: its late events change nothing
        now = time.monotonic()
        if isinstance(ev, StageStarted):
            job.plan, job.stage, job.stage_started = ev.plan, ev.stage, now
            job.stage_fraction, job.sub_step, job.message = 0.0, STAGE_LABELS[ev.stage], ev.message
        elif isinstance(ev, StageProgress):
            if ev.stage == job.stage:
                job.stage_fraction = max(job.stage_fraction, ev.fraction)
                job.sub_step = ev.sub_step
        elif isinstance(ev, StageFinished):
            job.done[ev.stage] = ev.seconds
            job.stage_fraction = 1.0
            self.stats.record(job.backend, job.width, job.height, ev.stage, ev.seconds)
        elif isinstance(ev, DesignNeeded):
            assert self._tg is not None
            job.sub_step = "html_design (asking the LLM)"
            self._tg.start_soon(self._design, ev, self.worker)
        elif isinstance(ev, JobFinished):
            info = dict(ev.info)
            live = info.pop("worker", None)
            if live and self.worker is not None:
                self.worker.info.update(live)  # cache contents, renderer launches: for get_resources
            info.pop("fatal", None)
            job.info.update(info)
            if "seed" in ev.info:
                job.params["seed"] = ev.info["seed"]
            self._finish(job, ev.status, ev.error)
            self.running = None
            self._dispatch()
            return
        self._refresh_progress(job, now)
        job.touch()

    async def _design(self, ev: DesignNeeded, handle: WorkerHandle | None) -> None:
        prompt = DesignPrompt(ev.system, ev.user, ev.max_tokens)
        answer = await self.designers.answer(prompt, self.samplers.get(ev.job_id))
        job = self.jobs.get(ev.job_id)
        if job is not None and answer.source != "none":
            job.message = f"Text layer designed by {answer.source.replace('_', ' ')}"
        if handle is self.worker and handle is not None and handle.alive():
            handle.commands.put(DesignAnswer(ev.job_id, answer.text, answer.source, answer.note))

    def _dispatch(self) -> None:
        if self.running is not None or self.worker is None or not self.worker.alive():
            return
        while self.queue:
            job = self.jobs[self.queue.popleft()]
            if job.status != "pending" or job.request is None:
                continue
            job.status, job.message = "running", "Starting..."
            job.started_mono = time.monotonic()
            job.plan = plan_stages(job.request)
            self.worker.stop_flag.value = b""
            self.worker.commands.put(
                RunJob(job.id, str(self.store.job_dir(job.id)), job.request.model_dump(), job.backend)
            )
            self.running = job.id
            self.store.write_record(job.id, job.record())
            job.touch()
            for waiting in self.queue:  # queue positions moved
                self.jobs[waiting].touch()
            return

    def _finish(self, job: Job, status: JobState, error: str | None) -> None:
        if job.status in TERMINAL_STATES:
            return  # a finished job is never relabelled
        now = time.monotonic()
        job.elapsed_final = job.elapsed(now)
        job.status, job.error = status, error
        job.stage = None
        self.samplers.pop(job.id, None)
        if status == "completed":
            job.progress, job.message = 100, "Done"
        else:
            job.message = error or status
        self.store.write_record(job.id, job.record())
        job.touch()
        self._prune()

    def _prune(self) -> None:
        records = [j.record() for j in self.jobs.values()]
        for job_id in self.store.prune(records, self.settings.keep_jobs, self.settings.keep_days * 86400):
            self.jobs.pop(job_id, None)

    # ---- requests ----------------------------------------------------------------------
    def _check_room(self) -> None:
        in_flight = sum(self.jobs[j].status == "pending" for j in self.queue) + (self.running is not None)
        if in_flight >= self.settings.queue_max:
            raise QueueFull(self.settings.queue_max, self.eta_until_free())

    async def submit(self, req: GenerateRequest, sampler: Sampler | None = None) -> JobAccepted:
        self._check_room()  # fail fast, before decoding anything
        font_family = await anyio.to_thread.run_sync(self._check_fonts, req.font_family, req.text_content)
        req = req.model_copy(update={"font_family": font_family})
        job_id = uuid.uuid4().hex
        await anyio.to_thread.run_sync(self._save_inputs, job_id, req)
        try:
            self._check_room()  # again: other submissions may have filled the queue while we decoded
        except QueueFull:
            self.store.remove(job_id)
            raise
        backend = "draft" if req.test_mode else self.default_backend()
        job = Job(
            id=job_id, params=req.public_parameters(), width=req.width, height=req.height,
            backend=backend, created_at=time.time(), request=req, plan=plan_stages(req),
        )
        self.jobs[job_id] = job
        if sampler is not None:
            self.samplers[job_id] = sampler
        self.store.write_record(job_id, job.record())
        self.queue.append(job_id)
        self._dispatch()
        return JobAccepted(job_id=job_id, status=job.status, queue_position=self._queue_position(job))

    def default_backend(self) -> str:
        """The backend the worker resolved (auto -> draft or diffusion), once it has said so."""
        if self.worker is not None and self.worker.ready:
            return str(self.worker.info.get("backend", {}).get("default", "draft"))
        return "draft" if self.settings.backend == "auto" else self.settings.backend

    def _check_fonts(self, value: str, text: str | None) -> str:
        """Normalise font_family to known families and make sure every character can be drawn."""
        try:
            family_list = self.fonts.check_family_list(value)
        except ValueError as exc:
            raise InputError(f"font_family: {exc}") from None
        if text:
            missing = self.fonts.missing_glyphs(text, [f.strip() for f in family_list.split(",")])
            if missing:
                shown = ", ".join(f"U+{ord(c):04X}" for c in missing[:8])
                raise InputError(f"text_content has characters no installed font can draw: {shown}")
        return family_list

    def _save_inputs(self, job_id: str, req: GenerateRequest) -> None:
        s = self.settings
        if req.start_step == 1:
            field, b64, path, name = "product_image", req.product_image, req.product_image_path, "product.png"
        else:
            field, b64, path, name = "step1_image", req.step1_image, req.step1_image_path, "step1.png"
        if b64 is not None:
            raw = decode_base64(b64, field, s.max_image_bytes)
        else:
            assert path is not None
            raw = read_confined(path, f"{field}_path", s.input_dirs, s.max_image_bytes)
        img = load_image(raw, field, s.max_image_pixels)
        if req.start_step == 2:
            img = img.convert("RGB").resize((req.width, req.height)) if img.size != (req.width, req.height) else img
        job_dir = self.store.create(job_id)
        save_png(img, job_dir / name)

    async def stop(self, job_id: str) -> StopResponse:
        job = self._get(job_id)
        if job.status in TERMINAL_STATES:
            return StopResponse(job_id=job_id, status=job.status, message=f"job already {job.status}; nothing to stop")
        if job.status == "pending":
            self.queue.remove(job_id)
            self._finish(job, "stopped", "stopped before it started")
            return StopResponse(job_id=job_id, status=job.status, message="removed from the queue")
        handle = self.worker
        assert handle is not None
        handle.stop_flag.value = job_id.encode()
        job.message = "Stopping at the next safe point..."
        job.touch()
        with anyio.move_on_after(self.settings.stop_grace_s):
            while job.status == "running":
                await job.changed.wait()
        if job.status == "running" and handle is self.worker:
            # The worker did not reach a safe point in time: replace it.
            log.warning("job %s did not stop within %.1fs; terminating the worker", job_id, self.settings.stop_grace_s)
            self.worker = None  # the pump ignores the dying handle from now on
            await anyio.to_thread.run_sync(handle.kill)
            self._finish(job, "stopped", f"worker terminated after a {self.settings.stop_grace_s:g} s grace period")
            await self._replace_worker()
        msg = "stopped" if job.status == "stopped" else f"job {job.status} before the stop took effect"
        return StopResponse(job_id=job_id, status=job.status, message=msg)

    async def wait_for_change(self, job_id: str, timeout: float) -> None:
        job = self._get(job_id)
        with anyio.move_on_after(timeout):
            await job.changed.wait()

    # ---- status ------------------------------------------------------------------------
    def _get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _expected(self, job: Job) -> dict[str, float]:
        return {s: self.stats.expected(job.backend, job.width, job.height, s) for s in job.plan}

    def _refresh_progress(self, job: Job, now: float) -> tuple[float | None, float | None]:
        """Update the job's monotonic progress; return (eta, step_eta) in seconds."""
        if job.status != "running":
            return None, None
        expected = self._expected(job)
        total = sum(expected.values()) or 1.0
        done = sum(expected[s] for s in job.done if s in expected)
        eta = sum(v for s, v in expected.items() if s not in job.done and s != job.stage)
        step_eta = None
        if job.stage and job.stage not in job.done:
            exp = expected.get(job.stage, 1.0)
            elapsed = now - job.stage_started
            # Time keeps progress moving inside long stages; reported steps move it faster.
            frac = max(job.stage_fraction, min(0.95, elapsed / exp))
            done += exp * frac
            step_eta = exp - elapsed
            eta += step_eta
        job.progress = max(job.progress, min(99, int(100 * done / total)))
        return eta, step_eta

    def _queue_position(self, job: Job) -> int | None:
        if job.status != "pending":
            return None
        pending = [j for j in self.queue if self.jobs[j].status == "pending"]
        return pending.index(job.id) if job.id in pending else None

    def eta_until_free(self) -> float:
        """Seconds until the last queued job would finish (Retry-After for a full queue)."""
        now = time.monotonic()
        total = 0.0
        if self.running:
            eta, _ = self._refresh_progress(self.jobs[self.running], now)
            total += max(0.0, eta or 0.0)
        for job_id in self.queue:
            total += sum(self._expected(self.jobs[job_id]).values())
        return max(1.0, total)

    def metrics(self) -> SystemMetrics:
        now = time.monotonic()
        if self._metrics is None or now - self._metrics[0] > 1.0:
            self._metrics = (now, system_metrics())
        return self._metrics[1]

    def status(self, job_id: str, results: ResultFormat = "uri", with_metrics: bool = True) -> StatusResponse:
        job = self._get(job_id)
        now = time.monotonic()
        eta, step_eta = self._refresh_progress(job, now)
        position = self._queue_position(job)
        if job.status == "pending":
            ahead = [self.jobs[j] for j in list(self.queue)[: position or 0]]
            eta = sum(sum(self._expected(j).values()) for j in [*ahead, job])
            if self.running:
                eta += max(0.0, self._refresh_progress(self.jobs[self.running], now)[0] or 0.0)
            message = f"Queued: {position} job(s) ahead" if position else "Queued: next in line"
        else:
            message = job.message
        if job.status == "completed":
            eta, step_eta = 0.0, 0.0
        sub = job.sub_step if job.status == "running" else None
        out: dict[str, str | None] = {}
        for key, name in RESULT_FILES.items():
            if self.store.artifact(job_id, name) is not None:
                out[key] = f"adgen://jobs/{job_id}/{name}" if results == "uri" else f"/jobs/{job_id}/{name}"
        if job.status in TERMINAL_STATES and "final_result" not in out:
            out.pop("step2_result", None)
        return StatusResponse(
            job_id=job_id, status=job.status, progress_percent=job.progress,
            current_step=step_of(job.stage) if job.stage and job.status == "running" else None,
            sub_step=sub, message=message, elapsed_sec=round(job.elapsed(now), 2),
            eta_seconds=None if eta is None else round(eta, 1),
            step_eta_seconds=None if step_eta is None else round(step_eta, 1),
            queue_position=position, error=job.error, backend=job.backend,
            designer=job.info.get("designer"), design_note=job.info.get("design_note") or None,
            system_metrics=self.metrics() if with_metrics else None, parameters=job.params, **out,
        )

    def list_jobs(self, limit: int = 50) -> list[StatusResponse]:
        ids = sorted(self.jobs, key=lambda j: self.jobs[j].created_at, reverse=True)[:limit]
        return [self.status(j, results="url", with_metrics=False) for j in ids]

    def health(self) -> HealthResponse:
        alive = bool(self.worker and self.worker.alive())
        gpu = bool(self.metrics().gpu_info)
        return HealthResponse(
            status="ok" if alive else "degraded", gpu_available=gpu, worker_alive=alive,
            backend=self.default_backend(), queue_length=len(self.queue), running_job=self.running,
        )

    def resources(self) -> ResourcesResponse:
        w = self.worker
        return ResourcesResponse(
            system_metrics=self.metrics(), backend=self.default_backend(), worker_alive=bool(w and w.alive()),
            worker_pid=w.process.pid if w else None, models=(w.info if w else {}),
        )
