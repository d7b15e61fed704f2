"""Faults (browser killed mid-flight, clients that vanish) and the HTTP security guards."""

from __future__ import annotations

import os
import signal
import time

import anyio
import httpx
import psutil
import pytest
from mcp import Client

from pipeline.config import Settings
from pipeline.jobs import JobManager
from pipeline.schemas import GenerateRequest
from tests.helpers import READY_S, wait_for_job, wait_until

pytestmark = pytest.mark.anyio


def _chromium_pids(worker_pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(worker_pid).children(recursive=True) if "chrom" in p.name().lower()]
    except psutil.NoSuchProcess:
        return []


async def _done(m: JobManager, job_id: str) -> str:
    return await wait_for_job(m, job_id)


async def test_chromium_killed_is_relaunched(settings: Settings, product_b64: str) -> None:
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        first = await m.submit(GenerateRequest(product_image=product_b64, text_content="before"))
        assert await _done(m, first.job_id) == "completed"
        pids = _chromium_pids(m.worker.handle.pid)
        assert pids, "the warm browser should be running"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        second = await m.submit(GenerateRequest(product_image=product_b64, text_content="after the kill"))
        assert await _done(m, second.job_id) == "completed"
        assert m.resources().models["renderer_launches"] >= 2
        assert set(_chromium_pids(m.worker.handle.pid)).isdisjoint(pids)


async def test_chromium_killed_mid_render_is_relaunched(tmp_path, product_b64: str) -> None:
    settings = Settings(data_dir=tmp_path / "d", worker_hooks="tests.faults:chromium@render")
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        job = await m.submit(GenerateRequest(product_image=product_b64, text_content="mid-render"))
        assert await _done(m, job.job_id) == "completed"
        assert m.resources().models["renderer_launches"] == 2  # the killed browser was replaced once
        layer = m.store.artifact(job.job_id, "text.png")
        assert layer is not None and layer.stat().st_size > 1000


async def test_http_client_that_disconnects_mid_wait(http_server_factory, product_b64: str) -> None:
    srv = http_server_factory("streamable-http")
    with anyio.move_on_after(0.5):  # the client goes away while generate_ad is still waiting
        async with Client(srv.base + "/mcp", mode="legacy") as client:
            await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "bye"})
    jobs = httpx.get(srv.base + "/jobs").json()
    assert len(jobs) == 1
    job_id = jobs[0]["job_id"]
    for _ in range(100):
        st = httpx.get(f"{srv.base}/status/{job_id}").json()
        if st["status"] != "running" and st["status"] != "pending":
            break
        time.sleep(0.1)
    assert st["status"] == "completed"  # the job went on and stays queryable
    async with Client(srv.base + "/mcp", mode="legacy") as client:
        again = await client.call_tool("get_status", {"job_id": job_id})
    assert again.structured_content["final_result"].endswith("final.png")


async def test_bearer_token_guards_mcp_rest_and_dashboard(http_server_factory) -> None:
    srv = http_server_factory("streamable-http", ADGEN_TOKEN="s3cret-token")
    async with httpx.AsyncClient(base_url=srv.base) as http:
        assert (await http.get("/health")).status_code == 200  # open for container health checks
        for path in ("/resources", "/fonts", "/jobs", "/dashboard", "/openapi.json", "/status/" + "0" * 32):
            r = await http.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
        assert (await http.post("/generate", json={})).status_code == 401
        assert (await http.get("/resources", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await http.get("/resources", headers={"Authorization": "Bearer s3cret-token"})).status_code == 200
        assert (await http.get("/dashboard?token=s3cret-token")).status_code == 200
        r = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                            headers={"accept": "application/json, text/event-stream"})
        assert r.status_code == 401
    with pytest.raises(Exception):  # noqa: B017 (the SDK's client raises different types for a 401)
        async with Client(srv.base + "/mcp", mode="legacy") as client:
            await client.list_tools()
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http_client = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret-token"}, timeout=30)
    async with Client(streamable_http_client(srv.base + "/mcp", http_client=http_client), mode="legacy") as client:
        assert "generate_ad" in {t.name for t in (await client.list_tools()).tools}


async def test_loopback_bind_and_dns_rebinding_protection(http_server_factory) -> None:
    srv = http_server_factory("streamable-http")
    listening = {c.laddr.ip for c in psutil.Process(srv.proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}
    async with httpx.AsyncClient(base_url=srv.base) as http:
        for path in ("/resources", "/dashboard", "/mcp"):
            r = await http.get(path, headers={"Host": "evil.example:8000"})
            assert r.status_code == 421, path
        ok = await http.get("/resources", headers={"Host": f"localhost:{srv.port}"})
        assert ok.status_code == 200


async def test_killed_server_leaves_no_worker_or_browser_behind(http_server_factory) -> None:
    srv = http_server_factory("streamable-http")
    server = psutil.Process(srv.proc.pid)

    def name(p: psutil.Process) -> str:
        try:
            return p.name()
        except psutil.NoSuchProcess:  # a short-lived helper of the browser, gone since the listing
            return ""

    def family_with_browser() -> list[psutil.Process] | None:
        family = server.children(recursive=True)
        return family if any("chrom" in name(p).lower() for p in family) else None

    # The worker warms its browser up after /health first answers.
    family = await wait_until(family_with_browser, 30, "the worker's browser to start", interval=0.2)
    server.kill()  # no clean shutdown at all

    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def all_gone() -> bool:
        return not any(alive(p) for p in family)

    await wait_until(all_gone, 15, "the worker and its browser to exit", interval=0.2)
