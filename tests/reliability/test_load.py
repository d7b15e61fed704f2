"""Load: 20 concurrent MCP clients over streamable HTTP polling status at 10 Hz while jobs run."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ARTIFACTS, REPO, free_port
from tests.reliability.load import poll

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_twenty_pollers_zero_errors(http_server_factory, product_b64: str, tmp_path) -> None:
    srv = http_server_factory("streamable-http")
    job_ids = [httpx.post(srv.base + "/generate", json={"product_image": product_b64, "text_content": f"load {i}"},
                          timeout=30).json()["job_id"] for i in range(4)]
    adgen = await poll(srv.base + "/mcp", "get_status", {"job_id": job_ids[0]})  # while jobs run
    for job_id in job_ids:  # then with the worker idle, for a like-for-like floor comparison
        for _ in range(300):
            if httpx.get(f"{srv.base}/status/{job_id}").json()["status"] in ("completed", "failed"):
                break
            time.sleep(0.1)
    idle = await poll(srv.base + "/mcp", "get_status", {"job_id": job_ids[0]})
    lean = await poll(srv.base + "/mcp", "get_status", {"job_id": job_ids[0], "include_preview": False})

    port = free_port()
    noop = subprocess.Popen([sys.executable, "-m", "tests.reliability.noop_server", "--port", str(port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        floor = await poll(f"http://127.0.0.1:{port}/mcp", "noop", {"job_id": job_ids[0]})
    finally:
        noop.terminate()
        noop.wait(10)

    result = {"adgen_get_status_jobs_running": adgen, "adgen_get_status_idle": idle,
              "adgen_get_status_idle_no_preview": lean, "noop_server": floor}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    assert adgen["errors"] == 0, adgen["first_errors"]
    assert idle["errors"] == 0 and lean["errors"] == 0, idle["first_errors"] + lean["first_errors"]
    assert floor["errors"] == 0, floor["first_errors"]
    assert adgen["calls"] >= 20 * 10  # every client kept polling
    assert adgen["mean_bytes"] < 1_000_000
