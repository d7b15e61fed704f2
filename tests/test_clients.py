"""Real clients get real files: the SDK's own client over HTTP and stdio, the adgen CLI, client configs.

Every server here is a real ``python -m mcp_server`` subprocess; every client is the real
``mcp`` SDK client or the ``adgen`` CLI as a person runs it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import httpx2
import numpy as np
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from PIL import Image

from tests.conftest import EXAMPLE, REPO, ServerProcess, free_port

pytestmark = [pytest.mark.anyio]

MIB = 1024 * 1024
TOKEN = "client-test-token"


def result_size(result) -> int:
    """Bytes of a tool result as it goes on the wire (JSON, aliases, as the SDK serializes it)."""
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


def adgen(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess:
    """The adgen CLI as a person runs it (a fresh process; stderr is not a terminal)."""
    return subprocess.run([sys.executable, "-m", "mcp_server.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), cwd=cwd or REPO, timeout=timeout, check=False)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("adgen")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# ---- HTTP: a 4096x4096 ad through the CLI, and what the SDK client may and may not read ------------
async def test_cli_4096_over_streamable_http(http_server_factory, tmp_path: Path) -> None:
    out_dir = tmp_path / "server-out"
    srv = http_server_factory("streamable-http", ADGEN_TOKEN=TOKEN, ADGEN_OUTPUT_DIR=str(out_dir))
    mine = tmp_path / "mine" / "ad.png"
    proc = adgen("generate", str(EXAMPLE), "--text", "4K SALE", "--size", "4096x4096", "--seed", "7",
                 "--server", f"{srv.base}/mcp", "--out", str(mine), env={"ADGEN_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(mine.resolve())
    with Image.open(mine) as img:
        assert (img.format, img.size) == ("PNG", (4096, 4096))
    assert mine.stat().st_size > 2 * MIB  # far over what one MCP message over HTTP can carry

    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=srv.base) as rest:
        job_id = (await rest.get("/jobs", headers=auth)).json()[0]["job_id"]
        delivered = Path((await rest.get(f"/status/{job_id}", headers=auth)).json()["output_file"])
        assert delivered.parent == await anyio.Path(out_dir).resolve()
        assert delivered.name.endswith(f"_4k-sale_{job_id[:8]}.png")
        mine_bytes = await anyio.Path(mine).read_bytes()
        assert mine_bytes == await anyio.Path(delivered).read_bytes()  # the exact file the server delivered

        # The download route: token-protected like the rest, right type, a readable file name.
        assert (await rest.get(f"/jobs/{job_id}/download")).status_code == 401
        dl = await rest.get(f"/jobs/{job_id}/download", headers=auth)
        assert dl.status_code == 200 and dl.headers["content-type"] == "image/png"
        assert delivered.name in dl.headers["content-disposition"] and dl.content == mine_bytes

    # The SDK's own HTTP client: small tool results, large files refused with their download URL.
    async with httpx2.AsyncClient(headers=auth) as http, \
            Client(streamable_http_client(f"{srv.base}/mcp", http_client=http), mode="legacy") as client:
        st = await client.call_tool("get_status", {"job_id": job_id})
        assert not st.is_error and result_size(st) < 256 * 1024
        data = st.structured_content
        assert data["download_url"] == f"{srv.base}/jobs/{job_id}/download"
        text = st.content[0].text
        assert str(delivered) in text and data["download_url"] in text
        with pytest.raises(MCPError) as refused:
            await client.read_resource(data["final_result"])
        assert f"{srv.base}/jobs/{job_id}/final.png" in str(refused.value)
        small = await client.read_resource(f"adgen://jobs/{job_id}/preview.jpg")  # small files still inline
        assert small.contents[0].mime_type == "image/jpeg"
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        assert data["final_result"] in listed and listed[data["final_result"]].size > 2 * MIB


# ---- stdio: exact bytes of a big final, small results, one-line argument errors -----------------
async def test_stdio_exact_bytes_small_results_and_errors(tmp_path: Path, product_b64: str) -> None:
    # Launched exactly as mcp.json says, from a folder that is not the checkout.
    entry = json.loads((REPO / "mcp.json").read_text())["mcpServers"]["adgen"]
    assert Path(entry["command"]).is_absolute()
    data_dir, out_dir = tmp_path / "data", tmp_path / "out"
    env = dict(os.environ, **entry.get("env", {}), ADGEN_HOME=str(REPO), ADGEN_DATA_DIR=str(data_dir),
               ADGEN_OUTPUT_DIR=str(out_dir))
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=str(tmp_path))
    async with Client(params, mode="legacy") as client:
        res = await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "stdio 전송",
                                                     "width": 1536, "height": 1536, "seed": 3})
        assert not res.is_error, res.content
        st = res.structured_content
        assert st["status"] == "completed" and st["download_url"] is None  # no HTTP server on stdio
        assert result_size(res) < 256 * 1024
        previews = [c for c in res.content if c.type == "image"]  # the preview is there, small...
        with Image.open(io.BytesIO(base64.b64decode(previews[0].data))) as shown:
            assert shown.format == "JPEG" and shown.size == (512, 512)
        assert st["output_file"] in res.content[0].text  # ...and the person learns where the file is
        final = data_dir / "jobs" / st["job_id"] / "final.png"
        assert final.stat().st_size * 4 / 3 > MIB  # its base64 alone is over the HTTP client's 1 MiB limit
        blob = (await client.read_resource(st["final_result"])).contents[0]
        assert blob.mime_type == "image/png" and base64.b64decode(blob.blob) == await anyio.Path(final).read_bytes()
        delivered = (await client.read_resource(f"adgen://jobs/{st['job_id']}/download")).contents[0]
        assert base64.b64decode(delivered.blob) == await anyio.Path(st["output_file"]).read_bytes()
        listed = [r.uri for r in (await client.list_resources()).resources]
        assert "ui://adgen/studio" in listed  # the Studio app (MCP Apps), then the recent ads, newest first
        assert [u for u in listed if u.startswith("adgen://")][0] == st["final_result"]

        # An oversized preview (a real JPEG) is left out rather than pushing the result past 1 MiB.
        preview = data_dir / "jobs" / st["job_id"] / "preview.jpg"
        noise = np.random.default_rng(0).integers(0, 255, (1800, 1800, 3), dtype=np.uint8)
        Image.fromarray(noise).save(preview, format="JPEG", quality=95)
        assert preview.stat().st_size > MIB
        big = await client.call_tool("get_status", {"job_id": st["job_id"]})
        assert not big.is_error and result_size(big) < 768 * 1024
        assert not any(c.type == "image" for c in big.content)

        # Type and range errors found by the SDK's own argument check: one line, no dump, no input echoed.
        cases = [
            ("generate_ad", {"product_image": product_b64, "strength": "zqx-not-a-number"}, "strength: "),
            ("generate_ad", {"product_image": product_b64, "width": 100},
             "width: should be greater than or equal to 256"),
            ("generate_ad", {"product_image": product_b64, "output_format": "gif"}, "output_format: should be 'png'"),
            ("get_status", {"job_id": 12345}, "job_id: should be a valid string"),
        ]
        for tool, args, start in cases:
            bad = await client.call_tool(tool, args)
            text = bad.content[0].text
            assert bad.is_error and text.startswith(start), text
            assert "\n" not in text and "pydantic" not in text and "zqx" not in text and "12345" not in text, text
        still = await client.call_tool("get_resources", {})
        assert not still.is_error and still.structured_content["output_dir"] == str(out_dir.resolve())


# ---- the CLI's exit codes and one-line errors ---------------------------------------------------
def test_cli_usage_errors(tmp_path: Path) -> None:
    missing = adgen("generate", str(tmp_path / "no-such-photo.jpg"), "--text", "x")
    assert missing.returncode == 2 and "photo: no such file" in one_line_error(missing)
    nowhere = f"http://127.0.0.1:{free_port()}/mcp"
    down = adgen("generate", str(EXAMPLE), "--text", "x", "--server", nowhere)
    assert down.returncode == 3 and f"server unreachable: {nowhere}" in one_line_error(down)
    size = adgen("generate", str(EXAMPLE), "--size", "huge")
    assert size.returncode == 2 and "--size: expected WxH" in one_line_error(size)
    both = adgen("generate", str(EXAMPLE), "--url", "https://example.com/p.jpg")
    assert both.returncode == 2 and "exactly one" in one_line_error(both)


# ---- start-up health: a missing Chromium is found before any job --------------------------------
async def test_missing_chromium_degrades_health_and_fails_jobs_fast(tmp_path: Path, product_b64: str) -> None:
    absent = tmp_path / "no-chromium" / "chromium"
    srv = ServerProcess("streamable-http", tmp_path / "data", {"ADGEN_CHROMIUM": str(absent)})
    try:
        async with httpx.AsyncClient(base_url=srv.base, timeout=10) as rest:
            with anyio.fail_after(60):
                while True:  # 503 while degraded, so not wait_healthy()
                    assert srv.proc.poll() is None, "server exited"
                    try:
                        health = await rest.get("/health")
                        break
                    except httpx.HTTPError:
                        await anyio.sleep(0.2)
            body = health.json()
            assert health.status_code == 503 and body["status"] == "degraded" and body["worker_alive"]
            assert body["problems"] == [(f"Chromium not found at {absent}: apt-get install chromium (or your "
                                         "distribution's package) or set ADGEN_CHROMIUM")]
            resources = (await rest.get("/resources")).json()
            assert resources["status"] == "degraded" and resources["problems"] == body["problems"]

            # A job with copy fails at once with the fix; one without copy needs no browser and completes.
            accepted = (await rest.post("/generate", json={"product_image": product_b64, "text_content": "x",
                                                           "width": 256, "height": 256})).json()
            assert accepted["status"] == "failed"
            failed = (await rest.get(f"/status/{accepted['job_id']}")).json()
            assert failed["status"] == "failed" and failed["error"] == body["problems"][0]
        async with Client(f"{srv.base}/mcp", mode="legacy") as client:
            plain = await client.call_tool("generate_ad", {"product_image": product_b64, "width": 256, "height": 256})
            assert plain.structured_content["status"] == "completed", plain.content
        cli = adgen("generate", str(EXAMPLE), "--text", "x", "--size", "256x256", "--server", f"{srv.base}/mcp")
        assert cli.returncode == 1 and f"Chromium not found at {absent}" in one_line_error(cli)
    finally:
        srv.stop()


# ---- adgen config: a Claude Desktop config that starts this install from anywhere ---------------
async def test_config_is_ready_to_paste(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    env = {"HOME": str(home), "XDG_PICTURES_DIR": "", "ADGEN_INPUT_DIRS": "", "ADGEN_OUTPUT_DIR": ""}
    proc = adgen("config", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["mcpServers"]["adgen"]
    command = anyio.Path(entry["command"])
    assert command.is_absolute() and await command.is_file() and os.access(command, os.X_OK)
    pictures = home / "Pictures"
    assert entry["env"] == {"ADGEN_INPUT_DIRS": str(pictures), "ADGEN_OUTPUT_DIR": str(pictures / "adgen")}
    claude = next(line for line in proc.stderr.splitlines() if line.startswith("claude mcp add"))
    words = shlex.split(claude)
    assert words[words.index("--") + 1:] == [entry["command"], *entry["args"]]

    # Started the way Claude Desktop would: that command, those args, that env, some other folder.
    server_env = {"HOME": str(home), "PATH": "/usr/bin:/bin", **entry["env"],
                  "ADGEN_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=server_env, cwd=str(tmp_path))
    async with Client(params, mode="legacy") as client:
        res = (await client.call_tool("get_resources", {})).structured_content
    assert res["input_dirs"] == [str(home / "Pictures")]
    assert res["output_dir"] == str(home / "Pictures" / "adgen") and res["urls_accepted"] is True

