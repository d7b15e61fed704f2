"""The API side of distributed mode: a ``JobManager`` whose queue, book and executor are shared.

Jobs are checked and stored as in local mode, then their inputs go to the bucket and a
Dramatiq message to the worker hosts. No worker runs here. Each job's events come back
through its Redis stream (read by the executor, ``RemoteHosts.pump``, into the same ``_on_event``
as a local worker's), results are pulled from the bucket before a job reads as finished, and host
heartbeats are checked here, so a job whose host died is re-queued or failed, never left
running. Any replica can follow any job: unknown ids are looked up in Redis.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from dramatiq_abort import abort
from dramatiq_abort.middleware import AbortMode

from pipeline.config import Settings
from pipeline.distributed.bucket import Bucket
from pipeline.distributed.codec import JobStarted, encode_event
from pipeline.distributed.executor import RemoteHosts
from pipeline.distributed.state import RedisState
from pipeline.distributed.stats import RedisStageStats
from pipeline.jobs.book import JobBook, JobNotFound
from pipeline.jobs.health import StartupError
from pipeline.jobs.job import Job
from pipeline.jobs.manager import JobManager, QueueFull
from pipeline.jobs.status import build_status, result_links
from pipeline.jobs.store import ARTIFACTS, JobStore, result_file
from pipeline.jobs.supervisor import WorkerSupervisor
from pipeline.messages import DesignNeeded, Event, JobFinished, RunJob, WorkerState
from pipeline.schemas import TERMINAL_STATES, HealthResponse, ResourcesResponse, StatusResponse, StopResponse

log = logging.getLogger("adgen.distributed")


class RedisQueue:
    """Queue positions from the shared sorted set; hosts take jobs themselves (``pop`` gives nothing)."""

    def __init__(self, state: RedisState) -> None:
        self.state = state
        self.unsent: set[str] = set()  # queued by this replica, message not yet sent (inputs being stored)

    def push(self, job_id: str) -> None:
        self.state.add_pending(job_id)
        self.unsent.add(job_id)

    def pop(self) -> str | None:
        return None

    def remove(self, job_id: str) -> bool:
        self.unsent.discard(job_id)
        return self.state.remove_pending(job_id)

    def position(self, job_id: str) -> int | None:
        return self.state.position(job_id)

    def __len__(self) -> int:
        return self.state.pending_count()

    def __iter__(self) -> Iterator[str]:
        return iter(self.state.pending())


class RedisBook(JobBook):
    """Jobs in memory and job folders as in local mode, with every record also in Redis for other replicas."""

    def __init__(self, settings: Settings, store: JobStore, state: RedisState) -> None:
        super().__init__(settings, store)
        self.state = state
        self.on_adopt: Callable[[Job], None] = lambda job: None  # a job first seen here (not at start)

    def save(self, job: Job) -> None:
        super().save(job)
        self.state.save_record(job.id, job.record())

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is not None:
            return job
        try:
            record = self.state.record(job_id)
        except Exception:  # Redis away: this replica knows what it knows
            record = None
        if record is None:
            raise JobNotFound(job_id)
        return self._adopt(record)

    def newest(self, limit: int, completed_only: bool = False) -> list[Job]:
        """The cluster's newest jobs (from Redis), not only those this replica has seen: unknown ones are adopted
        (followed from their streams if unfinished; ``on_adopt`` fetches a finished one's results)."""
        try:
            records = self.state.newest_records(max(limit, self.settings.keep_jobs) if completed_only else limit,
                                                known=self.jobs.keys())
        except Exception:  # Redis away: this replica knows what it knows
            records = []
        oldest = time.time() - self.settings.keep_days * 86400  # older ones this replica prunes: not adopted again
        for record in records:
            if float(record.get("created_at") or 0) < oldest:
                continue
            try:
                self._adopt(record)
            except (KeyError, TypeError, ValueError):
                continue
        return super().newest(limit, completed_only)

    def _adopt(self, record: dict[str, Any]) -> Job:
        """A job another replica accepted (or this one before a restart): followed from its stream's start."""
        job = Job.from_record(record)
        if job.status not in TERMINAL_STATES:
            job.elapsed_final = None
            job.started_mono = time.monotonic() - float(record.get("elapsed") or 0.0)
        self.store.job_dir(job.id).mkdir(parents=True, exist_ok=True)
        self.jobs[job.id] = job
        self.on_adopt(job)
        return job

    def load_from_disk(self) -> None:
        """Records from Redis (the shared truth); jobs in flight go on: their hosts still run them."""
        for record in sorted(self.state.records(), key=lambda r: r.get("created_at", 0)):
            try:
                self._adopt(record)
            except (KeyError, TypeError, ValueError):
                continue
        self.prune()  # the cluster's finished jobs beyond ADGEN_KEEP_JOBS / KEEP_DAYS are not kept here


class _HostsView(WorkerSupervisor):
    """What the base manager reads of its worker (``state``: the backend and what its profile plans, e.g. one-pass)
    answered from the hosts' heartbeats. It is never started: no worker runs beside an API replica (no handle)."""

    def __init__(self, settings: Settings, remote: RemoteHosts) -> None:
        super().__init__(settings, lambda ev: None, _no_death)
        self.remote = remote

    @property
    def state(self) -> WorkerState | None:
        return self.remote.state


async def _no_death(cause: str) -> None:
    return None


class DistributedJobManager(JobManager):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        assert settings.queue
        self.state = RedisState(settings.queue)
        self.bucket = Bucket(settings)
        self.book = RedisBook(settings, self.store, self.state)
        self.book.on_adopt = self._adopted
        self.stats = RedisStageStats(self.state, writer=False)  # the hosts record; every replica reads the same
        self.jobs = self.book.jobs
        self.rqueue = RedisQueue(self.state)
        self.queue = self.rqueue
        # The executor: RunJobs to the worker hosts, their events back into _on_event.
        self.remote = RemoteHosts(settings, self.state, self.bucket, self._on_event, self._following,
                                  self.store.job_dir, self._files_arrived)
        self.worker = _HostsView(settings, self.remote)
        self._lost_since: dict[str, float] = {}  # jobs re-queued after a lost host, waiting for another
        self._loop_thread = threading.get_ident()

    # ---- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> JobManager:
        # Nothing renders here: Chromium, fonts and GPUs are the worker hosts' (their heartbeats carry their state).
        self.problems = []
        try:
            await anyio.to_thread.run_sync(self.book.load_from_disk)
            await self.remote.start()
        except Exception as exc:  # one line with the fix, not a traceback (mcp_server/__main__.py exits with it)
            raise StartupError(f"distributed mode: cannot reach Redis ({self.settings.queue}) or the bucket "
                               f"({self.settings.s3_endpoint or 'AWS S3'}/{self.settings.s3_bucket}): "
                               f"{type(exc).__name__}: {exc}") from exc
        self._loop_thread = threading.get_ident()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self.remote.pump)
        self._tg.start_soon(self._watch_hosts)
        self._tg.start_soon(self._fetch_missing_results)
        self._tg.start_soon(anyio.to_thread.run_sync, self.intake.warm_fonts)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        self._tg = None
        await self.remote.close()  # jobs in flight go on on their hosts; any replica (this one restarted) follows them

    def _files_arrived(self, job_id: str) -> None:
        """A stage's files are here: whoever follows the job reads its status again (new links, preview)."""
        if (job := self.jobs.get(job_id)) is not None:
            job.touch()

    def _following(self) -> list[str]:
        return [j.id for j in list(self.jobs.values()) if j.status not in TERMINAL_STATES]

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        with anyio.move_on_after(timeout):
            while not self.remote.ready:
                await anyio.sleep(0.2)
                await self.remote.refresh()
        return self.remote.ready

    # ---- sending -----------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Jobs of this replica whose inputs are written go to the bucket and the broker (hosts order them)."""
        if self._tg is None:
            return
        for job_id in list(self.rqueue.unsent):
            if job_id not in self._writing:
                self.rqueue.unsent.discard(job_id)
                self._tg.start_soon(self._send, job_id)

    async def _send(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.status != "pending" or job.request is None:
            return
        run = RunJob(job.id, "", job.request, job.backend, job.seed, job.plan)
        try:
            await anyio.to_thread.run_sync(self.remote.send, run)
        except Exception as exc:  # the bucket or Redis is away: this job fails with the reason, the API goes on
            log.exception("queueing job %s failed", job_id)
            self.rqueue.remove(job_id)
            self._finish(job, "failed", f"could not queue the job for the worker hosts: {type(exc).__name__}: {exc}")

    def _check_room(self) -> None:
        if len(self.queue) >= self.settings.queue_max:
            raise QueueFull(self.settings.queue_max, self.eta_until_free())

    # ---- events (RemoteHosts.pump hands them here, as a local worker's supervisor does) ----------------
    def _on_event(self, ev: Event | JobStarted) -> None:
        if isinstance(ev, JobStarted):
            self._started(ev)
            return
        job_id = getattr(ev, "job_id", "")
        if job_id in self._lost_since and (job := self.jobs.get(job_id)) is not None and job.status == "pending":
            # Its host was only slow to beat (an overloaded machine, a Redis hiccup): it still runs the job.
            self._lost_since.pop(job_id)
            job.status, job.message = "running", "Running (its worker host answered again)"
        super()._on_event(ev)

    def _started(self, ev: JobStarted) -> None:
        job = self.jobs.get(ev.job_id)
        if job is None or job.status in TERMINAL_STATES:
            return
        self._lost_since.pop(job.id, None)
        if ev.lost_hosts:
            note = (f"Re-queued after worker host {', '.join(ev.lost_hosts)} was lost; "
                    f"running again on {ev.host}")
            if note not in job.warnings:
                job.warnings.append(note)
        job.status, job.message = "running", f"Starting on worker host {ev.host}..."
        job.stage, job.stage_fraction, job.done, job.progress = None, 0.0, {}, 0
        job.started_mono, job.started_at = time.monotonic(), job.started_at or time.time()
        self.book.save(job)
        job.touch()
        for other in self.jobs.values():  # queue positions moved
            if other.status == "pending":
                other.touch()

    async def _design(self, ev: DesignNeeded) -> None:
        answer = await self.designers.answer(ev.prompt, self._samplers.get(ev.job_id))
        job = self.jobs.get(ev.job_id)
        if job is not None and answer.source != "none":
            job.message = f"Text layer designed by {answer.source.replace('_', ' ')}"
        data = json.dumps({"text": answer.text, "source": answer.source, "note": answer.note})
        await anyio.to_thread.run_sync(self.state.push_answer, ev.job_id, data)

    # ---- host loss ---------------------------------------------------------------------
    async def _watch_hosts(self) -> None:
        while True:
            await anyio.sleep(self.settings.host_heartbeat_s)
            try:
                await self._check_hosts()
            except Exception as exc:
                log.warning("checking worker hosts failed: %s", exc)

    async def _check_hosts(self) -> None:
        """Running jobs whose host stopped beating are re-queued (or failed after too many lost hosts)."""
        await self.remote.refresh()
        hosts = self.remote.hosts
        running = [j for j in list(self.jobs.values()) if j.status == "running"]
        infos = await anyio.to_thread.run_sync(lambda: {j.id: self.state.run_info(j.id) for j in running})
        limit = self.settings.max_lost_hosts
        for job in running:
            info = infos.get(job.id, {})
            host = info.get("host")
            if info.get("state") != "running" or not host or job.status != "running":
                continue
            if host in hosts:
                self._check_dropped(job, host, hosts[host], info)
                continue
            lost = await anyio.to_thread.run_sync(self.state.mark_lost, job.id, host, limit)
            if lost < 0:
                continue  # another host took it meanwhile
            log.warning("worker host %s lost while running job %s", host, job.id)
            if lost >= limit:
                names = (await anyio.to_thread.run_sync(self.state.run_info, job.id)).get("lost_hosts", host)
                self._fail_lost(job, f"gave up after {lost} worker hosts were lost while running this job "
                                     f"({', '.join(names.split())})")
                continue
            job.status, job.stage = "pending", None
            job.message = f"Re-queued: worker host {host} stopped responding while running this job"
            job.warnings.append(f"Worker host {host} was lost while running this job; it was re-queued")
            self._lost_since[job.id] = time.monotonic()
            self.book.save(job)
            job.touch()
        now = time.monotonic()
        for job_id, since in list(self._lost_since.items()):
            waiting = self.jobs.get(job_id)
            if waiting is None or waiting.status != "pending":
                self._lost_since.pop(job_id, None)
            elif now - since > self.settings.requeue_timeout_s:
                self._fail_lost(waiting, f"its worker host was lost and no other host took the job within "
                                     f"{self.settings.requeue_timeout_s:g} s")

    def _check_dropped(self, job: Job, host: str, beat: dict[str, Any], info: dict[str, str]) -> None:
        """A live host that has not been running this job for three beats dropped it without a word (its Redis
        connection failed while it reported the end, say): the job fails instead of running forever."""
        since = float(info.get("since") or 0)
        if beat.get("job") == job.id or time.time() - since < 3 * self.settings.host_heartbeat_s:
            return
        log.warning("worker host %s is alive but no longer runs job %s", host, job.id)
        self._fail_lost(job, f"worker host {host} stopped running this job without reporting its end")

    def _fail_lost(self, job: Job, reason: str) -> None:
        self._lost_since.pop(job.id, None)
        self.state.mark_done(job.id)  # a host that gets the message later skips it
        self.state.publish(job.id, encode_event(JobFinished(job.id, "failed", reason)))
        self._finish(job, "failed", reason)

    # ---- requests ----------------------------------------------------------------------
    async def stop(self, job_id: str) -> StopResponse:
        job = self.book.get(job_id)
        if job.status in TERMINAL_STATES:
            return StopResponse(job_id=job_id, status=job.status, message=f"job already {job.status}; nothing to stop")
        if await anyio.to_thread.run_sync(self.state.cancel_queued, job_id):
            # It never starts (hosts claim jobs through the same script); other replicas learn it from the stream.
            self.rqueue.unsent.discard(job_id)
            reason = "stopped before it started"
            await anyio.to_thread.run_sync(self.state.publish, job_id,
                                           encode_event(JobFinished(job_id, "stopped", reason)))
            self._finish(job, "stopped", reason)
            return StopResponse(job_id=job_id, status=job.status, message="removed from the queue")
        info = await anyio.to_thread.run_sync(self.state.run_info, job_id)
        grace = self.settings.stop_grace_s
        if info.get("message_id"):
            # dramatiq-abort: the host sees the request at once (its graceful stop flag), and after the grace period
            # the actor is interrupted and the host replaces its worker process (the hard stop).
            await anyio.to_thread.run_sync(lambda: abort(info["message_id"], middleware=self.remote.abortable,
                                                         mode=AbortMode.ABORT, abort_timeout=int(grace * 1000)))
        job.message = "Stopping at the next safe point..."
        job.touch()
        with anyio.move_on_after(grace + 3 * self.settings.host_heartbeat_s + 5):
            while job.status not in TERMINAL_STATES:
                await job.changed.wait()
        if job.status == "stopped":
            msg = "stopped"
        elif job.status in TERMINAL_STATES:
            msg = f"job {job.status} before the stop took effect"
        else:
            msg = "stop requested; the worker host has not confirmed it yet"
        return StopResponse(job_id=job_id, status=job.status, message=msg)

    def eta_until_free(self) -> float:
        waiting = sum(sum(j.expected.values()) for j in self.jobs.values() if j.status == "pending")
        return max(1.0, waiting / max(1, len(self.remote.hosts)))

    def status(self, job_id: str, results: Any = "uri", with_metrics: bool = True) -> StatusResponse:
        job = self.book.get(job_id)
        now = time.monotonic()
        position = self.queue.position(job_id) if job.status == "pending" else None
        eta = None
        if position is not None:  # the jobs ahead spread over the live hosts, then this one
            ahead = [self.jobs[j] for j in list(self.queue)[:position] if j in self.jobs]
            hosts = max(1, len(self.remote.hosts))
            eta = sum(sum(j.expected.values()) for j in ahead) / hosts + sum(job.expected.values())
        links = result_links(job_id, lambda name: self.store.has(job_id, name), results)
        st = build_status(job, now, queue_position=position, queued_eta=eta, links=links,
                          metrics=self.metrics() if with_metrics else None)
        # A path on one API replica's disk means nothing to a client of the cluster: results are given as URLs and
        # resource URIs (the delivered ad at download_url), never as server paths.
        update: dict[str, Any] = {"output_file": None, "results": [r.model_copy(update={"path": None})
                                                                  for r in st.results]}
        if st.download_url and self.settings.s3_presign_s > 0 and job.report.output_file:
            # Straight from the bucket (where the host put the delivered ad), not through this replica.
            update["download_url"] = self.bucket.presigned_url(
                job_id, f"output/{Path(job.report.output_file).name}", int(self.settings.s3_presign_s))
        if job_id in self._lost_since:
            update["message"] = job.message
        return st.model_copy(update=update)

    def artifact(self, job_id: str, name: str) -> Path | None:
        """A finished file, fetched from the bucket when this replica has not got it yet (after a restart)."""
        path = super().artifact(job_id, name)
        if path is not None or name not in ARTIFACTS:
            return path
        job = self.jobs.get(job_id)
        if job is None or job.status not in TERMINAL_STATES:
            return None
        rel = result_file(name) or name
        target = self.store.job_dir(job_id) / rel
        return target if self.bucket.get_file(job_id, rel, target) else None

    async def _fetch_missing_results(self) -> None:
        """After a restart on a fresh disk: the results of finished jobs, so status links and downloads work."""
        for job in self.book.newest(self.settings.keep_jobs, completed_only=True):
            await self._fetch_results(job)

    async def _fetch_results(self, job: Job) -> None:
        folder = self.store.job_dir(job.id)
        if (folder / "final.png").is_file():
            return
        try:
            await anyio.to_thread.run_sync(self.bucket.download_dir, job.id, folder)
            if job.report.output_file:
                finished = JobFinished(job.id, "completed", None, job.report)
                job.report = (await anyio.to_thread.run_sync(self.remote.localise, finished, folder)).report
        except Exception as exc:
            log.warning("fetching the results of job %s failed: %s", job.id, exc)
        job.touch()

    def _adopted(self, job: Job) -> None:
        """A job another replica accepted, first seen here (asked about, or in a listing): a finished one's
        results are fetched (its links follow), an unfinished one is followed by the pump from now on."""
        if self._tg is None:  # loading at start: the pump and the start-up fetch take them all
            return
        if threading.get_ident() != self._loop_thread:  # a worker thread (an edit's plan reads its parent)
            anyio.from_thread.run_sync(self._adopted, job)
            return
        if job.status == "completed":
            self._tg.start_soon(self._fetch_results, job)
        elif job.status not in TERMINAL_STATES:
            self.remote.wake()

    def health(self) -> HealthResponse:
        alive = self.remote.alive()
        return HealthResponse(
            status="ok" if alive else "degraded", gpu_available=any(h.get("gpu") for h in self.remote.hosts.values()),
            worker_alive=alive, backend=self.default_backend(), queue_length=len(self.queue),
            running_job=next((j.id for j in self.jobs.values() if j.status == "running"), None),
            problems=[] if alive else ["no worker host is alive (start adgen-worker; docs/deploy.md)"],
        )

    def resources(self) -> ResourcesResponse:
        res = super().resources()
        alive = self.remote.alive()
        return res.model_copy(update={
            "worker_alive": alive, "status": "ok" if alive else "degraded",
            "models": {"hosts": {name: info.get("state") for name, info in self.remote.hosts.items()}},
        })


def _fits(state: RedisState, settings: Settings, store: JobStore) -> None:  # pragma: no cover - read by mypy only
    from pipeline.jobs.interfaces import JobQueueLike, JobRecords

    _q: JobQueueLike = RedisQueue(state)
    _b: JobRecords = RedisBook(settings, store, state)
