"""Packaging: the MCP Inspector CLI against the stdio server, hadolint, and files kept in step."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

INSPECTOR = REPO / ".tools" / "node_modules" / ".bin" / "mcp-inspector"


def _inspector(tmp_path: Path, *args: str) -> dict:
    if not INSPECTOR.exists():
        if os.environ.get("CI"):
            pytest.fail("the MCP Inspector is not installed (make setup-full installs it)")
        pytest.skip("MCP Inspector not installed: make setup-full")
    cmd = [str(INSPECTOR), "--cli", "-e", f"ADGEN_DATA_DIR={tmp_path / 'data'}", "-e", f"ADGEN_INPUT_DIRS={REPO / 'examples'}",
           "-e", "ADGEN_LOG_LEVEL=WARNING", sys.executable, "-m", "mcp_server", *args]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout[out.stdout.index("{"):])


@pytest.mark.slow
def test_inspector_lists_tools(tmp_path: Path) -> None:
    tools = {t["name"]: t for t in _inspector(tmp_path, "--method", "tools/list")["tools"]}
    assert set(tools) == {"generate_ad", "get_status", "stop_job", "list_fonts", "get_resources"}
    assert tools["generate_ad"]["outputSchema"]["properties"]["final_result"]


@pytest.mark.slow
def test_inspector_generates_an_ad_with_the_example_product(tmp_path: Path) -> None:
    result = _inspector(
        tmp_path, "--method", "tools/call", "--tool-name", "generate_ad",
        "--tool-arg", f"product_image_path={REPO / 'examples' / 'product.jpg'}",
        "--tool-arg", "text_content=인스펙터로 만든 광고", "--tool-arg", "test_mode=true",
    )
    assert not result.get("isError"), result
    st = result["structuredContent"]
    assert st["status"] == "completed" and st["backend"] == "draft"
    assert any(c["type"] == "image" for c in result["content"])
    assert (tmp_path / "data" / "jobs" / st["job_id"] / "final.png").stat().st_size > 50_000


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_in_step_with_pyproject() -> None:
    docker = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    py = re.search(r"FROM python:(\d+\.\d+)", docker).group(1)
    assert project["project"]["requires-python"] == f">={py}"
    assert 'pip install ".[models]"' in docker and "models" in project["project"]["optional-dependencies"]
    for package in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert f"COPY {package.rstrip('*')} " in docker, package
    assert "COPY fonts" in docker and "HEALTHCHECK" in docker and "USER 1000" in docker
    entry = json.loads(re.search(r"ENTRYPOINT (\[.*\])", docker).group(1))
    scripts = project["project"]["scripts"]
    assert entry[0] in scripts and "streamable-http" in entry


def test_mcp_json_is_claude_desktop_format() -> None:
    cfg = json.loads((REPO / "mcp.json").read_text())
    server = cfg["mcpServers"]["adgen"]
    assert server["command"].endswith("adgen-mcp") and server["args"][:2] == ["--transport", "stdio"]


@pytest.mark.slow
def test_adgen_cli_starts_a_server_or_uses_a_running_one(tmp_path: Path, http_server_factory) -> None:
    cli = str(Path(sys.executable).parent / "adgen")
    photo = str(REPO / "examples" / "product.jpg")
    out = tmp_path / "ad.png"
    run = subprocess.run([cli, "generate", photo, "--text", "CLI 광고", "--seed", "4", "--out", str(out),
                          "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "100.0%" in run.stderr and out.stat().st_size > 50_000
    assert (tmp_path / "ad_step1.png").exists()

    srv = http_server_factory("streamable-http", data_dir=tmp_path / "srv")
    out2 = tmp_path / "remote.png"
    run = subprocess.run([cli, "generate", photo, "--text", "remote", "--out", str(out2), "--server",
                          srv.base + "/mcp"], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert out2.read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([cli, "generate", photo, "--color", "url(x)", "--out", str(tmp_path / "x.png"),
                          "--server", srv.base + "/mcp"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "text_color" in bad.stderr
