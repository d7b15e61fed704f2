"""``adgen-worker``: a worker host. One Dramatiq consumer per GPU, each in front of today's worker.

Each consumer keeps one long-lived worker subprocess (pipeline/worker/main.py: warm models,
warm Chromium) across jobs, exactly as the local server does. Its Dramatiq actor is a thin
proxy: it claims the job (a cancelled job never starts; a job still marked running on another
host is a dead host's, counted as lost), fetches the inputs from the bucket, feeds the RunJob
to the worker, forwards its events to the job's Redis stream (uploading files before the
events that name them), and polls dramatiq-abort's flag: an abort request becomes the
worker's graceful stop flag, and when the grace period is over the interrupted actor kills
and replaces the worker (the hard stop). A heartbeat key with expiry says the host is alive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.distributed.bucket import Bucket
from pipeline.distributed.codec import JobStarted, decode_run, encode_event
from pipeline.distributed.state import RedisState
from pipeline.distributed.stats import RedisStageStats
from pipeline.jobs.supervisor import WorkerHandle
from pipeline.messages import (
    DesignAnswer,
    DesignNeeded,
    JobFinished,
    RunJob,
    StageFinished,
    WorkerExiting,
    WorkerReady,
    WorkerState,
)
from pipeline.priority import yield_the_cores
from pipeline.units import base_key, stage_canvas

log = logging.getLogger("adgen.host")

READY_FILE = "worker-ready"  # in the data folder: the startup probe's signal (docs/deploy.md)


class HostRunner:
    """One consumer's proxy to its worker subprocess (one job at a time: prefetch 1, one thread)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        assert settings.queue
        self.state = RedisState(settings.queue)
        self.bucket = Bucket(settings)
        self.stats = RedisStageStats(self.state, writer=True)
        self.jobs_dir = settings.data_dir / "host-jobs"
        self.abortable: Any = None  # the broker's Abortable middleware (set by consume)
        self.handle = WorkerHandle(settings)
        self.worker_state: WorkerState | None = None
        self.current: str | None = None
        self._closing = threading.Event()

    # ---- the worker subprocess -----------------------------------------------------------
    def wait_ready(self, timeout: float = 300.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.handle.next_event()
            if isinstance(ev, WorkerReady):
                self.handle.ready, self.worker_state = True, ev.state
                return True
            if ev is None and not self.handle.alive():
                return False
        return False

    def _replace_worker(self, cause: str) -> None:
        log.warning("replacing the worker process: %s", cause)
        self.handle.kill()
        self.handle = WorkerHandle(self.settings)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(Exception):
            self.state.forget_host(self.name)
        self.handle.shutdown()

    # ---- heartbeats ----------------------------------------------------------------------
    def beat(self) -> None:
        state = asdict(self.worker_state) if self.worker_state else None
        self.state.beat(self.name, {
            "host": self.name, "pid": os.getpid(), "job": self.current, "state": state,
            "default_backend": self.worker_state.default_backend if self.worker_state else None,
            "gpu": os.environ.get("CUDA_VISIBLE_DEVICES") or None,
        }, ttl_s=3 * self.settings.host_heartbeat_s)

    def beat_forever(self) -> None:
        while not self._closing.wait(self.settings.host_heartbeat_s):
            try:
                self.beat()
            except Exception as exc:  # Redis away for a moment: the next beat may reach it
                log.warning("heartbeat failed: %s", exc)

    # ---- the actor -------------------------------------------------------------------------
    def publish(self, ev: Any) -> None:
        self.state.publish(ev.job_id, encode_event(ev))

    def run(self, job_id: str, run: dict[str, Any]) -> None:
        """The Dramatiq actor: one job from claim to its JobFinished in the stream."""
        from dramatiq.middleware import TimeLimitExceeded
        from dramatiq_abort import Abort

        verdict, lost = self.state.claim(job_id, self.name, self.settings.max_lost_hosts)
        if verdict.startswith("skip"):
            log.info("job %s skipped (%s)", job_id, verdict)
            return
        if verdict == "gave_up":
            self.publish(JobFinished(job_id, "failed", f"gave up after {len(lost)} worker hosts were lost while "
                                                       f"running this job ({', '.join(lost)})"))
            return
        self.current = job_id
        folder = self.jobs_dir / job_id
        finished: JobFinished
        try:  # from here on a stop (dramatiq-abort's Abort) may land anywhere: the job still reports its end
            self.beat()  # the API sees this host busy with the job at once
            self.publish(JobStarted(job_id, self.name, tuple(lost)))
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            self.bucket.download_dir(job_id, folder)
            finished = self._drive(decode_run(run, str(folder)), folder)
        except Abort:
            grace = self.settings.stop_grace_s
            self._replace_worker(f"stop of job {job_id} overran its grace period")
            finished = JobFinished(job_id, "stopped", f"worker terminated after a {grace:g} s grace period")
        except TimeLimitExceeded:
            limit = self.settings.job_time_limit_s
            self._replace_worker(f"job {job_id} ran past the time limit")
            finished = JobFinished(job_id, "failed", f"ran past the time limit of {limit:g} s on {self.name}")
        except Exception as exc:
            log.exception("job %s failed on this host", job_id)
            finished = JobFinished(job_id, "failed", f"worker host {self.name}: {type(exc).__name__}: {exc}")
        try:
            self._upload_results(job_id, folder, finished)
        except Exception as exc:  # a job whose results are not in the bucket is not completed for anyone else
            log.exception("uploading the results of job %s failed", job_id)
            if finished.status == "completed":
                finished = JobFinished(job_id, "failed", f"worker host {self.name} could not store the results in "
                                                         f"the bucket: {type(exc).__name__}: {exc}", finished.report)
        finally:
            self.publish(finished)
            self.state.mark_done(job_id)
            self.current = None
            shutil.rmtree(folder, ignore_errors=True)  # the bucket holds it now

    def _drive(self, cmd: RunJob, folder: Path) -> JobFinished:
        """Feed one RunJob to the worker and forward its events until it reports the job finished."""
        from dramatiq_abort import abort_requested

        if not self.handle.alive():
            self._replace_worker(f"worker process died ({self.handle.describe_exit()}) between jobs")
        handle = self.handle
        handle.clear_stop()
        handle.send(cmd)
        sent = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
        stop_sent = asking = False
        while True:
            if not stop_sent and abort_requested(middleware=self.abortable) is not None:
                handle.request_stop(cmd.job_id)  # the graceful stop; the hard one is dramatiq-abort's Abort
                stop_sent = True
            ev = handle.next_event()
            if ev is None:
                if not handle.alive():
                    cause = f"worker process died ({handle.describe_exit()})"
                    self._replace_worker(cause)
                    return JobFinished(cmd.job_id, "failed", f"{cause} while running this job on {self.name}")
                if asking and (answer := self.state.pop_answer(cmd.job_id)) is not None:
                    data = json.loads(answer)
                    handle.send(DesignAnswer(cmd.job_id, data.get("text"), data.get("source", "none"),
                                             data.get("note", "")))
                    asking = False
                continue
            if self._forward(ev, cmd, folder, sent):
                return ev  # type: ignore[return-value]
            asking = asking or isinstance(ev, DesignNeeded)

    def _forward(self, ev: Any, cmd: RunJob, folder: Path, sent: dict[str, int]) -> bool:
        """One worker event: host state kept, the job's events published; True when it is the job's end."""
        if isinstance(ev, WorkerReady):
            self.worker_state = ev.state
        elif isinstance(ev, WorkerState):
            self.worker_state = ev
        elif isinstance(ev, WorkerExiting):
            log.error("worker exiting: %s", ev.reason)
        elif getattr(ev, "job_id", None) != cmd.job_id:
            return False
        elif isinstance(ev, JobFinished):
            return True
        else:
            if isinstance(ev, StageFinished):
                self.bucket.upload_dir(cmd.job_id, folder, sent)  # the files before the event naming them
                canvas = stage_canvas(cmd.request, ev.stage, (cmd.request.width, cmd.request.height))
                self.stats.record(cmd.backend, *canvas, base_key(ev.stage), ev.seconds)  # the cluster's ETAs
            self.publish(ev)
        return False

    def _upload_results(self, job_id: str, folder: Path, finished: JobFinished) -> None:
        """The job folder and the delivered ads (under output/), then the host's copies go."""
        self.bucket.upload_dir(job_id, folder)
        delivered = [finished.report.output_file, *(r.get("path") for r in finished.report.results)]
        for path in {p for p in delivered if p}:
            src = Path(path)
            if src.is_file():
                self.bucket.put_file(job_id, f"output/{src.name}", src)
                src.unlink(missing_ok=True)


def _host_name(settings: Settings, index: int | None) -> str:
    base = settings.worker_name or socket.gethostname()
    return base if index is None else f"{base}-gpu{index}"


def consume(settings: Settings, index: int | None = None) -> None:
    """One consumer: a Dramatiq worker with one thread and prefetch 1, in front of one worker subprocess."""
    import dramatiq

    from pipeline.distributed.broker import ACTOR, POLL_MS, QUEUE, make_broker

    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s host[%(process)d] %(levelname)s %(name)s %(message)s")
    name = _host_name(settings, index)
    broker, abortable = make_broker(settings)
    dramatiq.set_broker(broker)
    runner = HostRunner(settings, name)
    runner.abortable = abortable
    runner.bucket.ensure()
    if not runner.wait_ready():
        log.error("the worker process did not start")
        runner.close()
        sys.exit(1)
    dramatiq.actor(runner.run, actor_name=ACTOR, queue_name=QUEUE, broker=broker, max_retries=0,
                   time_limit=int(settings.job_time_limit_s * 1000), abortable=True)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=POLL_MS)
    worker.queue_prefetch = 1  # a busy consumer holds no queued job (another host would take it)
    runner.beat()
    threading.Thread(target=runner.beat_forever, name="heartbeat", daemon=True).start()
    worker.start()
    (settings.data_dir / READY_FILE).parent.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / READY_FILE).write_text(name)
    log.info("worker host %s consuming queue %r", name, QUEUE)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    # Stop taking jobs; the one running finishes (Kubernetes: terminationGracePeriodSeconds covers a job).
    log.info("worker host %s shutting down", name)
    worker.stop(timeout=int(settings.job_time_limit_s * 1000))
    runner.close()
    (settings.data_dir / READY_FILE).unlink(missing_ok=True)


def _gpus(arg: str | None) -> list[str]:
    """The GPUs to serve: --gpus, else CUDA_VISIBLE_DEVICES, else every GPU NVML sees (none: one CPU consumer)."""
    spec = arg if arg is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is not None:
        return [g.strip() for g in spec.split(",") if g.strip()]
    try:
        import pynvml

        pynvml.nvmlInit()
        return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:
        return []


def _consume_on_gpu(settings: Settings, index: int, gpu: str) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before torch loads, in this process and its worker
    gpu_settings = settings.model_copy(update={"data_dir": settings.data_dir / f"gpu{index}"})
    consume(gpu_settings, index)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="adgen-worker", description="A worker host of adgen's distributed mode.")
    parser.add_argument("--gpus", help="comma-separated GPU ids, one consumer each (default: all; none: one CPU "
                        "consumer)")
    parser.add_argument("--name", help="this host's name in statuses (default: ADGEN_WORKER_NAME or hostname)")
    args = parser.parse_args(argv)
    settings = Settings.from_env(**({"worker_name": args.name} if args.name else {}))
    if not settings.queue:
        parser.error("ADGEN_QUEUE=redis://... is not set (adgen-worker serves the distributed mode)")
    # A host's work is batch work, like the worker's: on a machine it shares with an API replica (the compose
    # file's one-machine deployment), polls, accepts and progress go first (Settings.worker_nice).
    yield_the_cores(settings.worker_nice)
    gpus = _gpus(args.gpus)
    if len(gpus) <= 1:
        if gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]
        consume(settings)
        return
    _supervise(settings, gpus)


def _supervise(settings: Settings, gpus: list[str]) -> None:
    """One consumer process per GPU; if one exits, the host stops whole (its orchestrator restarts it)."""
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=_consume_on_gpu, args=(settings, i, g), name=f"adgen-consumer-{g}")
                for i, g in enumerate(gpus)]
    for child in children:
        child.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = settings.data_dir / READY_FILE
    while not stop.wait(1.0):
        if not ready.is_file() and all((settings.data_dir / f"gpu{i}" / READY_FILE).is_file()
                                       for i in range(len(children))):
            ready.write_text(",".join(gpus))  # the startup probe's file: every GPU's consumer is ready
        if any(not c.is_alive() for c in children):
            log.error("a consumer exited; stopping the host so it is restarted whole")
            stop.set()
    for child in children:
        if child.is_alive() and child.pid:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join()
    ready.unlink(missing_ok=True)
    sys.exit(0 if all(c.exitcode == 0 for c in children) else 1)


if __name__ == "__main__":
    main()
