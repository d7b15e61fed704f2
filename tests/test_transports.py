"""The server as users run it: a real subprocess over stdio, streamable HTTP and SSE."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client

from tests.conftest import REPO
from tests.test_quiet_replies import call, open_session

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _run_job(client: Client, product_b64: str, copy: str) -> dict:
    progress: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    result = await client.call_tool(
        "generate_ad", {"product_image": product_b64, "text_content": copy, "seed": 5}, progress_callback=on_progress
    )
    assert not result.is_error, result.content
    assert progress and progress == sorted(set(progress)) and progress[-1] == 100
    st = result.structured_content
    assert st["status"] == "completed"
    blob = (await client.read_resource(st["final_result"])).contents[0].blob
    assert base64.b64decode(blob)[:8] == b"\x89PNG\r\n\x1a\n"
    return st


async def test_stdio(tmp_path: Path, product_b64: str) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_server"], cwd=str(REPO),
        env=dict(os.environ, ADGEN_DATA_DIR=str(tmp_path / "data")),
    )
    async with Client(params, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "generate_ad" in names
        await _run_job(client, product_b64, "stdio 전송")
        bad = await client.call_tool("generate_ad", {"product_image": "@@@", "text_content": "x"})
        assert bad.is_error and "base64" in bad.content[0].text
        await _run_job(client, product_b64, "still serving")


async def test_streamable_http_and_rest(http_server_factory, product_b64: str) -> None:
    srv = http_server_factory("streamable-http")
    async with Client(f"{srv.base}/mcp", mode="legacy") as client:
        st = await _run_job(client, product_b64, "streamable HTTP")
    async with httpx.AsyncClient(base_url=srv.base) as http:
        # A poll streams nothing: answered as one JSON body, not an SSE stream (mcp_server/quiet_replies.py).
        session = await open_session(http, f"{srv.base}/mcp")
        r = await http.post("/mcp", json=call(1, "get_status", {"job_id": st["job_id"]}), headers=session)
        assert r.headers["content-type"] == "application/json", r.headers
        assert r.json()["result"]["structuredContent"]["status"] == "completed"
        health = (await http.get("/health")).json()
        assert health["worker_alive"] and health["gpu_available"] is False
        rest = (await http.get(f"/status/{st['job_id']}")).json()
        assert rest["status"] == "completed" and rest["final_result"] == f"/jobs/{st['job_id']}/final.png"
        img = await http.get(rest["final_result"])
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        b64 = (await http.get(f"/status/{st['job_id']}", params={"images": "base64"})).json()
        assert base64.b64decode(b64["final_result"]) == img.content
        assert (await http.get("/jobs/" + st["job_id"] + "/..%2Fjob.json")).status_code == 404
        assert (await http.get("/status/nope")).status_code == 404
        bad = await http.post("/generate", json={"product_image": product_b64, "strength": 9})
        assert bad.status_code == 422 and "strength" in bad.json()["detail"]
        garbage = await http.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
        assert garbage.status_code == 422
        ok = await http.post("/generate", json={"product_image": product_b64, "text_content": "REST"})
        assert ok.status_code == 200 and ok.json()["job_id"]
        fonts = (await http.get("/fonts")).json()
        assert any(f["family"] == "NanumSquare" for f in fonts)
        assert (await http.get("/resources")).json()["worker_alive"]


async def test_accepts_are_timed_by_segment(http_server_factory, product_b64: str) -> None:
    """GET /debug/accepts: each generate_ad accept over MCP (wait_seconds=0) as the server spent it, its segments
    adding up to its total; a refused call, a call that waits and a get_status poll are not filed."""
    srv = http_server_factory("streamable-http")
    args = {"product_image": product_b64, "text_content": "timed", "wait_seconds": 0}
    async with Client(f"{srv.base}/mcp", mode="legacy") as client:
        accepted = [await client.call_tool("generate_ad", args) for _ in range(2)]
        bad = await client.call_tool("generate_ad", {**args, "product_image": "@@@"})
        await client.call_tool("get_status", {"job_id": accepted[0].structured_content["job_id"]})
        waited = await client.call_tool("generate_ad", {**args, "wait_seconds": 0.1})
    assert not any(r.is_error for r in [*accepted, waited]) and bad.is_error and "base64" in bad.content[0].text
    async with httpx.AsyncClient(base_url=srv.base) as http:
        timed = (await http.get("/debug/accepts")).json()["accepts"]
        later = (await http.get("/debug/accepts", params={"since": timed[0]["seq"]})).json()["accepts"]
        assert (await http.get("/debug/accepts", params={"since": "x"})).status_code == 422
    assert [t["seq"] for t in timed] == [1, 2] and [t["seq"] for t in later] == [2]
    for t in timed:
        parts = sum(v for k, v in t.items() if k.endswith("_ms") and k not in ("total_ms", "accept_cpu_ms"))
        assert abs(parts - t["total_ms"]) < 0.1 and t["accept_ms"] > 0 and t["dispatch_ms"] > 0


async def test_sse(http_server_factory, product_b64: str) -> None:
    srv = http_server_factory("sse")
    async with Client(sse_client(f"{srv.base}/sse"), mode="legacy") as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"generate_ad", "get_status"}
        await _run_job(client, product_b64, "SSE")


def _slice_ns(pid: int) -> int | None:
    """The time slice the scheduler gives a process's main thread (/proc/<pid>/sched); None where not shown."""
    try:
        lines = Path(f"/proc/{pid}/sched").read_text().splitlines()
    except FileNotFoundError:  # a kernel without scheduler statistics
        return None
    for line in lines:
        if line.startswith("se.slice"):
            return int(float(line.split(":")[1]))
    return None


async def test_server_loop_is_served_first(http_server_factory) -> None:
    """The server's event loop asks for a short time slice, so a request that wakes it is served before the
    batch work holding the core; the worker and its browser, started from it, keep the default one."""
    if _slice_ns(os.getpid()) is None:
        pytest.skip("this kernel does not show time slices")
    srv = http_server_factory("streamable-http")
    assert _slice_ns(srv.proc.pid) == 500_000
    children = psutil.Process(srv.proc.pid).children(recursive=True)
    assert len(children) >= 2  # the worker's forkserver and the worker at least
    assert all(_slice_ns(c.pid) != 500_000 for c in children)
