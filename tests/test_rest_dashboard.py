"""REST beside MCP on one HTTP server: same schema, OpenAPI, the dashboard in a real browser."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from mcp import Client

from pipeline.config import Settings
from pipeline.jobs import Job, JobManager, StartupError
from pipeline.jobs.store import JobStore
from tests.conftest import ARTIFACTS
from tests.helpers import READY_S, wait_until

pytestmark = pytest.mark.anyio


async def test_rest_and_mcp_return_the_same_status(http_server_factory, product_b64: str) -> None:
    srv = http_server_factory("streamable-http")
    async with httpx.AsyncClient(base_url=srv.base) as http:
        body = {"product_image": product_b64, "text_content": "같은 상태"}
        job_id = (await http.post("/generate", json=body)).json()["job_id"]

        async def finished() -> dict | None:
            st = (await http.get(f"/status/{job_id}")).json()
            return st if st["status"] in ("completed", "failed") else None

        rest = await wait_until(finished, 60, "the job to finish", interval=0.1)
        assert rest["status"] == "completed", rest
    async with Client(f"{srv.base}/mcp", mode="legacy") as client:
        mcp = (await client.call_tool("get_status", {"job_id": job_id, "include_preview": False})).structured_content
    assert set(rest) == set(mcp)
    for key in rest:
        if key.endswith("_result") and rest[key]:
            assert rest[key] == f"/jobs/{job_id}/{mcp[key].rsplit('/', 1)[-1]}"
        elif key == "download_url" and rest[key]:
            assert mcp[key].endswith(rest[key])  # absolute over MCP (clients need a full URL), a path over REST
        elif key == "results":  # the same items; each image a server path over REST, a resource URI over MCP
            assert len(rest[key]) == len(mcp[key]) == 1
            for r, m in zip(rest[key], mcp[key], strict=True):
                assert r["uri"] == f"/jobs/{job_id}/{m['uri'].rsplit('/', 1)[-1]}"
                assert {k: v for k, v in r.items() if k != "uri"} == {k: v for k, v in m.items() if k != "uri"}
        elif key not in ("system_metrics", "elapsed_sec"):
            assert rest[key] == mcp[key], key


async def test_openapi_document(http_server_factory) -> None:
    srv = http_server_factory("streamable-http")
    doc = httpx.get(srv.base + "/openapi.json").json()
    assert doc["openapi"].startswith("3.") and {"/generate", "/status/{job_id}", "/stop/{job_id}", "/health",
                                                 "/fonts", "/resources", "/dashboard"} <= set(doc["paths"])
    req = doc["components"]["schemas"]["GenerateRequest"]
    assert req["properties"]["strength"]["maximum"] == 1.0
    assert "503" in doc["paths"]["/generate"]["post"]["responses"]


async def test_full_queue_is_503_with_retry_after(http_server_factory, product_b64: str) -> None:
    srv = http_server_factory("streamable-http", ADGEN_QUEUE_MAX="2")
    async with httpx.AsyncClient(base_url=srv.base) as http:
        codes = [(await http.post("/generate", json={"product_image": product_b64, "text_content": str(i)}))
                 for i in range(4)]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    full = codes[2]
    assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1 and "queue is full" in full.json()["detail"]


async def test_dashboard_shows_running_progress_and_finished_image(http_server_factory, product_b64: str) -> None:
    from playwright.async_api import async_playwright

    srv = http_server_factory("streamable-http")
    async with httpx.AsyncClient(base_url=srv.base) as http:
        for i in range(6):  # a queue, so that one job is running while the page looks
            r = await http.post("/generate", json={"product_image": product_b64, "text_content": f"대시보드 {i}"})
            assert r.status_code == 200
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=Settings().chromium_path, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        page = await browser.new_page(viewport={"width": 1100, "height": 900})
        await page.goto(srv.base + "/dashboard")
        running = page.locator('.job[data-status="running"] .progress').first
        await running.wait_for(timeout=20_000)
        assert (await running.inner_text()).endswith("%")
        final = page.locator('.job[data-status="completed"] img[data-kind="final"]').first
        await final.wait_for(timeout=60_000)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('img[data-kind=final]')].some(i => i.complete && i.naturalWidth > 0)",
            timeout=20_000)
        assert "CPU" in await page.locator("#metrics").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        await browser.close()


def test_retention_by_count_and_age(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    now = time.time()
    records = []
    for i, age_days in enumerate([0, 1, 2, 40]):
        job = Job(id=f"{i:032x}", params={}, width=256, height=256, backend="draft", seed=1,
                  created_at=now - age_days * 86400, plan=(), expected={}, status="completed")
        store.create(job.id)
        records.append(job.record())
    running = Job(id="f" * 32, params={}, width=256, height=256, backend="draft", seed=1,
                  created_at=now - 99 * 86400, plan=(), expected={}, status="running")
    store.create(running.id)
    records.append(running.record())
    removed = store.prune(records, keep=2, max_age_s=30 * 86400)
    assert sorted(removed) == [f"{2:032x}", f"{3:032x}"]  # third newest (count) and the 40-day-old one (age)
    assert (tmp_path / ("f" * 32)).exists()  # unfinished jobs are never pruned


async def test_vram_guard_refuses_or_warns(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="no NVIDIA GPU"):
        async with JobManager(Settings(data_dir=tmp_path / "a", backend="diffusion", vram_check="refuse")):
            pass
    async with JobManager(Settings(data_dir=tmp_path / "b", backend="draft", vram_check="refuse")) as m:
        assert await m.wait_ready(READY_S)  # the draft backend needs no GPU
