"""What the job manager does when its worker speaks: stage events into job state and statistics,
LLM design requests answered by the server's designers, and the next queued job handed over.

A part of ``JobManager`` (pipeline/jobs/manager.py) kept apart because it is the one conversation with
the worker; the distributed manager (pipeline/distributed/manager.py) overrides these same methods
for its remote hosts.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import anyio.abc
import anyio.to_thread

from pipeline import registry
from pipeline.jobs.book import JobBook
from pipeline.jobs.designers import LLMDesigners, Sampler
from pipeline.jobs.interfaces import JobQueueLike
from pipeline.jobs.job import Job
from pipeline.jobs.stats import StageStats
from pipeline.jobs.status import job_estimate
from pipeline.jobs.store import JobStore
from pipeline.jobs.supervisor import WorkerSupervisor
from pipeline.messages import (
    DesignAnswer,
    DesignNeeded,
    Event,
    JobFinished,
    RunJob,
    StageFinished,
    StageProgress,
    StageStarted,
    WorkerExiting,
    WorkerReady,
)
from pipeline.schemas import JobState
from pipeline.units import base_key, stage_canvas

log = logging.getLogger("adgen.jobs")


class WorkerEvents:
    """The manager's side of the conversation with its worker (mixed into ``JobManager``)."""

    jobs: dict[str, Job]
    running: str | None
    queue: JobQueueLike
    store: JobStore
    book: JobBook
    stats: StageStats
    worker: WorkerSupervisor
    designers: LLMDesigners
    _samplers: dict[str, Sampler]
    _writing: set[str]
    _tg: anyio.abc.TaskGroup | None

    def _finish(self, job: Job, status: JobState, error: str | None) -> None:
        raise NotImplementedError

    async def _on_worker_death(self, cause: str) -> None:
        if self.running:
            self._finish(self.jobs[self.running], "failed", f"{cause} while running this job")
        self.running = None

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, WorkerReady):
            self._dispatch()
            return
        if isinstance(ev, WorkerExiting):
            log.error("worker exiting: %s", ev.reason)
            return
        job = self.jobs.get(getattr(ev, "job_id", ""))
        if job is None or job.status != "running":
            return  # a stopped or relabelled job: its late events change nothing
        now = time.monotonic()
        if isinstance(ev, StageStarted | StageProgress | StageFinished):
            if (seconds := job.apply_stage_event(ev, now)) is not None:
                canvas = stage_canvas(job.request, ev.stage, (job.width, job.height))
                self._record_stats(job.backend, *canvas, base_key(ev.stage), seconds)
        elif isinstance(ev, DesignNeeded):
            assert self._tg is not None
            job.sub_step = f"{registry.DESIGN.label} (asking the LLM)"
            self._tg.start_soon(self._design, ev)
        elif isinstance(ev, JobFinished):
            job.report = ev.report
            self._finish(job, ev.status, ev.error)
            self.running = None
            self._dispatch()
            return
        if est := job_estimate(job, now):
            job.progress = max(job.progress, est.percent)
        job.touch()

    def _record_stats(self, backend: str, width: int, height: int, stage: str, seconds: float) -> None:
        """A stage's time into the shared statistics, in a thread: the update locks, reads and replaces a file
        (~1 ms, several under load), which on the event loop would hold up every call in flight."""
        args = (backend, width, height, stage, seconds)
        if self._tg is None:
            self.stats.record(*args)
        else:
            self._tg.start_soon(partial(anyio.to_thread.run_sync, self.stats.record, *args))

    async def _design(self, ev: DesignNeeded) -> None:
        handle = self.worker.handle
        answer = await self.designers.answer(ev.prompt, self._samplers.get(ev.job_id))
        job = self.jobs.get(ev.job_id)
        if job is not None and answer.source != "none":
            job.message = f"Text layer designed by {answer.source.replace('_', ' ')}"
        if handle is not None and handle is self.worker.handle and handle.alive():
            handle.send(DesignAnswer(ev.job_id, answer.text, answer.source, answer.note))

    def _dispatch(self) -> None:
        handle = self.worker.handle
        if self.running is not None or handle is None or not handle.alive():
            return  # (a starting worker buffers the command until it is ready)
        while (job_id := next(iter(self.queue), None)) is not None:
            job = self.jobs[job_id]
            if job.status == "pending" and job.request is not None and job_id in self._writing:
                return  # its photo is still being written (then this runs again); nothing overtakes it
            self.queue.pop()
            if job.status != "pending" or job.request is None:
                continue
            job.status, job.message = "running", "Starting..."
            job.started_mono, job.started_at = time.monotonic(), time.time()
            handle.clear_stop()
            handle.send(RunJob(job.id, str(self.store.job_dir(job.id)), job.request, job.backend, job.seed, job.plan))
            self.running = job.id
            try:
                self.book.save(job)
            except OSError as exc:  # its folder went away or the disk is full: the job runs (or fails) anyway
                log.warning("job %s: its record could not be written (%s)", job.id, exc)
            job.touch()
            for waiting in self.queue:  # queue positions moved
                self.jobs[waiting].touch()
            return
