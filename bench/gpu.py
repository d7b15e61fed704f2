"""GPU figures for docs/gpu.md, measured through the production path.

    python -m bench.gpu            # on a CUDA machine: runs everything below, rewrites docs/gpu.md (< 8 min on an H100)
    python -m bench.gpu --check    # no GPU: the default models' sizes and memory plans from their published configs
    python -m bench.gpu --smoke    # no GPU: the production-path timing code on tiny models on the CPU (for the tests)

On CUDA:
1. the whole job on the tiny local models (tests/tiny_models), through a real job manager and worker;
2. FULL-SIZE random-weight models built from the published configs (bench/published.py) in bf16 straight
   on the GPU: FLUX.1-dev (transformer, T5-XXL, CLIP-L, VAE), SAM-HQ ViT-H, ViTMatte-B, Qwen2-VL-2B. They
   are placed into the diffusion backend's own model cache and timed through its own stage methods
   (segment, background at 1024x1024, refine, analyze): seconds per denoising step, end-to-end step 1,
   VRAM peak (counter reset after the build), and the device and dtype of every component asserted;
3. the memory plan the backend computes for this card, and for an L4's 24 GB, by its own accounting.
Random weights cost the same compute as real ones (the VLM's random answer never ends early, so its
time is an upper bound: two attempts at the full token limit).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GiB = 2**30
CARDS_GB = {"H100 80GB": 79.2, "A100 40GB": 39.4, "L40S 48GB": 47.5, "L4 24GB": 22.5, "T4 16GB": 15.6}
REQUIRED = ("torch", "diffusers", "transformers", "accelerate")


def ensure_packages() -> None:
    """Install what the models extra needs and this machine lacks (a GPU machine may have other versions)."""
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        print("installing the models extra (missing:", ", ".join(missing) + ")", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{REPO}[models]"], check=True)


def versions() -> dict[str, str]:
    import accelerate
    import diffusers
    import torch
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
           "diffusers": diffusers.__version__, "transformers": transformers.__version__,
           "accelerate": accelerate.__version__}
    try:
        out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        out["driver"] = "unknown"
    return out


# --------------------------------------------------------------------------- sizes and plans (meta device)


def settings_for(folders: dict[str, Path], data: Path, **kw: Any) -> Any:
    from pipeline.config import Settings

    return Settings(data_dir=data, backend="diffusion", offline=True, flux_model=str(folders["flux"]),
                    seg_model=str(folders["seg"]), matting_model=str(folders["matting"]),
                    vlm_model=str(folders["vlm"]), **kw)


def check(tmp: Path) -> dict[str, Any]:
    """Sizes from the published configs on the meta device, and the memory plan per card."""
    import torch

    from bench.published import write_defaults
    from pipeline.worker.models import loader, memory

    folders = write_defaults(tmp / "published")
    comps = loader.measure_models(settings_for(folders, tmp / "d"), "cuda")
    sizes = {f"{c.model}.{c.name}": c.params for c in comps}
    for key, n in sizes.items():
        print(f"{key:24s} {n / 1e9:7.3f} B parameters (meta)")
    plans = {}
    for card, total in CARDS_GB.items():
        for nf4 in (True, False):
            p = memory.plan_memory(comps, device="cuda", device_bytes=int((total - 2) * GiB), host_bytes=64 * GiB,
                                   dtype=torch.bfloat16, nf4_available=nf4)
            plans[f"{card}{'' if nf4 else ' (no bitsandbytes)'}"] = p
            print(f"{card:10s} nf4={nf4!s:5s} {p.summary()}")
    return {"sizes": sizes, "plans": plans}


# --------------------------------------------------------------------------- random full-size models


def build_random(cls: Any, config: Any, device: str, dtype: Any) -> Any:
    """A model with random weights made directly on ``device`` in ``dtype`` (no host copy of 24 GB)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            if hasattr(cls, "_from_config") and not isinstance(config, dict):
                model = cls._from_config(config, dtype=dtype)
            else:
                model = cls.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def random_models(folders: dict[str, Path], device: str, dtype: Any) -> dict[str, Any]:
    """The backend's three cache entries, built from config folders with random weights."""
    import diffusers
    import transformers
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline, FluxPipeline
    from transformers import (
        AutoConfig,
        Qwen2VLForConditionalGeneration,
        SamHQModel,
        SamHQProcessor,
        SamImageProcessor,
        VitMatteForImageMatting,
        VitMatteImageProcessor,
    )

    from pipeline.worker.models.loader import FluxModels, SegmenterModels, VisionLanguageModel
    from tests.tiny_models.flux import flux_tokenizers
    from tests.tiny_models.qwen2vl import qwen2vl_processor, qwen2vl_tokenizer

    flux_dir = folders["flux"]
    index = json.loads((flux_dir / "model_index.json").read_text())
    parts: dict[str, Any] = {}
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        library, cls_name = index[name]
        if library == "diffusers":
            cls = getattr(diffusers, cls_name)
            parts[name] = build_random(cls, cls.load_config(flux_dir / name), device, dtype)
        else:
            parts[name] = build_random(getattr(transformers, cls_name), AutoConfig.from_pretrained(flux_dir / name),
                                       device, dtype)
    clip_tok, t5_tok = flux_tokenizers()
    # FLUX.1-dev's scheduler/scheduler_config.json
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    t2i = FluxPipeline(scheduler=scheduler, tokenizer=clip_tok, tokenizer_2=t5_tok, **parts)
    t2i.set_progress_bar_config(disable=True)
    i2i = FluxImg2ImgPipeline(**t2i.components)
    i2i.set_progress_bar_config(disable=True)

    sam_cfg = AutoConfig.from_pretrained(folders["seg"])
    side = sam_cfg.vision_config.image_size
    sam_proc = SamHQProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": side}, pad_size={"height": side, "width": side},
        mask_size={"longest_edge": side // 4}, mask_pad_size={"height": side // 4, "width": side // 4}))
    seg = SegmenterModels(build_random(SamHQModel, sam_cfg, device, dtype), sam_proc,
                          build_random(VitMatteForImageMatting, AutoConfig.from_pretrained(folders["matting"]),
                                       device, dtype), VitMatteImageProcessor())

    tok, ids = qwen2vl_tokenizer()
    vlm_cfg = AutoConfig.from_pretrained(folders["vlm"])
    # the local tokenizer's special-token ids stand in for the real ones (all inside the real vocabulary)
    vlm_cfg.image_token_id, vlm_cfg.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
    vlm_cfg.vision_start_token_id, vlm_cfg.vision_end_token_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
    vlm_model = build_random(Qwen2VLForConditionalGeneration, vlm_cfg, device, dtype)
    vlm_model.generation_config.eos_token_id = ids["<|im_end|>"]
    vlm_model.generation_config.pad_token_id = ids["<|endoftext|>"]
    vlm = VisionLanguageModel(qwen2vl_processor(tok, 512 * 28 * 28), vlm_model)
    return {"flux": FluxModels(t2i, i2i), "segmenter": seg, "vlm": vlm}


def check_placement(backend: Any) -> int:
    """Every loaded component's parameters on the backend's device in its dtype (or the plan's fp8)."""
    import torch

    from pipeline.worker.models.cache import named_modules

    n = 0
    for key in ("flux", "segmenter", "vlm"):
        if key not in backend.cache:
            continue
        for name, module in named_modules(backend.cache.value(key)).items():
            allowed = {backend.dtype} | ({torch.float8_e4m3fn} if backend.plan.storage(key, name) == "fp8" else set())
            dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
            devices = {p.device.type for p in module.parameters()}
            assert dtypes <= allowed, f"{key}.{name}: {dtypes}"
            assert devices == {torch.device(backend.device).type}, f"{key}.{name}: {devices}"
            n += 1
    return n


def production_path(folders: dict[str, Path], data: Path, device: str, size: int, steps: int,
                    max_new_tokens: int) -> dict[str, Any]:
    """Random-weight models in the backend's cache, timed through the backend's own stage methods."""
    import numpy as np
    import torch
    from PIL import Image

    from pipeline.worker.backends.diffusion import DiffusionBackend
    from tests.conftest import synthetic_product

    settings = settings_for(folders, data, device=device, dtype="bfloat16", flux_steps=steps,
                            vlm_max_new_tokens=max_new_tokens)
    backend = DiffusionBackend(settings)
    assert backend.plan is not None and backend.problem is None, backend.problem
    cuda = device == "cuda"
    started = time.perf_counter()
    models = random_models(folders, device, backend.dtype)
    if cuda:
        torch.cuda.synchronize()
    build_s = time.perf_counter() - started
    for key, value in models.items():
        backend.cache.get(key, lambda v=value: v, keep=True)
    built = check_placement(backend)
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    stamps: list[tuple[float, str]] = []

    def on_step(fraction: float, label: str) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append((time.perf_counter(), label))

    photo, truth = synthetic_product("bottle", size)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    cut = backend.segment(photo, on_step)
    timings["segment_s"] = time.perf_counter() - t
    t = time.perf_counter()
    background, _ = backend.background("a product on a wooden table, soft window light", "", size, size, 1, 3.5,
                                       on_step)
    timings["background_s"] = time.perf_counter() - t
    denoise = [s for s, label in stamps if label.startswith("background_generation (")]
    per_step = [b - a for a, b in zip(denoise[1:], denoise[2:], strict=False)]  # after the first (warm-up) step
    composite = background.copy()
    product = photo.convert("RGBA")
    product.putalpha(Image.fromarray(cut.mask))
    composite.paste(product, (0, 0), product)
    mask = np.asarray(Image.fromarray(cut.mask))
    t = time.perf_counter()
    step1 = backend.refine(composite, mask, "a product on a wooden table", "", 0.6, 3.5, 1, on_step)
    timings["refine_s"] = time.perf_counter() - t
    t = time.perf_counter()
    analysis = backend.analyze(step1, mask, on_step)
    timings["analyze_s"] = time.perf_counter() - t
    checked = check_placement(backend)
    return {
        **timings, "build_s": build_s, "components": checked, "built_components": built,
        "s_per_step": statistics.median(per_step) if per_step else float("nan"), "steps": steps, "size": size,
        "step1_s": sum(timings.values()), "analysis_source": analysis["analysis_source"],
        "vlm_attempts": analysis["vlm_attempts"], "vram_peak_gib": torch.cuda.max_memory_allocated() / GiB
        if cuda else 0.0, "plan": backend.plan.summary(), "cutout_confidence": cut.confidence,
        "truth_share": float(truth.mean()),
    }


def tiny_job(device: str) -> dict[str, Any]:
    """The whole job on the tiny models through a real job manager (models as local folders)."""
    import base64

    import anyio

    from pipeline.jobs import JobManager
    from pipeline.schemas import GenerateRequest
    from tests.tiny_models.hub import build_all

    async def run(tmp: Path) -> dict[str, Any]:
        ids = build_all(tmp / "hub")
        folders = {role: next((tmp / "hub" / ("models--" + i.replace("/", "--")) / "snapshots").iterdir())
                   for role, i in ids.items()}
        s = settings_for(folders, tmp / "d", device=device, dtype="bfloat16", flux_steps=4, vlm_max_new_tokens=24,
                         vlm_max_pixels=224 * 224, warmup=True)
        product = base64.b64encode((REPO / "examples" / "product.jpg").read_bytes()).decode()
        async with JobManager(s) as m:
            await m.wait_ready()
            t = time.perf_counter()
            job = await m.submit(GenerateRequest(product_image=product, text_content="GPU", seed=1))
            while m.status(job.job_id, with_metrics=False).status not in ("completed", "failed"):
                await m.wait_for_change(job.job_id, 0.5)
            st = m.status(job.job_id)
            return {"status": st.status, "error": st.error, "seconds": time.perf_counter() - t}

    with tempfile.TemporaryDirectory() as tmp:
        return anyio.run(run, Path(tmp))


def smoke(tmp: Path) -> dict[str, Any]:
    """The production-path code on tiny models on the CPU: proves the bench runs before a GPU is at hand."""
    from tests.tiny_models.hub import build_all

    ids = build_all(tmp / "hub")
    folders = {role: next((tmp / "hub" / ("models--" + i.replace("/", "--")) / "snapshots").iterdir())
               for role, i in ids.items()}
    result = production_path(folders, tmp / "d", "cpu", 256, 2, 16)
    print(json.dumps(result, indent=1, default=str))
    return result


def write_doc(name: str, env: dict[str, str], tiny: dict[str, Any], full: dict[str, Any],
              plans: dict[str, Any]) -> None:
    rows = "\n".join(f"| {card} | {p.level} | {p.peak / GiB:.1f} of {p.device_budget / GiB:.1f} GiB | "
                     f"{p.headroom / GiB:.1f} GiB |" for card, p in plans.items())
    (REPO / "docs" / "gpu.md").write_text(f"""# GPU figures

Measured by `python -m bench.gpu` on {time.strftime('%Y-%m-%d')}: {name}, driver {env['driver']}, CUDA
{env['cuda']}, torch {env['torch']}, diffusers {env['diffusers']}, transformers {env['transformers']},
accelerate {env['accelerate']}, Python {env['python']}.

Full-size models with random weights (published configs, bf16, built on the GPU), placed into the diffusion
backend's cache and timed through its own stage methods; the device and dtype of all {full['components']}
components were asserted after the stages.

| measurement | value |
| --- | --- |
| whole job, tiny models, CUDA (job manager + worker) | {tiny['status']} in {tiny['seconds']:.1f} s |
| building the full-size models on the GPU | {full['build_s']:.1f} s |
| FLUX.1-dev, {full['size']}x{full['size']}, seconds per denoising step (median) | {full['s_per_step']:.3f} s |
| background ({full['steps']} steps, incl. text encoders and VAE decode) | {full['background_s']:.1f} s |
| segmentation (SAM-HQ ViT-H + ViTMatte-B) | {full['segment_s']:.2f} s |
| refinement (img2img, strength 0.6) | {full['refine_s']:.1f} s |
| analysis (Qwen2-VL-2B, {full['vlm_attempts']} attempts at the token limit, an upper bound) | \
{full['analyze_s']:.1f} s |
| step 1 end to end (the four stages above, models resident) | {full['step1_s']:.1f} s |
| VRAM peak during the stages | {full['vram_peak_gib']:.1f} GiB |
| memory plan on this card | {full['plan']} |

Memory plans for the default models by the plan's own accounting (2 GiB reserve):

| card | level | peak | headroom |
| --- | --- | --- | --- |
{rows}

Targets (issue 11): FLUX.1-dev bf16 at 1024x1024 within 10% of 0.24 s/step on an H100; a warm classic-profile
ad under 12 s on an H100.
""")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="sizes and memory plans from the published configs (no GPU)")
    p.add_argument("--smoke", action="store_true", help="the production-path code on tiny models on the CPU")
    args = p.parse_args()
    if args.check or args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            check(Path(tmp)) if args.check else smoke(Path(tmp))
        return
    ensure_packages()
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: run this on a GPU machine (or use --check / --smoke)")
    name = torch.cuda.get_device_name()
    env = versions()
    print(name, env, flush=True)
    tiny = tiny_job("cuda")
    print("tiny job on CUDA:", tiny, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        from bench.published import write_defaults

        folders = write_defaults(Path(tmp) / "published")
        full = production_path(folders, Path(tmp) / "d", "cuda", 1024, 28, 256)
        print("production path:", full, flush=True)
        plans = {card: p for card, p in check(Path(tmp) / "check")["plans"].items() if "no bitsandbytes" not in card}
    write_doc(name, env, tiny, full, plans)
    print("wrote docs/gpu.md")


if __name__ == "__main__":
    main()
