"""Stage statistics: moving averages keyed by backend and canvas, safe under concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from pipeline.jobs.stats import StageStats
from pipeline.registry import default_seconds


def _writer(path: str, stage: str, n: int) -> None:
    stats = StageStats(Path(path))
    for i in range(n):
        stats.record("draft", 512, 512, stage, 1.0 + i % 3)


def test_defaults_then_moving_average(tmp_path: Path) -> None:
    s = StageStats(tmp_path / "stats.json")
    assert s.expected("diffusion", 1024, 1024, "background") == default_seconds("diffusion", "background")
    assert s.expected("diffusion", 512, 512, "background") == default_seconds("diffusion", "background") / 4
    s.record("draft", 1024, 1024, "render", 1.0)
    s.record("draft", 1024, 1024, "render", 2.0)
    assert s.expected("draft", 1024, 1024, "render") == 1.0 * 0.7 + 2.0 * 0.3
    assert StageStats(tmp_path / "stats.json").expected("draft", 1024, 1024, "render") == pytest.approx(1.3)  # persisted
    assert s.expected("draft", 512, 512, "render") == default_seconds("draft", "render")  # other canvas: own key


def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), stage, 40)) for stage in ("segment", "segment", "render")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads(path.read_text())  # always a whole, valid file
    assert data["draft:512x512:segment"]["count"] == 80
    assert data["draft:512x512:render"]["count"] == 40
