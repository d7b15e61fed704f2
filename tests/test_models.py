"""The diffusion backend on tiny local models, loaded through the real from_pretrained paths.

Nothing here mocks torch, diffusers or transformers: the models are real architectures with
random weights, built and saved by tests/tiny_models, and run on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import Client
from PIL import Image

pytest.importorskip("diffusers", reason="model stages need the [models] extra")

from diffusers import FluxImg2ImgPipeline  # noqa: E402

from mcp_server.server import build_server  # noqa: E402
from pipeline.worker.backends.diffusion import DiffusionBackend  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.jobs import JobManager  # noqa: E402
from pipeline.worker.models import loader  # noqa: E402
from pipeline.schemas import GenerateRequest  # noqa: E402
from tests.conftest import synthetic_product  # noqa: E402
from tests.tiny_models.flux import build_flux  # noqa: E402
from tests.tiny_models.qwen2vl import build_qwen2vl  # noqa: E402
from tests.tiny_models.segmentation import build_segmenter  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "flux": build_flux(root / "flux"),
        "seg": build_segmenter(root / "seg"),
        "vlm": build_qwen2vl(root / "vlm"),
    }


def model_settings(tmp_path: Path, models: dict[str, Path], **kw) -> Settings:
    values = dict(
        data_dir=tmp_path / "data", backend="diffusion", device="cpu", offline=True,
        flux_model=str(models["flux"]), seg_model=str(models["seg"]), vlm_model=str(models["vlm"]),
        flux_steps=2, seg_input_size=256, vlm_max_new_tokens=6, vlm_max_pixels=224 * 224, vram_budget_gb=4.0,
        stop_grace_s=3.0,
    )
    values.update(kw)
    return Settings(**values)


def req(product_b64: str, **kw) -> GenerateRequest:
    return GenerateRequest(product_image=product_b64, text_content="모델 테스트", width=256, height=256, seed=1, **kw)


async def wait_done(m: JobManager, job_id: str, timeout: float = 120) -> str:
    with anyio.fail_after(timeout):
        while (s := m.status(job_id, with_metrics=False).status) not in ("completed", "failed", "stopped"):
            await m.wait_for_change(job_id, 0.2)
    return s


def cache_info(m: JobManager) -> dict:
    return m.resources().models["backend"]["cache"]


@pytest.mark.anyio
async def test_full_job_on_tiny_models_through_mcp(tmp_path: Path, tiny_models, product_b64: str) -> None:
    progress: list[tuple[float, str]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, message or ""))

    async with JobManager(model_settings(tmp_path, tiny_models, flux_steps=4)) as m:
        async with Client(build_server(m), mode="legacy") as client:
            res = await client.call_tool("generate_ad", {
                "product_image": product_b64, "text_content": "작은 모델", "width": 256, "height": 256, "seed": 3,
            }, progress_callback=on_progress)
        st = res.structured_content
        assert not res.is_error and st["status"] == "completed", st
        assert st["backend"] == "diffusion"
        messages = " | ".join(msg for _, msg in progress)
        assert "background_generation (" in messages and "/4)" in messages
        assert "Qwen2-VL" in messages and "BiRefNet" in messages
        # Fast stages can fall between two notifications; the job record has every stage's timing.
        assert set(m.jobs[st["job_id"]].done) == {"segment", "background", "composite", "refine", "analyze",
                                                  "design", "render", "final"}
        values = [p for p, _ in progress]
        assert values == sorted(set(values)) and values[-1] == 100
        final = Image.open(m.store.artifact(st["job_id"], "final.png"))
        assert final.size == (256, 256)
        info = m.resources().models["backend"]
        assert info["device"] == "cpu" and info["precision"]["dtype"] == "float32"
        analysis = (m.store.job_dir(st["job_id"]) / "analysis.json").read_text()
        for key in ("spatial", "color_material", "lighting_mood", "overall"):
            assert key in analysis


def test_img2img_shares_the_text_to_image_modules(tmp_path: Path, tiny_models) -> None:
    backend = DiffusionBackend(model_settings(tmp_path, tiny_models))
    steps: list[str] = []
    bg, _ = backend.background("a wooden table", "", 256, 256, seed=1, guidance=3.5,
                               on_step=lambda f, s: steps.append(s))
    loads = backend.cache.loads
    pipe = backend._flux()
    i2i = loader.flux_img2img(pipe)
    assert isinstance(i2i, FluxImg2ImgPipeline)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert getattr(i2i, name) is getattr(pipe, name), name
    mask = np.zeros((256, 256), np.uint8)
    mask[100:200, 100:160] = 255
    out = backend.refine(bg, mask, "product on a table", "", 0.6, 3.5, 1, lambda f, s: steps.append(s))
    assert out.size == (256, 256) and backend.cache.loads == loads == 1  # refinement loaded nothing
    assert steps[:3] == ["background_generation (0/2)", "background_generation (1/2)", "background_generation (2/2)"]
    assert any(s.startswith("refinement (") for s in steps)
    # img2img redraws the scene but the product comes from the composite (only tone-harmonised).
    diff = np.abs(np.asarray(out, np.float32) - np.asarray(bg, np.float32)).mean(axis=2)
    inside, outside = diff[110:190, 110:150].mean(), diff[:80].mean()
    assert inside < 12 and outside > inside * 2, (inside, outside)


def test_segmentation_contract(tmp_path: Path, tiny_models) -> None:
    backend = DiffusionBackend(model_settings(tmp_path, tiny_models))
    photo, _ = synthetic_product("box", 320)
    cut = backend.segment(photo, lambda f, s: None)
    assert cut.mask.shape == (320, 320) and cut.mask.dtype == np.uint8 and 0.0 <= cut.confidence <= 1.0
    assert "segmenter" in backend.cache and backend.cache.loads == 1


@pytest.mark.anyio
async def test_models_stay_resident_between_jobs_when_they_fit(tmp_path: Path, tiny_models, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_models)) as m:
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        first = cache_info(m)
        assert first["loads"] == 3 and {e["key"] for e in first["resident"]} == {"segmenter", "flux", "vlm"}
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        second = cache_info(m)
        assert second["loads"] == 3 and second["evictions"] == 0  # the second job loaded nothing


@pytest.mark.anyio
async def test_tiny_budget_unloads_models_after_use(tmp_path: Path, tiny_models, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_models, vram_budget_gb=0.0001)) as m:
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        first = cache_info(m)
        assert first["resident"] == [] or all(not e["resident"] for e in first["resident"])
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        second = cache_info(m)
        assert second["loads"] > first["loads"] and second["evictions"] >= 3


@pytest.mark.anyio
async def test_stop_lands_inside_the_denoising_loop(tmp_path: Path, tiny_models, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_models, flux_steps=200)) as m:
        job = await m.submit(req(product_b64))
        def denoising_step() -> int:
            sub = m.jobs[job.job_id].sub_step or ""
            return int(sub.split("(")[1].split("/")[0]) if sub.startswith("background_generation (") else -1

        with anyio.fail_after(60):
            while denoising_step() < 3:
                await m.wait_for_change(job.job_id, 0.1)
        res = await m.stop(job.job_id)
        # Stopped at a step boundary within the grace period (a kill would say so in the error).
        assert res.status == "stopped" and m.jobs[job.job_id].error == "stopped on request"
        assert 3 <= denoising_step() < 60  # 200 steps were asked for
        nxt = await m.submit(req(product_b64, test_mode=True))
        assert await wait_done(m, nxt.job_id) == "completed"


@pytest.mark.anyio
async def test_cuda_oom_is_retried_twice_then_fails_with_worker_alive(tmp_path, tiny_models, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_models, worker_hooks="tests.faults:oom@background")) as m:
        assert await m.wait_ready()
        pid = m.worker.handle.pid
        job = await m.submit(req(product_b64))
        assert await wait_done(m, job.job_id) == "failed"
        st = m.status(job.job_id)
        assert "out of GPU memory after 2 retries" in st.error
        assert m.resources().models["backend"]["oom_retries_used"] == 2
        assert m.worker.handle.pid == pid and m.worker.alive()
        ok = await m.submit(req(product_b64, test_mode=True))
        assert await wait_done(m, ok.job_id) == "completed"


def test_precision_follows_the_budget() -> None:
    assert loader.plan_precision("cpu", 8).dtype == "float32"
    big = loader.plan_precision("cuda", 70, bnb_available=False)
    assert big.dtype == "bfloat16" and not big.offload
    l4 = loader.plan_precision("cuda", 21, bnb_available=True)
    assert l4.offload and l4.quantize == "nf4" and "offload" in l4.reason
    assert loader.plan_precision("cuda", 21, bnb_available=False).quantize is None


def test_profiles_and_weight_resolution(tmp_path: Path, tiny_models) -> None:
    s = model_settings(tmp_path, tiny_models, flux_steps=None)
    assert loader.flux_profile(s)[1:] == (28, 3.5)
    schnell = s.model_copy(update={"flux_model": "black-forest-labs/FLUX.1-schnell"})
    assert loader.flux_profile(schnell)[1:] == (4, 0.0)
    assert loader.weights_resolvable(s)[0]
    ok, why = loader.weights_resolvable(s.model_copy(update={"vlm_model": "nobody/not-a-model"}))
    assert not ok and "nobody/not-a-model" in why


@pytest.mark.anyio
async def test_resources_show_backend_precision_and_cache_before_any_job(tmp_path: Path, tiny_models) -> None:
    async with JobManager(model_settings(tmp_path, tiny_models)) as m:
        assert await m.wait_ready()
        res = m.resources()
        backend = res.models["backend"]
        assert res.backend == "diffusion" and backend["reason"] == "configured"
        assert backend["precision"]["dtype"] == "float32" and "CPU" in backend["precision"]["reason"]
        assert backend["cache"]["loads"] == 0 and backend["cache"]["budget_mb"] == 4096.0


def test_auto_backend_falls_back_to_draft_without_cuda(tmp_path: Path, tiny_models) -> None:
    from pipeline.worker.main import BackendRegistry

    reg = BackendRegistry(model_settings(tmp_path, tiny_models, backend="auto"))
    assert reg.default == "draft" and "no CUDA" in reg.reason


@pytest.mark.anyio
async def test_poisoned_cuda_context_restarts_the_worker(tmp_path, tiny_models, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_models, worker_hooks="tests.faults:poison@background")) as m:
        assert await m.wait_ready()
        pid = m.worker.handle.pid
        job = await m.submit(req(product_b64))
        assert await wait_done(m, job.job_id) == "failed"
        assert "illegal memory access" in m.status(job.job_id).error
        with anyio.fail_after(30):
            while m.worker.restarts == 0 or not m.worker.ready:
                await anyio.sleep(0.1)
        assert m.worker.handle.pid != pid
        ok = await m.submit(req(product_b64, test_mode=True))
        assert await wait_done(m, ok.job_id) == "completed"
