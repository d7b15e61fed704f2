"""The seams of the job manager: what it needs from a queue, a job book and an executor.

Two implementations of each exist. ``local`` (the default, zero extra services): ``JobQueue``
(an in-process FIFO), ``JobBook`` (jobs in memory + job folders) and ``WorkerSupervisor``
(one worker subprocess). ``distributed`` (``ADGEN_QUEUE=redis://...``, pipeline/distributed):
``RedisQueue`` (a sorted set), ``RedisBook`` (records in Redis, files in an S3 bucket) and
``RemoteHosts`` (Dramatiq worker hosts; events back from Redis streams). The checks at the
bottom (and in pipeline/distributed/executor.py) make mypy prove that the classes fit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pipeline.config import Settings
from pipeline.jobs.job import Job
from pipeline.messages import WorkerState
from pipeline.schemas import JobState


class JobQueueLike(Protocol):
    """The waiting line (ids only), first in first out."""

    def push(self, job_id: str) -> None: ...

    def pop(self) -> str | None: ...

    def remove(self, job_id: str) -> bool: ...

    def position(self, job_id: str) -> int | None:
        """0 = next to run; None = not waiting."""
        ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[str]: ...


class JobRecords(Protocol):
    """Jobs and their status records: every change of outcome goes through ``finish``."""

    jobs: dict[str, Job]

    def get(self, job_id: str) -> Job: ...

    def add(self, job: Job) -> None: ...

    def save(self, job: Job) -> None: ...

    def load_from_disk(self) -> None: ...

    def finish(self, job: Job, status: JobState, error: str | None) -> bool: ...

    def newest(self, limit: int, completed_only: bool = False) -> list[Job]: ...

    def output_file(self, job_id: str) -> Path | None: ...


class Executor(Protocol):
    """What runs the manager's RunJobs and hands their events back (to the manager's ``_on_event``)."""

    async def start(self) -> None: ...

    async def pump(self) -> None:
        """Forever: deliver events (a local worker's queue, or the job streams of remote hosts)."""
        ...

    async def close(self) -> None: ...

    @property
    def ready(self) -> bool: ...

    @property
    def state(self) -> WorkerState | None: ...

    def alive(self) -> bool: ...


def _local_fits(settings: Settings) -> None:  # pragma: no cover - read by mypy only
    from pipeline.jobs.book import JobBook
    from pipeline.jobs.queue import JobQueue
    from pipeline.jobs.store import JobStore
    from pipeline.jobs.supervisor import WorkerSupervisor

    async def noop(cause: str) -> None:
        return None

    _q: JobQueueLike = JobQueue()
    _b: JobRecords = JobBook(settings, JobStore(settings.jobs_dir))
    _e: Executor = WorkerSupervisor(settings, lambda ev: None, noop)
