"""Shared fixtures: real job managers with real worker processes, real images, free ports."""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.processes import ServerProcess, free_port  # noqa: F401 (the tests import free_port from here)
from mcp_server.server import build_server
from pipeline.config import Settings
from pipeline.jobs import JobManager
from pipeline.jobs.supervisor import start_forkserver
from tests.helpers import READY_S

# Tests never reach the Hugging Face hub: every model they load is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# ...and they find them in a throwaway Hugging Face cache in hub layout (tests/tiny_models/hub.py), never the
# tester's own cache. Set before anything imports huggingface_hub (it reads the variable at import).
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="adgen-test-hf-")
# Work a worker caches between starts (font copies) goes to one throwaway folder per test process, shared
# by every worker and server it starts: the first builds, the rest read.
os.environ.setdefault("ADGEN_CACHE_DIR", tempfile.mkdtemp(prefix="adgen-test-cache-"))
# Delivered ads go to a throwaway folder, never the tester's Pictures (servers started by tests inherit it).
os.environ.setdefault("ADGEN_OUTPUT_DIR", tempfile.mkdtemp(prefix="adgen-test-out-"))

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "product.jpg"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def product_b64() -> str:
    return base64.b64encode(EXAMPLE.read_bytes()).decode()


def png_b64(img: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def synthetic_product(kind: str, size: int = 512, bg: tuple[int, int, int] = (236, 236, 232)) -> tuple[Image.Image, np.ndarray]:
    """A product photo on a plain backdrop and its true mask (for segmentation accuracy)."""
    img = Image.new("RGB", (size, size), bg)
    mask = Image.new("L", (size, size), 0)
    d, m = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    s = size / 512
    if kind == "bottle":
        box = (180 * s, 150 * s, 330 * s, 440 * s)
        d.rounded_rectangle(box, 30 * s, fill=(40, 90, 160))
        m.rounded_rectangle(box, 30 * s, fill=255)
        cap = (215 * s, 90 * s, 295 * s, 152 * s)
        d.rectangle(cap, fill=(20, 20, 20))
        m.rectangle(cap, fill=255)
        label = (200 * s, 250 * s, 310 * s, 330 * s)
        d.rectangle(label, fill=(250, 250, 250))  # a white label must not become a hole
    elif kind == "box":
        box = (120 * s, 200 * s, 400 * s, 420 * s)
        d.rectangle(box, fill=(200, 60, 50))
        m.rectangle(box, fill=255)
    elif kind == "can":
        box = (200 * s, 120 * s, 310 * s, 420 * s)
        d.rounded_rectangle(box, 12 * s, fill=(30, 150, 90))
        m.rounded_rectangle(box, 12 * s, fill=255)
        lid = (200 * s, 110 * s, 310 * s, 135 * s)
        d.ellipse(lid, fill=(180, 180, 185))
        m.ellipse(lid, fill=255)
    return img, np.asarray(mask) > 127


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", stop_grace_s=3.0)


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), stop_grace_s=3.0)


@pytest.fixture(scope="module")
async def manager(module_settings: Settings) -> AsyncIterator[JobManager]:
    async with JobManager(module_settings) as m:
        assert await m.wait_ready(READY_S), "worker did not become ready"
        yield m


@pytest.fixture(scope="module")
def server(manager: JobManager):
    return build_server(manager)


@pytest.fixture
def http_server_factory(tmp_path: Path) -> Iterator:
    started: list[ServerProcess] = []

    def start(transport: str = "streamable-http", data_dir: Path | None = None, **env: str) -> ServerProcess:
        proc = ServerProcess(transport, data_dir or tmp_path / "data", env)
        started.append(proc)
        proc.wait_healthy()
        return proc

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def tiny_hub() -> dict[str, str]:
    """The tiny models of the diffusion backend, built once per session into the test HF cache: role -> hub id."""
    pytest.importorskip("diffusers", reason="model stages need the [models] extra")
    from tests.tiny_models.hub import build_all

    return build_all(Path(os.environ["HF_HUB_CACHE"]))


# `make check` runs `pytest -m "not slow"`: these modules need no worker process, server or
# model build, and together run in well under a minute. Everything else counts as slow.
FAST_MODULES = frozenset({
    "test_schemas", "test_stats", "test_config", "test_stages", "test_memory_plan", "test_sanitize",
    "test_cutout_corpus", "test_sources",
})


def _module(item: pytest.Item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _module(item) not in FAST_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _forkserver_with_models(request: pytest.FixtureRequest) -> None:
    # Workers fork from one forkserver per test process, and the first worker's backend decides what it holds.
    # When tiny-model tests are among those collected, it holds the model libraries from the start, so no
    # model worker imports them itself (~15 s of CPU each, dozens of workers), whichever test comes first.
    # (Started from a fixture, inside pytest's output capture, like every worker after it.)
    if importlib.util.find_spec("diffusers") is not None and any(
            "tiny_hub" in getattr(item, "fixturenames", ()) for item in request.session.items):
        start_forkserver(with_models=True)
