"""The distributed executor: RunJobs go to the worker hosts, their events come back from Redis.

It plays the part ``WorkerSupervisor`` plays in local mode (pipeline/jobs/interfaces.py,
``Executor``): ``send`` stores a job's inputs in the bucket and queues its Dramatiq message;
``pump`` reads the event streams of the jobs the manager follows and hands each event to the
manager's ``_on_event``; the files a stage names are fetched from the bucket beside the stream,
and a job's end is handed on once its files are here. ``ready``
and ``state`` come from the hosts' heartbeats.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from pipeline.config import Settings
from pipeline.distributed.broker import job_message, make_broker
from pipeline.distributed.bucket import Bucket
from pipeline.distributed.codec import decode_event, encode_run
from pipeline.distributed.state import RedisState
from pipeline.messages import JobFinished, RunJob, StageFinished, WorkerState

log = logging.getLogger("adgen.distributed")

FOLLOW_BLOCK_MS = 200  # a blocking read of the streams ends after this (or at once, woken: ``wake``)


class RemoteHosts:
    def __init__(self, settings: Settings, state: RedisState, bucket: Bucket, on_event: Callable[[Any], None],
                 following: Callable[[], list[str]], job_dir: Callable[[str], Path],
                 on_files: Callable[[str], None] = lambda job_id: None) -> None:
        self.settings = settings
        self.redis = state
        self.bucket = bucket
        self._on_event = on_event
        self._following = following  # the ids whose streams to read (the manager's unfinished jobs)
        self._job_dir = job_dir
        self._on_files = on_files  # a stage's files arrived (status links, previews follow)
        self.broker, self.abortable = make_broker(settings)
        self.hosts: dict[str, dict[str, Any]] = {}  # live worker hosts (name -> heartbeat), refreshed by refresh()
        self._cursors: dict[str, str] = {}  # job id -> last stream entry handed on
        self._locks: dict[str, anyio.Lock] = {}  # job id -> held while its files are fetched (one fetch at a time)
        self._finishing: set[str] = set()  # JobFinished read, its files being fetched
        self._replica = uuid.uuid4().hex[:12]  # this replica's wake-up stream (its own: read from its start)
        self._wake_cursor = "0"

    # ---- the Executor protocol ---------------------------------------------------------
    async def start(self) -> None:
        await anyio.to_thread.run_sync(self.bucket.ensure)
        await self.refresh()

    async def close(self) -> None:
        return None  # jobs in flight go on on their hosts; any replica (this one restarted) follows them

    @property
    def ready(self) -> bool:
        return bool(self.hosts)

    @property
    def state(self) -> WorkerState | None:
        """A live host's worker state (the backend it resolved), for the manager's default backend."""
        for info in self.hosts.values():
            st = info.get("state")
            if isinstance(st, dict):
                try:
                    return WorkerState(**st)
                except TypeError:
                    continue
        return None

    def alive(self) -> bool:
        return bool(self.hosts)

    async def refresh(self) -> None:
        self.hosts = await anyio.to_thread.run_sync(self.redis.hosts)

    # ---- sending -----------------------------------------------------------------------
    def send(self, run: RunJob) -> None:
        """Inputs to the bucket, then the message (its id recorded first: what a stop's abort names). Blocking."""
        message = job_message(run.job_id, encode_run(run), self.settings)
        self.bucket.upload_dir(run.job_id, self._job_dir(run.job_id))
        self.redis.set_message_id(run.job_id, message.message_id)
        self.broker.enqueue(message)
        self.wake()

    def wake(self) -> None:
        """A job to follow: the pump's blocking read ends now and the next one includes it. Blocking."""
        try:
            self.redis.wake(self._replica)
        except Exception as exc:  # the pump's next read (at most FOLLOW_BLOCK_MS away) includes it anyway
            log.warning("waking the event pump failed: %s", exc)

    # ---- events ------------------------------------------------------------------------
    async def pump(self) -> None:
        """Forever: the followed jobs' streams, each event handed on in order, never waiting on the bucket.

        A stage's files are fetched beside the stream (one job's fetches in turn, ``on_files`` after each), so
        progress events, this job's and every other's, are not held behind downloads; only a JobFinished waits
        for its job's files (results are here before a job reads as finished), and only its own job waits."""
        async with anyio.create_task_group() as tg:
            while True:
                following = self._following()
                cursors = {j: self._cursors.get(j, "0") for j in following}
                self._cursors = {k: v for k, v in self._cursors.items() if k in cursors}  # finished: not read again
                self._locks = {k: v for k, v in self._locks.items() if k in cursors or v.locked()}
                wake = (self._replica, self._wake_cursor)
                try:
                    entries = await anyio.to_thread.run_sync(self.redis.read_events, cursors, FOLLOW_BLOCK_MS,
                                                             wake, abandon_on_cancel=True)
                except Exception as exc:  # Redis restarting: try again shortly
                    log.warning("reading job events failed: %s", exc)
                    await anyio.sleep(1.0)
                    continue
                for job_id, entry_id, text in entries:
                    if not job_id:  # a wake-up: the set of jobs to follow changed
                        self._wake_cursor = entry_id
                        continue
                    self._cursors[job_id] = entry_id
                    try:
                        ev = decode_event(text)
                    except (ValueError, TypeError, KeyError) as exc:
                        log.warning("ignoring a malformed event of job %s: %s", job_id, exc)
                        continue
                    if isinstance(ev, JobFinished):
                        self._finishing.add(job_id)
                        tg.start_soon(self._finish_with_files, ev)
                    elif job_id not in self._finishing:  # (a duplicate after the end changes nothing)
                        self._on_event(ev)
                        if isinstance(ev, StageFinished):
                            tg.start_soon(self._fetch, job_id)

    def _lock(self, job_id: str) -> anyio.Lock:
        return self._locks.setdefault(job_id, anyio.Lock())

    async def _fetch(self, job_id: str) -> None:
        """A stage's new files, after the event naming them was applied; the manager hears when they are here."""
        async with self._lock(job_id):
            try:
                await anyio.to_thread.run_sync(self.bucket.download_dir, job_id, self._job_dir(job_id))
            except Exception as exc:
                log.warning("fetching the files of job %s failed: %s", job_id, exc)
                return
        self._on_files(job_id)

    async def _finish_with_files(self, ev: JobFinished) -> None:
        try:
            self._on_event(await self.pull_files(ev))
        finally:
            self._finishing.discard(ev.job_id)

    async def pull_files(self, ev: JobFinished) -> JobFinished:
        """The job's files from the bucket (after any fetch of it under way), before its end is applied."""
        folder = self._job_dir(ev.job_id)
        async with self._lock(ev.job_id):
            try:
                await anyio.to_thread.run_sync(self.bucket.download_dir, ev.job_id, folder)
            except Exception as exc:
                log.warning("fetching the files of job %s failed: %s", ev.job_id, exc)
            return await anyio.to_thread.run_sync(self.localise, ev, folder)

    def localise(self, ev: JobFinished, folder: Path) -> JobFinished:
        """The delivered files (uploaded by the host under output/) copied into this replica's output folder,
        and the report pointed at them (the status's output_file, /jobs/<id>/download)."""
        out_root = self.settings.output_dir.expanduser()

        def local(path: str | None) -> str | None:
            if not path:
                return None
            src = folder / "output" / Path(path).name
            if not src.is_file():
                return None
            out_root.mkdir(parents=True, exist_ok=True)
            dst = out_root / src.name
            if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
                shutil.copyfile(src, dst)
            return str(dst.resolve())

        results = tuple({**r, "path": local(r.get("path"))} for r in ev.report.results)
        return replace(ev, report=replace(ev.report, output_file=local(ev.report.output_file), results=results))


def _fits(hosts: RemoteHosts) -> None:  # pragma: no cover - read by mypy only
    from pipeline.jobs.interfaces import Executor

    _e: Executor = hosts
