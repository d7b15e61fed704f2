"""bench/gpu.py without a GPU: --check (published configs on the meta device, plans per card) and --smoke
(the production-path timing code on tiny models on the CPU), as subprocesses the way a person runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("diffusers", reason="model stages need the [models] extra")

from tests.conftest import REPO


def run(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_check_reports_published_sizes_and_plans() -> None:
    out = run("--check")
    assert re.search(r"flux\.transformer\s+11\.90\d B", out) and re.search(r"vlm\.vlm\s+2\.2\d\d B", out)
    assert re.search(r"H100 80GB\s+nf4=True\s+resident", out)
    assert re.search(r"L4 24GB\s+nf4=True\s+quantized: .*NF4", out)


def test_smoke_runs_the_production_path_on_tiny_models() -> None:
    out = run("--smoke")
    result = json.loads(out[out.index("{"):])
    assert result["components"] == result["built_components"] == 7
    assert result["s_per_step"] > 0 and result["step1_s"] > 0 and result["analysis_source"] in ("vlm", "pixels")
