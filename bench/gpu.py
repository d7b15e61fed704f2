"""GPU figures for docs/gpu.md: run on a CUDA machine.

    python -m bench.gpu              # all three parts, writes docs/gpu.md
    python -m bench.gpu --check      # builds the full-size configs on the meta device only (no GPU needed)

1. the whole pipeline on CUDA with the tiny local models (proves the device path end to end);
2. FULL-SIZE FLUX.1-dev-shaped transformer (the published config, random bf16 weights):
   28 denoising steps at 1024x1024, seconds per step, VRAM peak, time to materialise the weights;
3. FULL-SIZE Qwen2-VL-2B-shaped generation (random bf16 weights): one 448x448 image, 64 new tokens.
Random weights cost the same compute as real ones, so the speeds are honest where the real
weights cannot be fetched.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# FLUX.1-dev transformer/config.json as published by Black Forest Labs.
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
# Qwen2-VL-2B-Instruct config.json (text and vision towers).
QWEN2VL_2B = dict(
    text_config=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                     num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                     tie_word_embeddings=True),
    vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14,
                       spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
)


def materialise(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """Random bf16 weights straight on the device (built on meta: no host copy of 24 GB)."""
    if device == "meta":
        return model
    model = model.to_empty(device=device).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval()


def build_flux(device: str):
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(**FLUX_DEV)
    return materialise(model, device)


def build_qwen(device: str):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(**QWEN2VL_2B)
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    return materialise(model, device)


def timed_build(build) -> tuple[torch.nn.Module, float]:
    """Build a model on the GPU with the peak-memory counter reset; returns it and the seconds taken."""
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    model = build("cuda")
    torch.cuda.synchronize()
    return model, time.perf_counter() - t


def flux_steps(steps: int = 28, size: int = 1024) -> dict:
    model, load_s = timed_build(build_flux)
    tokens = (size // 16) ** 2  # 8x VAE downsampling, then 2x2 packing
    hidden = torch.randn(1, tokens, 64, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(1, 512, 4096, device="cuda", dtype=torch.bfloat16)
    pooled = torch.randn(1, 768, device="cuda", dtype=torch.bfloat16)
    img_ids = torch.zeros(tokens, 3, device="cuda")
    txt_ids = torch.zeros(512, 3, device="cuda")
    guidance = torch.full((1,), 3.5, device="cuda")
    times = []
    with torch.inference_mode():
        for i in range(steps + 2):  # two warm-up steps
            torch.cuda.synchronize()
            t = time.perf_counter()
            model(hidden_states=hidden, encoder_hidden_states=text, pooled_projections=pooled,
                  timestep=torch.full((1,), 1.0 - i / steps, device="cuda"), img_ids=img_ids, txt_ids=txt_ids,
                  guidance=guidance, return_dict=False)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    steps_t = sorted(times[2:])
    out = {"load_s": load_s, "s_per_step": steps_t[len(steps_t) // 2], "total_s": sum(times[2:]),
           "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
           "params_b": sum(p.numel() for p in model.parameters()) / 1e9}
    del model
    torch.cuda.empty_cache()
    return out


def qwen_generate(new_tokens: int = 64, side: int = 448) -> dict:
    model, load_s = timed_build(build_qwen)
    grid = side // 14
    n_patches = grid * grid
    n_image_tokens = n_patches // 4
    cfg = model.config
    ids = [cfg.vision_start_token_id] + [cfg.image_token_id] * n_image_tokens + [cfg.vision_end_token_id] + [100] * 32
    input_ids = torch.tensor([ids], device="cuda")
    pixel_values = torch.randn(n_patches, 3 * 2 * 14 * 14, device="cuda", dtype=torch.bfloat16)
    image_grid_thw = torch.tensor([[1, grid, grid]], device="cuda")
    with torch.inference_mode():
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=pixel_values,
                             image_grid_thw=image_grid_thw, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False)
        torch.cuda.synchronize()
        gen_s = time.perf_counter() - t
    made = out.shape[1] - input_ids.shape[1]
    result = {"load_s": load_s, "generate_s": gen_s, "tokens": made, "tokens_per_s": made / gen_s,
              "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
              "params_b": sum(p.numel() for p in model.parameters()) / 1e9}
    del model
    torch.cuda.empty_cache()
    return result


def tiny_pipeline() -> dict:
    import anyio

    from pipeline.config import Settings
    from pipeline.jobs import JobManager
    from pipeline.schemas import GenerateRequest
    from tests.tiny_models.flux import build_flux as tiny_flux
    from tests.tiny_models.qwen2vl import build_qwen2vl
    from tests.tiny_models.segmentation import build_segmenter

    async def run(tmp: Path) -> dict:
        s = Settings(data_dir=tmp / "d", backend="diffusion", device="cuda", offline=True,
                     flux_model=str(tiny_flux(tmp / "f")), seg_model=str(build_segmenter(tmp / "s")),
                     vlm_model=str(build_qwen2vl(tmp / "v")), flux_steps=4, vlm_max_new_tokens=8)
        product = base64.b64encode((REPO / "examples" / "product.jpg").read_bytes()).decode()
        async with JobManager(s) as m:
            await m.wait_ready()
            t = time.perf_counter()
            job = await m.submit(GenerateRequest(product_image=product, text_content="GPU", seed=1))
            while m.status(job.job_id, with_metrics=False).status not in ("completed", "failed"):
                await m.wait_for_change(job.job_id, 0.5)
            st = m.status(job.job_id)
            return {"status": st.status, "error": st.error, "seconds": time.perf_counter() - t,
                    "backend": m.resources().models.get("backend", {})}

    with tempfile.TemporaryDirectory() as tmp:
        return anyio.run(run, Path(tmp))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="build full-size configs on the meta device and exit")
    args = p.parse_args()
    if args.check:
        for name, build in (("FLUX.1-dev transformer", build_flux), ("Qwen2-VL-2B", build_qwen)):
            model = build("meta")
            print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters (meta)")
        return
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: run this on a GPU machine (or use --check)")
    name = torch.cuda.get_device_name()
    tiny = tiny_pipeline()
    print("tiny pipeline on CUDA:", tiny["status"], f"{tiny['seconds']:.1f} s")
    flux = flux_steps()
    print("FLUX.1-dev-shaped:", flux)
    qwen = qwen_generate()
    print("Qwen2-VL-2B-shaped:", qwen)
    (REPO / "docs" / "gpu.md").write_text(f"""# GPU figures

Device: {name}; torch {torch.__version__}; `python -m bench.gpu` on {time.strftime('%Y-%m-%d')}.

| measurement | value |
| --- | --- |
| whole pipeline, tiny models, CUDA | {tiny['status']} in {tiny['seconds']:.1f} s |
| FLUX.1-dev transformer ({flux['params_b']:.1f} B params, bf16, random) weights on GPU | {flux['load_s']:.1f} s |
| FLUX.1-dev transformer, 1024x1024, seconds per step (median of 28) | {flux['s_per_step']:.3f} s |
| FLUX.1-dev transformer, 28 steps | {flux['total_s']:.1f} s |
| FLUX.1-dev transformer VRAM peak | {flux['peak_gb']:.1f} GiB |
| Qwen2-VL-2B ({qwen['params_b']:.1f} B params, bf16, random) weights on GPU | {qwen['load_s']:.1f} s |
| Qwen2-VL-2B, 448x448 image, {qwen['tokens']} new tokens | {qwen['generate_s']:.2f} s ({qwen['tokens_per_s']:.0f} tokens/s) |
| Qwen2-VL-2B VRAM peak | {qwen['peak_gb']:.1f} GiB |

Random weights cost the same compute as the real ones. Text encoders and the VAE are not timed here.
""")
    print("wrote docs/gpu.md")


if __name__ == "__main__":
    main()
