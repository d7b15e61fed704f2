"""bench/gpu.py without a GPU: --check (published configs on the meta device, plans per card, the fast profile's
plan on a 24 GB card) and --smoke (the production-path timing code of every profile on tiny models on the CPU:
classic through its stage methods, fast and quality through DiffusionBackend.scene() with random weights saved
and loaded by the backend's own from_pretrained), as subprocesses the way a person runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers", reason="model stages need the [models] extra")

from tests.conftest import REPO


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_check_reports_published_sizes_and_plans() -> None:
    out = run("--check").stdout
    assert re.search(r"flux\.transformer\s+11\.90\d B", out) and re.search(r"vlm\.vlm\s+2\.2\d\d B", out)
    assert re.search(r"H100 80GB\s+nf4=True\s+resident", out)
    assert re.search(r"L4 24GB\s+nf4=True\s+quantized: .*NF4", out)
    # issue 12: fast on a 24 GB card keeps the segmenter and VLM resident, its text encoder in NF4...
    fast = re.search(r"^fast on L4 24GB\s+(.*)$", out, re.M)
    assert fast and fast.group(1).startswith("encoder-nf4") and "resident: scene, segmenter, vlm;" in fast.group(1)
    assert "per stage: none" in fast.group(1) and fast.group(1).endswith("text encoder: nf4")
    # ...and without bitsandbytes it says what it gives up instead (aux models per stage)
    plain = re.search(r"^fast on L4 24GB \(no bitsandbytes\)\s+(.*)$", out, re.M)
    assert plain and "per stage: segmenter, vlm" in plain.group(1)


def test_smoke_runs_every_profile_on_tiny_models(tmp_path: Path) -> None:
    doc = tmp_path / "gpu.md"
    out = run("--smoke", "--doc", str(doc)).stdout
    start = re.search(r"^\{$", out, re.M)  # the summary (the per-profile progress lines come before it)
    assert start, out[-2000:]
    result, _ = json.JSONDecoder().raw_decode(out[start.start():])
    classic = result["classic"]
    assert classic["components"] == classic["built_components"] == 7
    assert classic["s_per_step"] > 0 and classic["step1_s"] > 0 and classic["warm_step1_s"] > 0
    assert classic["analysis_source"] in ("vlm", "pixels")
    # the one-pass profiles through scene(): the pipeline class the profile names, loaded from the saved folder,
    # every component in bf16 on the device (check_placement: the scene pipeline's, SAM-HQ, + ViTMatte for
    # quality), two steps timed cold and warm
    for profile, pipeline, components in (("fast", "Flux2KleinInpaintPipeline", 4), ("quality", "FluxFillPipeline", 6)):
        r = result[profile]
        assert r["pipeline"] == pipeline and r["steps"] == 2 and r["size"] == 256, r
        assert r["components"] == components and r["plan_level"] == "resident"
        assert r["segmented"] and r["cold_s"] > 0 and r["warm_s"] > 0 and r["s_per_step"] > 0
        assert r["warm_s"] == pytest.approx(r["warm_segment_s"] + r["warm_scene_s"]) and r["warm_segment_s"] > 0
    assert "fast-24gb" not in result  # the allocator-held 24 GB run needs CUDA
    page = doc.read_text()
    assert "CPU smoke run on tiny models (not GPU figures)" in page
    cell = r"[\d.]+ s \([\d.]+ \+ [\d.]+\)"  # step 1 (segment + scene)
    assert re.search(rf"^\| fast \| Flux2KleinInpaintPipeline \| 2 \| 256² \| {cell} \| {cell} \|.*"
                     r"< 2 s warm on an H100 \(not this card\) \|$", page, re.M)
    assert re.search(r"^\| quality \| FluxFillPipeline \| 2 \|.*< 8 s warm on an H100 \(not this card\) \|$", page, re.M)
    assert re.search(r"^\| classic \| FluxPipeline", page, re.M)
    assert "- fast on L4 24GB: encoder-nf4" in page and "text encoder stored as nf4" in page


def test_without_cuda_it_says_so_and_writes_nothing(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the benchmark would run")
    doc = tmp_path / "gpu.md"
    proc = run("--profiles", "fast", "--doc", str(doc), ok=False)
    assert proc.returncode == 1 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
    assert not doc.exists()
    bad = run("--profiles", "fast,turbo", ok=False)
    assert bad.returncode == 1 and "unknown profile(s): turbo" in bad.stderr


@pytest.mark.parametrize("profile,expected", [
    # published sizes: FLUX.2 [klein] 4B = 3.9 B transformer + Qwen3-4B 4.0 B; FLUX.1 Fill [dev] 11.9 B + T5-XXL
    ("fast", {"transformer": 3.88, "vae": 0.08, "text_encoder": 4.02}),
    ("quality", {"transformer": 11.90, "vae": 0.08, "text_encoder": 0.12, "text_encoder_2": 4.76}),
])
def test_full_size_scene_configs_build_the_published_models(tmp_path: Path, profile: str,
                                                            expected: dict[str, float]) -> None:
    """What the GPU run builds and saves: the real classes from the profile's published configs (on the meta
    device here: no memory), in bf16, with the published parameter counts and the Fill transformer's channels."""
    import diffusers
    import torch
    import transformers
    from transformers import AutoConfig

    from bench.gpu import build_random, write_scene_configs

    configs = write_scene_configs(profile, tmp_path / profile)
    index = json.loads((configs / "model_index.json").read_text())
    assert index["_class_name"] == ("Flux2KleinInpaintPipeline" if profile == "fast" else "FluxFillPipeline")
    sizes = {}
    for name in expected:
        library, cls_name = index[name]
        if library == "diffusers":
            cls = getattr(diffusers, cls_name)
            model = build_random(cls, cls.load_config(configs / name), "meta", torch.bfloat16)
        else:
            model = build_random(getattr(transformers, cls_name), AutoConfig.from_pretrained(configs / name), "meta",
                                 torch.bfloat16)
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}, name
        sizes[name] = round(sum(p.numel() for p in model.parameters()) / 1e9, 2)
        if profile == "quality" and name == "transformer":
            assert (model.config.in_channels, model.config.out_channels) == (384, 64)
    assert sizes == expected
