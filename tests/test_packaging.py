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
    assert set(tools) == {"generate_ad", "edit_ad", "get_status", "stop_job", "list_fonts", "get_resources",
                          "save_brand_kit", "list_brand_kits", "delete_brand_kit", "studio_image", "studio_jobs"}
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
    # The image installs the wheel built in the build stage (with the models extra), not the tree.
    assert "models" in project["project"]["optional-dependencies"]
    install = re.search(r"^RUN --mount=type=bind,from=build,[^\n]*\\\n\s*pip install (.*)$", docker, re.MULTILINE)
    assert install and "adgen-*.whl" in install.group(1) and "[models]" in install.group(1)
    assert "COPY mcp_server" not in _final_stage(docker) and "pip install ." not in docker
    # Every top-level package's folder (fonts/ for adgen_fonts) reaches the build stage.
    setuptools = project["tool"]["setuptools"]
    build_sources = {src for srcs, _ in _build_stage_copies(docker) for src in srcs}
    for package in {p.split(".")[0] for p in setuptools["packages"]}:
        assert setuptools.get("package-dir", {}).get(package, package) in build_sources, package
    assert "fonts" in build_sources and "HEALTHCHECK" in docker and "USER 1000" in docker
    entry = json.loads(re.search(r"ENTRYPOINT (\[.*\])", docker).group(1))
    scripts = project["project"]["scripts"]
    assert entry[0] in scripts and "streamable-http" in entry


def test_mcp_json_is_claude_desktop_format() -> None:
    cfg = json.loads((REPO / "mcp.json").read_text())
    server = cfg["mcpServers"]["adgen"]
    # An absolute launcher (clients spawn it from any folder) that execs adgen-mcp over stdio;
    # tests/test_clients.py starts the server with exactly this command from another folder.
    assert Path(server["command"]).is_absolute() and server["args"][0] == "-c"
    assert "adgen-mcp" in server["args"][1] and "--transport stdio" in server["args"][1]


@pytest.mark.slow
def test_adgen_cli_starts_a_server_or_uses_a_running_one(tmp_path: Path, http_server_factory) -> None:
    cli = str(Path(sys.executable).parent / "adgen")
    photo = str(REPO / "examples" / "product.jpg")
    out = tmp_path / "ad.png"
    run = subprocess.run([cli, "generate", photo, "--text", "CLI 광고", "--seed", "4", "--out", str(out), "--step1",
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


# ---- the wheel, as the Docker image and a user's `pip install` get it ----

def _stages(docker: str) -> list[str]:
    return re.split(r"^(?=FROM )", docker, flags=re.MULTILINE)[1:]


def _final_stage(docker: str) -> str:
    return _stages(docker)[-1]


def _build_stage_copies(docker: str) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY in the stage named ``build``."""
    stage = next(s for s in _stages(docker) if re.match(r"FROM \S+ AS build\b", s))
    return [(parts[:-1], parts[-1]) for parts in (line.split()[1:] for line in stage.splitlines()
                                                  if line.startswith("COPY "))]


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built from exactly what the Dockerfile's build stage copies, installed into a fresh
    venv. The venv sees the project venv's site-packages through a .pth line (third-party packages,
    installed once), but adgen itself comes only from the wheel: the project's editable-install hook
    is a .pth file there, and .pth files inside a .pth-added folder are not run."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for sources, dest in _build_stage_copies((REPO / "Dockerfile").read_text()):
        for name in sources:
            assert dest in ("./", f"./{name}"), f"build stage COPY {name} {dest}: unexpected layout"
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, src / name, ignore=ignore)
            else:
                shutil.copy(REPO / name, src / name)
    dist = root / "dist"
    # An absolute path: a bare "src" would be taken for a PyPI project name. --no-index: offline.
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("adgen-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    import site

    (purelib / "zz_project_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return {"root": root, "src": src, "wheel": wheel, "venv": venv, "purelib": purelib}


def _outside_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("ADGEN_")}
    return dict(env, ADGEN_DATA_DIR=str(root / "data"), ADGEN_OUTPUT_DIR=str(root / "pictures"), HF_HUB_OFFLINE="1")


def test_wheel_ships_every_module_and_the_bundled_fonts(wheel_install: dict[str, Path]) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel_install["wheel"]).namelist())
    src = wheel_install["src"]
    modules = {p.relative_to(src).as_posix() for top in ("mcp_server", "pipeline") for p in (src / top).rglob("*.py")}
    assert modules and not modules - names, f"not in the wheel (list the package in pyproject.toml): {sorted(modules - names)}"
    fonts = sorted(p.name for p in (REPO / "fonts").iterdir() if p.suffix in (".ttf", ".otf") or p.name.startswith("LICENSE"))
    assert len(fonts) >= 6 and {f"adgen_fonts/{f}" for f in fonts} <= names
    assert "mcp_server/dashboard/index.html" in names
    assert "mcp_server/studio/studio.html" in names  # the committed Studio build: no Node needed to install
    # A source checkout's editable install and the wheel resolve the same folder name.
    from pipeline.config import Settings

    assert Settings().fonts_dir.is_dir() and (Settings().fonts_dir / "NanumSquareB.ttf").is_file()


_LIST_FONTS = """
import json, os, sys
import anyio
from mcp import Client, StdioServerParameters

async def main() -> None:
    params = StdioServerParameters(command=sys.argv[1], args=["--transport", "stdio", "--log-level", "WARNING"],
                                   env=dict(os.environ))
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("list_fonts", {})
    print(json.dumps(result.structured_content))

anyio.run(main)
"""

_WHERE = """
import json, adgen_fonts, mcp_server, pipeline
from pipeline.config import Settings
print(json.dumps([mcp_server.__file__, pipeline.__file__, str(Settings().fonts_dir)]))
"""


@pytest.mark.slow
def test_installed_wheel_makes_an_ad_with_the_bundled_fonts(wheel_install: dict[str, Path]) -> None:
    root, venv, purelib = wheel_install["root"], wheel_install["venv"], wheel_install["purelib"]
    env = _outside_env(root)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", _WHERE], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr[-2000:]
    for path in json.loads(where.stdout):
        assert Path(path).is_relative_to(purelib) and not Path(path).is_relative_to(REPO), path

    # The installed console script; NanumSquare exists only in the bundled fonts, so a server that
    # could not find them would refuse font_family (exit 2) instead of drawing with it.
    out = root / "out" / "ad.png"
    run = subprocess.run([str(venv / "bin" / "adgen"), "generate", str(REPO / "examples" / "product.jpg"),
                          "--text", "번들 글꼴 광고", "--font", "NanumSquare", "--seed", "3", "--out", str(out)],
                         cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 50_000

    listed = subprocess.run([str(venv / "bin" / "python"), "-c", _LIST_FONTS, str(venv / "bin" / "adgen-mcp")],
                            cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    fonts = {f["family"]: f for f in json.loads(listed.stdout)["fonts"]}
    for family in ("NanumSquare", "NanumSquareRound", "NanumMyeongjo"):
        assert fonts[family]["bundled"] and fonts[family]["hangul"], fonts.get(family)
