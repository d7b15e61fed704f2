"""The job manager: the one owner of job state, and the only thing the protocol layer calls.

It composes small parts, each with one job: ``Intake`` (inputs into a job folder), the
``JobQueue`` (FIFO), the ``WorkerSupervisor`` (the worker process), the ``JobBook`` (jobs in
memory and on disk), ``progress`` and ``status`` (pure functions), ``StageStats`` (durations),
``MetricsCache`` and ``health`` (what the server reports about itself); ``WorkerEvents``
(dispatch.py) is its side of the conversation with the worker. It runs in the server
process and never blocks its event loop.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from pipeline import registry
from pipeline.config import Settings
from pipeline.fonts import FontCatalog
from pipeline.jobs.book import JobBook, JobNotFound
from pipeline.jobs.brandkits import BrandKitStore
from pipeline.jobs.designers import LLMDesigners, Sampler
from pipeline.jobs.dispatch import WorkerEvents
from pipeline.jobs.edits import plan_edit
from pipeline.jobs.health import (
    StartupError,
    check_vram,
    environment_problems,
    health_response,
    resources_response,
)
from pipeline.jobs.intake import CheckedInputs, Intake
from pipeline.jobs.interfaces import JobQueueLike
from pipeline.jobs.job import Job
from pipeline.jobs.metrics import MetricsCache
from pipeline.jobs.queue import JobQueue
from pipeline.jobs.stats import StageStats
from pipeline.jobs.status import ResultFormat, build_status, queue_eta, result_links
from pipeline.jobs.store import JobStore
from pipeline.jobs.supervisor import WorkerSupervisor
from pipeline.schemas import (
    TERMINAL_STATES,
    FontInfo,
    GenerateRequest,
    HealthResponse,
    JobAccepted,
    JobState,
    ResourcesResponse,
    StatusResponse,
    StopResponse,
    SystemMetrics,
)
from pipeline.units import base_key, expand_plan, stage_canvas

log = logging.getLogger("adgen.jobs")

__all__ = ["JobManager", "JobNotFound", "QueueFull", "StartupError"]


class QueueFull(RuntimeError):
    def __init__(self, limit: int, retry_after: float) -> None:
        super().__init__(f"the queue is full ({limit} jobs waiting); retry in about {int(retry_after)} s")
        self.retry_after = retry_after


class JobManager(WorkerEvents):
    def __new__(cls, settings: Settings) -> JobManager:
        # Selected by config: ADGEN_QUEUE=redis://... gives the distributed manager (pipeline/distributed), whose
        # queue, job book and executor live in Redis, an S3 bucket and worker hosts; callers stay the same.
        if cls is JobManager and settings.queue:
            from pipeline.distributed.manager import DistributedJobManager

            return super().__new__(DistributedJobManager)
        return super().__new__(cls)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore(settings.jobs_dir)
        self.stats = StageStats(settings.stats_path)
        self.fonts = FontCatalog(settings.fonts_dir)
        self.intake = Intake(settings, self.store, self.fonts)
        self.brand_kits = self.intake.brand_kits = BrandKitStore(settings.data_dir / "brand_kits", self.fonts, settings)
        self.book = JobBook(settings, self.store)
        self.jobs = self.book.jobs  # read by tests and the load harness
        self.queue: JobQueueLike = JobQueue()
        self.running: str | None = None
        self.worker = WorkerSupervisor(settings, self._on_event, self._on_worker_death)
        self.designers = LLMDesigners(
            settings.anthropic_model, settings.llm_timeout_s, settings.anthropic_api_key, settings.anthropic_base_url
        )
        self._samplers: dict[str, Sampler] = {}  # MCP sampling of tool calls still waiting on their job
        self._writing: set[str] = set()  # accepted jobs whose checked images are still being written
        self._tg: anyio.abc.TaskGroup | None = None
        # System metrics in a status are at most 1 s old (plus one collection); older than 5 s: collected inline.
        self._metrics = MetricsCache(max_age_s=1.0, stale_s=5.0)
        self.problems: list[str] = []  # found at start-up: what makes text-layer jobs fail, with the fix

    # ---- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> JobManager:
        check_vram(self.settings, self.metrics())
        self.problems = await anyio.to_thread.run_sync(environment_problems, self.settings, self.fonts.files)
        for problem in self.problems:
            log.warning("degraded: %s", problem)
        self.book.load_from_disk()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self.worker.start()
        self._tg.start_soon(self.worker.pump)
        self._tg.start_soon(anyio.to_thread.run_sync, self.intake.warm_fonts)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        self._tg = None
        await self.worker.close()
        for job in self.jobs.values():
            if job.status in ("pending", "running"):
                self._finish(job, "failed", "server shut down before the job finished")

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        with anyio.move_on_after(timeout):
            # The flag is the supervisor's (set by its pump); polling at start-up keeps it the only owner.
            while not self.worker.ready:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        return self.worker.ready

    def _finish(self, job: Job, status: JobState, error: str | None) -> None:
        if self.book.finish(job, status, error):
            self._samplers.pop(job.id, None)

    # ---- requests ----------------------------------------------------------------------
    def _check_room(self) -> None:
        in_flight = sum(self.jobs[j].status == "pending" for j in self.queue) + (self.running is not None)
        if in_flight >= self.settings.queue_max:
            raise QueueFull(self.settings.queue_max, self.eta_until_free())

    async def submit(
        self, req: GenerateRequest, sampler: Sampler | None = None, edit_note: str | None = None
    ) -> JobAccepted:
        """Check and store the inputs, fix seed, backend and plan, and queue the job."""
        self._check_room()  # fail fast, before decoding anything
        light = self.intake.is_light(req)
        if light:  # a small base64 photo: decoded right here, no trip to a thread (see Intake.is_light)
            req, intake = self.intake.check(req)
        else:
            req, intake = await anyio.to_thread.run_sync(self.intake.check, req)
        params = req.public_parameters()
        req = intake.request
        self._check_room()  # again: other submissions may have filled the queue while we decoded
        job_id = uuid.uuid4().hex
        if self.settings.backend == "auto" and not req.test_mode and self.worker.state is None:
            await self.wait_ready()  # only the worker can resolve "auto" (it owns torch and the GPU)
        backend = "draft" if req.test_mode else self.default_backend()
        seed = req.seed if req.seed is not None else secrets.randbelow(2**32)
        # A one-pass profile (the worker says which it runs) paints the scene in one stage: plan that, so
        # progress and ETA follow the stages that really run.
        info = self.worker.state.backend_info if self.worker.state is not None else {}
        one_pass = backend != "draft" and bool(info.get("one_pass"))
        plan = expand_plan(req, registry.plan_stages(req, one_pass))  # repeated per placement/variant (units.py)
        expected = {s: self.stats.expected(backend, *stage_canvas(req, s, (req.width, req.height)), base_key(s))
                    for s in plan}
        job = Job(
            id=job_id, params={**params, "seed": seed}, width=req.width, height=req.height,
            backend=backend, seed=seed, created_at=time.time(), plan=plan, expected=expected, request=req,
            parent_job_id=req.parent_job_id, warnings=intake.warnings, edit_note=edit_note,
        )
        self.book.add(job)
        if sampler is not None:
            self._samplers[job_id] = sampler
        if self.problems and any(base_key(s) == registry.RENDER.key for s in plan):
            # Fail now with the fix (e.g. install Chromium) rather than with a browser traceback later.
            self._finish(job, "failed", "; ".join(self.problems))
            return JobAccepted(job_id=job_id, status=job.status, queue_position=None)
        self._writing.add(job_id)
        self.queue.push(job_id)
        handle = self.worker.handle
        starts_now = self.running is None and handle is not None and handle.alive() and self.queue.position(job_id) == 0
        if light and not intake.images:  # only the upload's bytes (under 200 KB) to write: here, no thread
            await self._write_inputs(job, intake, in_thread=False)
        elif starts_now or self._tg is None:
            await self._write_inputs(job, intake)  # an idle worker takes it at once: answer "running", as always
        else:
            # It waits behind others anyway: its images (PNG encoding is most of an accept's work) are written
            # after the answer, and the job is handed to the worker only once they are on disk.
            self._tg.start_soon(self._write_inputs, job, intake)
        return JobAccepted(job_id=job_id, status=job.status, queue_position=self.queue.position(job_id))

    async def edit(self, job_id: str, changes: dict[str, Any], sampler: Sampler | None = None) -> JobAccepted:
        """A new job from a completed one with ``changes`` (edit_ad): as little redone as they allow."""
        plan = await anyio.to_thread.run_sync(plan_edit, self.book, self.store, job_id, changes)
        return await self.submit(plan.request, sampler, edit_note=plan.note)

    async def _write_inputs(self, job: Job, inputs: CheckedInputs, in_thread: bool = True) -> None:
        try:
            if in_thread:
                await anyio.to_thread.run_sync(self.intake.write_inputs, self.store.job_dir(job.id), inputs)
            else:
                self.intake.write_inputs(self.store.job_dir(job.id), inputs)
        except Exception as exc:  # a full disk, a removed folder: this job fails, the server goes on
            log.exception("writing the inputs of job %s failed", job.id)
            self.queue.remove(job.id)
            try:
                reason = getattr(exc, "strerror", None) or type(exc).__name__  # no server paths in the message
                self._finish(job, "failed", f"could not store the job's images on the server: {reason}")
            except OSError:  # its record cannot be written either: it is failed in memory
                job.touch()
        finally:
            self._writing.discard(job.id)
        self._dispatch()

    def default_backend(self) -> str:
        """The backend the worker resolved (auto -> draft or diffusion), once it has said so."""
        state = self.worker.state
        if state is not None:
            return state.default_backend
        return "draft" if self.settings.backend == "auto" else self.settings.backend

    async def stop(self, job_id: str) -> StopResponse:
        job = self.book.get(job_id)
        if job.status in TERMINAL_STATES:
            return StopResponse(job_id=job_id, status=job.status, message=f"job already {job.status}; nothing to stop")
        if job.status == "pending":
            self.queue.remove(job_id)
            self._finish(job, "stopped", "stopped before it started")
            return StopResponse(job_id=job_id, status=job.status, message="removed from the queue")
        handle = self.worker.handle
        if handle is not None:
            handle.request_stop(job_id)
        job.message = "Stopping at the next safe point..."
        job.touch()
        with anyio.move_on_after(self.settings.stop_grace_s):
            while job.status == "running":
                await job.changed.wait()
        if job.status == "running" and handle is self.worker.handle:
            # The worker did not reach a safe point in time: replace it.
            grace = self.settings.stop_grace_s
            log.warning("job %s did not stop within %.1fs; terminating the worker", job_id, grace)
            self._finish(job, "stopped", f"worker terminated after a {grace:g} s grace period")
            await self.worker.kill_and_replace(f"stop of job {job_id} overran its grace period")
        msg = "stopped" if job.status == "stopped" else f"job {job.status} before the stop took effect"
        return StopResponse(job_id=job_id, status=job.status, message=msg)

    async def wait_for_change(self, job_id: str, timeout: float) -> None:
        job = self.book.get(job_id)
        with anyio.move_on_after(timeout):
            await job.changed.wait()

    def attach_sampler(self, job_id: str, sampler: Sampler) -> None:
        """Let the job borrow the calling client's model (MCP sampling) while its call is open."""
        self._samplers[job_id] = sampler

    def detach_sampler(self, job_id: str, sampler: Sampler) -> None:
        if self._samplers.get(job_id) is sampler:
            del self._samplers[job_id]

    # ---- reading -----------------------------------------------------------------------
    def artifact(self, job_id: str, name: str) -> Path | None:
        """A finished file of a job (final.png, preview.jpg, ...), or None."""
        return self.store.artifact(job_id, name)

    def has_artifact(self, job_id: str, name: str) -> bool:
        """Whether the job has made that file (cached once seen: status polls stay off the disk)."""
        return self.store.has(job_id, name)

    def output_file(self, job_id: str) -> Path | None:
        """The delivered ad (format as asked) in the output folder, or None if there is none (any more)."""
        return self.book.output_file(job_id)

    def recent_results(self, limit: int = 20) -> list[StatusResponse]:
        """Completed jobs with a final image, newest first (for MCP resources/list)."""
        done = (self.status(j.id, with_metrics=False) for j in self.book.newest(len(self.jobs), completed_only=True))
        return [st for st in done if st.final_result][:limit]

    def list_fonts(self) -> tuple[FontInfo, ...]:
        return self.fonts.fonts()

    def eta_until_free(self) -> float:
        """Seconds until the last queued job would finish (Retry-After for a full queue)."""
        return max(1.0, queue_eta(self.jobs, list(self.queue), self.running, None, time.monotonic()))

    def metrics(self) -> SystemMetrics:
        """CPU/RAM/GPU figures at most about a second old (refreshed off the event loop while serving)."""
        return self._metrics.get(self._tg)

    def status(self, job_id: str, results: ResultFormat = "uri", with_metrics: bool = True) -> StatusResponse:
        job = self.book.get(job_id)
        now = time.monotonic()
        position = self.queue.position(job_id) if job.status == "pending" else None
        eta = None if position is None else queue_eta(self.jobs, list(self.queue)[:position], self.running, job, now)
        links = result_links(job_id, lambda name: self.store.has(job_id, name), results)
        return build_status(job, now, queue_position=position, queued_eta=eta, links=links,
                            metrics=self.metrics() if with_metrics else None)

    def list_jobs(self, limit: int = 50) -> list[StatusResponse]:
        return [self.status(j.id, results="url", with_metrics=False) for j in self.book.newest(limit)]

    def health(self) -> HealthResponse:
        return health_response(self.worker, self.problems, self.metrics(), self.default_backend(), len(self.queue),
                               self.running)

    def resources(self) -> ResourcesResponse:
        return resources_response(self.settings, self.worker, self.problems, self.metrics(), self.default_backend())
