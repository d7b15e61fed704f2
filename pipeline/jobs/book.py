"""The jobs the server knows: in memory for fast status polls, on disk (the store) for restarts.

Every change of a job's outcome goes through ``finish`` so a finished job is never relabelled
and its record on disk always matches what clients are told.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import Settings
from pipeline.jobs.job import Job
from pipeline.jobs.status import job_estimate
from pipeline.jobs.store import JobStore
from pipeline.schemas import TERMINAL_STATES, JobState

log = logging.getLogger("adgen.jobs")


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return f"no job with id {self.args[0]!r}"


class JobBook:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.jobs: dict[str, Job] = {}
        self._output_root: Path | None = None
        self._checked: dict[str, tuple[int, int, int, int]] = {}  # output files found inside it, by identity

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self.jobs.values()))

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def add(self, job: Job) -> None:
        self.store.create(job.id)
        self.jobs[job.id] = job
        self.save(job)

    def save(self, job: Job) -> None:
        self.store.write_record(job.id, job.record())

    def load_from_disk(self) -> None:
        """Jobs of earlier runs; those that were in flight when the server stopped are failed."""
        for record in self.store.load_all():
            try:
                job = Job.from_record(record)
            except (KeyError, TypeError, ValueError):
                continue
            if job.status not in TERMINAL_STATES:
                job.status, job.error, job.message = "failed", "interrupted by restart", "interrupted by restart"
                self.save(job)
            self.jobs[job.id] = job
        self.prune()

    def finish(self, job: Job, status: JobState, error: str | None) -> bool:
        """Mark a job finished (once: a finished job is never relabelled); False if it already was."""
        if job.status in TERMINAL_STATES:
            return False
        now = time.monotonic()
        est = job_estimate(job, now)
        job.elapsed_final = job.elapsed(now)
        job.status, job.error, job.stage = status, error, None
        if status == "completed":
            job.progress, job.message = 100, "Done"
        else:
            job.progress = max(job.progress, est.percent if est else 0)
            job.message = error or status
        try:
            self.save(job)
        except OSError as exc:  # its folder went away or the disk is full: finished in memory all the same
            log.warning("job %s: its final record could not be written (%s)", job.id, exc)
        job.touch()
        self.prune()
        return True

    def prune(self) -> None:
        # Only what pruning reads: a full record per job on every finish would cost O(jobs) JSON-ready dicts.
        records = [{"job_id": j.id, "status": j.status, "created_at": j.created_at} for j in self.jobs.values()]
        for job_id in self.store.prune(records, self.settings.keep_jobs, self.settings.keep_days * 86400):
            self.jobs.pop(job_id, None)

    def newest(self, limit: int, completed_only: bool = False) -> list[Job]:
        jobs = (j for j in self.jobs.values() if not completed_only or j.status == "completed")
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)[:limit]

    def output_file(self, job_id: str) -> Path | None:
        """The delivered ad (format as asked) in the output folder, or None if there is none (any more)."""
        job = self.jobs.get(job_id)
        if job is None or not job.report.output_file:
            return None
        path = job.report.output_file
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        # Only files inside the output folder: a record never makes the server serve other paths. A path that
        # now names another file (replaced, or a link to elsewhere) has another identity: resolved again.
        identity = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if self._checked.get(path) != identity:
            if self._output_root is None:  # the configured folder, resolved once (status polls ask on every call)
                self._output_root = self.settings.output_dir.expanduser().resolve()
            if not Path(path).resolve().is_relative_to(self._output_root):
                return None
            if len(self._checked) > 4096:  # jobs come and go: forget the old ones now and then
                self._checked.clear()
            self._checked[path] = identity
        return Path(path)
