"""The diffusion backend on tiny local models, loaded BY ID through the real from_pretrained paths.

Nothing here mocks torch, diffusers or transformers: the models are the real classes with random
weights (tests/tiny_models), published into a throwaway Hugging Face cache in hub layout and
loaded offline by id, in bfloat16 (the production dtype on CUDA; bf16 runs on CPU too). After
every stage the tests check the device and dtype of every loaded component.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import Client
from PIL import Image

torch = pytest.importorskip("torch", reason="model stages need the [models] extra")
pytest.importorskip("diffusers", reason="model stages need the [models] extra")

from diffusers import FluxImg2ImgPipeline  # noqa: E402

from mcp_server.server import build_server  # noqa: E402
from pipeline import registry  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.jobs import JobManager  # noqa: E402
from pipeline.schemas import GenerateRequest  # noqa: E402
from pipeline.worker.backends.diffusion import DiffusionBackend, img2img_steps, trimap  # noqa: E402
from pipeline.worker.context import JobStopped  # noqa: E402
from pipeline.worker.errors import UserFacingError  # noqa: E402
from pipeline.worker.models import loader  # noqa: E402
from pipeline.worker.models.cache import named_modules  # noqa: E402
from tests.conftest import synthetic_product  # noqa: E402
from tests.helpers import READY_S, wait_until  # noqa: E402

BF16 = torch.bfloat16


def model_settings(tmp_path: Path, hub: dict[str, str], **kw) -> Settings:
    values = dict(
        data_dir=tmp_path / "data", backend="diffusion", device="cpu", dtype="bfloat16", offline=True,
        flux_model=hub["flux"], seg_model=hub["seg"], matting_model=hub["matting"], vlm_model=hub["vlm"],
        flux_steps=2, vlm_max_new_tokens=24, vlm_max_pixels=224 * 224, matting_max_side=256, vram_budget_gb=4.0,
        stop_grace_s=3.0,
    )
    values.update(kw)
    return Settings(**values)


def req(product_b64: str, **kw) -> GenerateRequest:
    return GenerateRequest(product_image=product_b64, text_content="모델 테스트", width=256, height=256, seed=1, **kw)


async def wait_done(m: JobManager, job_id: str, timeout: float = 240) -> str:
    with anyio.fail_after(timeout):
        while (s := m.status(job_id, with_metrics=False).status) not in ("completed", "failed", "stopped"):
            await m.wait_for_change(job_id, 0.2)
    return s


def cache_info(m: JobManager) -> dict:
    return m.resources().models["backend"]["cache"]


def assert_placed(backend: DiffusionBackend, dtype: torch.dtype = BF16) -> int:
    """Every parameter of every loaded component on the backend's device in ``dtype`` (or in the fp8
    storage the memory plan gave it); returns how many components were checked."""
    checked = 0
    plan = backend.plan
    assert plan is not None
    for key in ("flux", "scene", "segmenter", "vlm"):
        if key not in backend.cache:
            continue
        for name, module in named_modules(backend.cache.value(key)).items():
            allowed = {dtype}
            if plan.storage(key, name) == "fp8":
                allowed.add(torch.float8_e4m3fn)
            dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
            devices = {p.device.type for p in module.parameters()}
            assert dtypes <= allowed and dtypes, f"{key}.{name}: {dtypes}"
            assert devices == {backend.device}, f"{key}.{name}: {devices}"
            checked += 1
    # get_resources reports the same thing
    for c in backend.info()["components"]:
        assert c["device"] == backend.device and c["dtype"] in {str(d).removeprefix("torch.") for d in (dtype,
                                                                  torch.float8_e4m3fn)}, c
    return checked


@pytest.mark.anyio
async def test_full_job_on_tiny_models_through_mcp(tmp_path: Path, tiny_hub, product_b64: str) -> None:
    progress: list[tuple[float, str]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, message or ""))

    async with JobManager(model_settings(tmp_path, tiny_hub, flux_steps=4)) as m:
        async with Client(build_server(m), mode="legacy") as client:
            res = await client.call_tool("generate_ad", {
                "product_image": product_b64, "text_content": "작은 모델", "width": 256, "height": 256, "seed": 3,
                "wait_seconds": 55,
            }, progress_callback=on_progress)
            st = res.structured_content
            with anyio.fail_after(300):  # a loaded CI machine: follow it the way an agent would
                while not res.is_error and st["status"] in ("pending", "running"):
                    res = await client.call_tool("get_status", {"job_id": st["job_id"], "wait_seconds": 55},
                                                 progress_callback=on_progress)
                    st = res.structured_content
        assert not res.is_error and st["status"] == "completed", st
        assert st["backend"] == "diffusion"
        messages = " | ".join(msg for _, msg in progress)
        assert "background_generation (" in messages and "/4)" in messages
        # Sub-steps that finish between two notifications are not all seen (SAM-HQ's own is often skipped
        # under load); the segmenter's sub-steps and the VLM's are.
        assert "segmentation (" in messages and "image_analysis (VLM" in messages
        # Fast stages can fall between two notifications; the job record has every stage's timing.
        assert set(m.jobs[st["job_id"]].done) == {"segment", "background", "composite", "refine", "analyze",
                                                  "design", "render", "final"}
        values = [p for p, _ in progress]
        assert values == sorted(values) and values[-1] == 100
        final = Image.open(m.store.artifact(st["job_id"], "final.png"))
        assert final.size == (256, 256)
        info = m.resources().models["backend"]
        assert info["device"] == "cpu" and info["dtype"] == "bfloat16"
        names = {(c["model"], c["name"]): c for c in info["components"]}
        assert {("flux", "transformer"), ("flux", "text_encoder_2"), ("flux", "vae"), ("segmenter", "sam"),
                ("segmenter", "matting"), ("vlm", "vlm")} <= set(names)
        assert names[("flux", "transformer")]["class"] == "FluxTransformer2DModel"
        assert names[("segmenter", "sam")]["class"] == "SamHQModel"
        assert names[("segmenter", "matting")]["class"] == "VitMatteForImageMatting"
        assert all(c["dtype"] == "bfloat16" and c["device"] == "cpu" and c["bytes"] > 0 for c in names.values())
        analysis = (m.store.job_dir(st["job_id"]) / "analysis.json").read_text()
        for key in ("spatial", "color_material", "lighting_mood", "overall", "analysis_source"):
            assert key in analysis


def test_refine_keeps_the_shared_flux_in_bf16(tmp_path: Path, tiny_hub) -> None:
    """FluxImg2ImgPipeline.from_pipe(pipe) converts the shared modules to fp32 in place; the backend's
    img2img must leave them in bf16, on their device, and be built once with its parent."""
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub))
    steps: list[str] = []
    bg, _ = backend.background("a wooden table", "", 256, 256, seed=1, guidance=3.5,
                               on_step=lambda f, s: steps.append(s))
    assert assert_placed(backend) == 4
    flux = backend.cache.value("flux")
    assert isinstance(flux.i2i, FluxImg2ImgPipeline)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert getattr(flux.i2i, name) is getattr(flux.t2i, name), name
    i2i = flux.i2i
    mask = np.zeros((256, 256), np.uint8)
    mask[100:200, 100:160] = 255
    for _ in range(2):
        out = backend.refine(bg, mask, "product on a table", "", 0.6, 3.5, 1, lambda f, s: steps.append(s))
        assert assert_placed(backend) == 4
        assert backend.cache.value("flux").i2i is i2i  # built once, cached with its parent
    assert out.size == (256, 256) and backend.cache.loads == 1  # refinement loaded nothing
    assert all(p.dtype == BF16 for p in flux.t2i.transformer.parameters())
    assert steps[:3] == ["background_generation (0/2)", "background_generation (1/2)", "background_generation (2/2)"]
    assert any(s.startswith("refinement (") for s in steps)
    # img2img redraws the scene but the product comes from the composite (only tone-harmonised).
    diff = np.abs(np.asarray(out, np.float32) - np.asarray(bg, np.float32)).mean(axis=2)
    inside, outside = diff[110:190, 110:150].mean(), diff[:80].mean()
    assert inside < 12 and outside > inside * 2, (inside, outside)


def test_every_stage_keeps_device_and_dtype(tmp_path: Path, tiny_hub) -> None:
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub))
    photo, _ = synthetic_product("bottle", 320)
    labels: list[str] = []
    cut = backend.segment(photo, lambda f, s: labels.append(s))
    assert assert_placed(backend) == 2  # SAM-HQ and ViTMatte
    bg, _ = backend.background("studio", "", 256, 256, 2, 3.5, lambda f, s: None)
    assert assert_placed(backend) == 6
    mask = np.zeros((256, 256), np.uint8)
    mask[60:200, 90:170] = 255
    step1 = backend.refine(bg, mask, "studio", "", 0.5, 3.5, 2, lambda f, s: None)
    assert assert_placed(backend) == 6
    analysis = backend.analyze(step1, mask, lambda f, s: labels.append(s))
    assert assert_placed(backend) == 7
    assert cut.mask.shape == (320, 320) and step1.size == (256, 256)
    assert {"spatial", "color_material", "lighting_mood", "overall", "free_space"} <= set(analysis)
    assert "segmentation (SAM-HQ)" in labels and "segmentation (ViTMatte edges)" in labels
    assert backend.info()["memory_plan"]["level"] == "resident"


def test_segmentation_contract(tmp_path: Path, tiny_hub) -> None:
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub))
    photo, _ = synthetic_product("box", 320)
    cut = backend.segment(photo, lambda f, s: None)
    assert cut.mask.shape == (320, 320) and cut.mask.dtype == np.uint8 and 0.0 <= cut.confidence <= 1.0
    assert cut.method == "sam-hq+vitmatte" and set(cut.components) == {"predicted_iou", "decided",
                                                                        "classical_agreement"}
    assert "segmenter" in backend.cache and backend.cache.loads == 1


def test_vitmatte_decides_only_the_band_around_the_edge(tmp_path: Path, tiny_hub) -> None:
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub, matting_max_side=128))
    photo, truth = synthetic_product("can", 300)
    models = backend._get("segmenter")
    alpha = backend._matte(models, photo, truth)  # a 300 px photo matted at 128 px, alpha at 300 px
    tri = trimap(truth, max(3, round(0.012 * 300)))
    assert alpha.shape == (300, 300) and alpha.dtype == np.float32
    assert (alpha[tri == 255] == 1).all() and (alpha[tri == 0] == 0).all()
    band = alpha[tri == 128]
    assert band.size > 0 and ((band >= 0) & (band <= 1)).all()
    assert assert_placed(backend) == 2


@pytest.mark.anyio
async def test_models_stay_resident_between_jobs_when_they_fit(tmp_path: Path, tiny_hub, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_hub)) as m:
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        first = cache_info(m)
        assert first["loads"] == 3 and {e["key"] for e in first["resident"]} == {"segmenter", "flux", "vlm"}
        assert first["vram_mb"] == 0 and first["host_mb"] > 0  # a CPU run: every byte is host RAM
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        second = cache_info(m)
        assert second["loads"] == 3 and second["evictions"] == 0  # the second job loaded nothing


def _plan_levels(tmp_path: Path, hub: dict[str, str], **kw) -> dict[str, int]:
    """The device bytes each level of the memory plan needs for the tiny models (budget -> level)."""
    from pipeline.worker.models import memory

    s = model_settings(tmp_path, hub, **kw)
    comps = loader.measure_models(s, "cpu")
    need = {}
    full = memory.plan_memory(comps, device="cpu", device_bytes=2**40, host_bytes=2**40, dtype=BF16)
    need["resident"] = full.peak
    # The smallest budget at which each level is still chosen: bisect on the pure function.
    for level in ("evict", "quantized"):
        lo, hi = 0, full.peak
        while hi - lo > 64:
            mid = (lo + hi) // 2
            p = memory.plan_memory(comps, device="cpu", device_bytes=mid, host_bytes=2**40, dtype=BF16)
            order = ["resident", "evict", "quantized", "refused"]
            if order.index(p.level) <= order.index(level):
                hi = mid
            else:
                lo = mid
        need[level] = hi
    return need


@pytest.mark.anyio
async def test_per_stage_models_are_dropped_after_use(tmp_path: Path, tiny_hub, product_b64) -> None:
    need = _plan_levels(tmp_path, tiny_hub)
    budget = (need["evict"] + need["resident"]) / 2 / 2**30  # room for FLUX, not for everything at once
    async with JobManager(model_settings(tmp_path, tiny_hub, vram_budget_gb=budget)) as m:
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        plan = m.resources().models["backend"]["memory_plan"]
        assert plan["level"] == "evict" and list(plan["resident"]) == ["flux"], plan
        first = cache_info(m)
        assert [e["key"] for e in first["resident"]] == ["flux"]
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        second = cache_info(m)
        assert second["loads"] == first["loads"] + 2 and second["evictions"] >= 4  # segmenter, VLM again; FLUX kept


def test_fp8_storage_when_bf16_does_not_fit(tmp_path: Path, tiny_hub) -> None:
    """The 24 GB path as CI can run it: FLUX's transformer and T5 stored in fp8 (layerwise casting), computed
    in bf16, on a machine whose budget holds fp8 but not bf16 weights."""
    need = _plan_levels(tmp_path, tiny_hub)
    assert need["quantized"] < need["evict"]
    budget = (need["quantized"] + need["evict"]) / 2 / 2**30
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub, vram_budget_gb=budget))
    assert backend.plan is not None and backend.plan.level == "quantized", backend.plan
    assert backend.plan.storage("flux", "transformer") == "fp8" and backend.plan.storage("flux", "vae") == "dtype"
    bg, _ = backend.background("a wooden table", "", 256, 256, 1, 3.5, lambda f, s: None)
    mask = np.zeros((256, 256), np.uint8)
    mask[100:200, 100:160] = 255
    out = backend.refine(bg, mask, "table", "", 0.6, 3.5, 1, lambda f, s: None)
    assert out.size == bg.size == (256, 256) and np.asarray(bg).std() > 0
    flux = backend.cache.value("flux")
    stored = {p.dtype for p in flux.t2i.transformer.parameters()}
    assert stored == {torch.float8_e4m3fn, BF16}  # norms and embeddings stay in bf16, as diffusers skips them
    # The plan counted, from the config on the meta device, exactly the parameters that are now stored in fp8.
    fp8_params = sum(p.numel() for p in flux.t2i.transformer.parameters() if p.dtype == torch.float8_e4m3fn)
    measured = {c.name: c for c in loader.measure_models(backend.settings, "cpu") if c.model == "flux"}
    assert fp8_params == measured["transformer"].castable_params
    assert all(p.dtype == BF16 for p in flux.t2i.text_encoder_2.parameters())  # see memory.plan_memory
    assert all(p.dtype == BF16 for p in flux.t2i.vae.parameters())
    assert assert_placed(backend) == 4
    info = backend.info()
    assert {c["name"]: c["dtype"] for c in info["components"]}["transformer"] == "float8_e4m3fn"
    assert info["memory_plan"]["placements"]["flux.transformer"]["storage"] == "fp8"


@pytest.mark.anyio
async def test_a_plan_that_does_not_fit_refuses_model_jobs_clearly(tmp_path: Path, tiny_hub, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_hub, vram_budget_gb=1e-6)) as m:
        job = await m.submit(req(product_b64))
        assert await wait_done(m, job.job_id) == "failed"
        error = m.status(job.job_id).error
        assert "do not fit this machine" in error and "GiB" in error and "\n" not in error
        backend = m.resources().models["backend"]
        assert backend["memory_plan"]["level"] == "refused" and backend["cache"]["loads"] == 0
        ok = await m.submit(req(product_b64, test_mode=True))  # the draft path still works
        assert await wait_done(m, ok.job_id) == "completed"


def test_stop_ends_the_loop_through_interrupt(tmp_path: Path, tiny_hub) -> None:
    """A stop request inside the denoising loop sets diffusers' _interrupt (the pipeline then finishes its
    own clean-up, which releases offload hooks) and is raised only after the pipeline returned."""
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub, flux_steps=6))
    seen: list[str] = []

    def on_step(fraction: float, label: str) -> None:
        seen.append(label)
        if label == "background_generation (2/6)":
            raise JobStopped()

    with pytest.raises(JobStopped):
        backend.background("a table", "", 256, 256, 1, 3.5, on_step)
    flux = backend.cache.value("flux")
    assert flux.t2i._interrupt is True  # the loop was ended by diffusers' flag, not by an exception
    assert seen[-1] == "background_generation (2/6)"  # no step ran after the stop
    # The pipeline is intact for the next job.
    bg, _ = backend.background("a table", "", 256, 256, 1, 3.5, lambda f, s: None)
    assert bg.size == (256, 256) and flux.t2i._interrupt is False


def test_refinement_label_counts_the_steps_img2img_really_runs(tmp_path: Path, tiny_hub) -> None:
    assert img2img_steps(28, 0.6) == 17 and img2img_steps(4, 0.6) == 3 and img2img_steps(4, 1.0) == 4
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub, flux_steps=4))
    composite = Image.new("RGB", (256, 256), (120, 110, 100))
    labels: list[str] = []
    backend.refine(composite, np.zeros((256, 256), np.uint8), "table", "", 0.6, 3.5, 1,
                   lambda f, s: labels.append(s))
    refinement = [s for s in labels if s.startswith("refinement")]
    assert refinement == ["refinement (1/3)", "refinement (2/3)", "refinement (3/3)"], refinement


@pytest.mark.anyio
async def test_stop_lands_inside_the_denoising_loop(tmp_path: Path, tiny_hub, product_b64) -> None:
    # The grace period covers the VAE decode diffusers still runs after an interrupted loop (seconds in bf16
    # on a loaded CPU, a fraction of a second on a GPU).
    async with JobManager(model_settings(tmp_path, tiny_hub, flux_steps=200, stop_grace_s=60.0)) as m:
        job = await m.submit(req(product_b64))

        def denoising_step() -> int:
            sub = m.jobs[job.job_id].sub_step or ""
            return int(sub.split("(")[1].split("/")[0]) if sub.startswith("background_generation (") else -1

        with anyio.fail_after(120):
            while denoising_step() < 3:
                await m.wait_for_change(job.job_id, 0.1)
        res = await m.stop(job.job_id)
        # Stopped at a step boundary within the grace period (a kill would say so in the error).
        assert res.status == "stopped" and m.jobs[job.job_id].error == "stopped on request"
        assert 3 <= denoising_step() < 60  # 200 steps were asked for
        nxt = await m.submit(req(product_b64, test_mode=True))
        assert await wait_done(m, nxt.job_id) == "completed"


@pytest.mark.anyio
async def test_cuda_oom_is_retried_twice_then_fails_with_worker_alive(tmp_path, tiny_hub, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_hub, worker_hooks="tests.faults:oom@background")) as m:
        assert await m.wait_ready(READY_S)
        pid = m.worker.handle.pid
        job = await m.submit(req(product_b64))
        assert await wait_done(m, job.job_id) == "failed"
        st = m.status(job.job_id)
        assert "out of GPU memory after 2 retries" in st.error
        assert m.resources().models["backend"]["oom_retries_used"] == 2
        assert m.worker.handle.pid == pid and m.worker.alive()
        ok = await m.submit(req(product_b64, test_mode=True))
        assert await wait_done(m, ok.job_id) == "completed"


def test_oom_retry_flushes_after_the_failed_attempt_is_released(tmp_path: Path, tiny_hub) -> None:
    """The flush must run outside the except block: inside it, the exception's traceback keeps the failed
    attempt's frames, and the tensors they hold, alive, so nothing would be freed."""
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub))
    refs: list[weakref.ref] = []
    alive_at_flush: list[bool] = []
    attempt = 0

    def watch(phase: str, info: dict) -> None:
        if phase == "start" and refs:
            alive_at_flush.append(refs[-1]() is not None)

    def fn() -> str:
        nonlocal attempt
        attempt += 1
        scratch = torch.empty(1 << 20, dtype=torch.uint8)  # what a failed attempt leaves behind
        refs.append(weakref.ref(scratch))
        if attempt == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 MiB")
        return "ok"

    gc.callbacks.append(watch)
    try:
        assert backend._with_oom_retry(registry.BACKGROUND, "flux", fn) == "ok"
    finally:
        gc.callbacks.remove(watch)
    assert attempt == 2 and backend.oom_retries_used == 1
    assert alive_at_flush and not any(alive_at_flush), alive_at_flush


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real allocation failure needs a GPU")
def test_real_cuda_oom_is_retried_and_memory_returns(tmp_path: Path, tiny_hub) -> None:
    """On a GPU: a real allocation failure under a small memory fraction, retried, with memory returned."""
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub, device="cuda"))
    free, total = torch.cuda.mem_get_info()
    torch.cuda.set_per_process_memory_fraction(0.05)
    try:
        def fn() -> None:
            torch.empty(int(total * 0.2), dtype=torch.uint8, device="cuda")  # over the fraction: a real OOM

        with pytest.raises(UserFacingError, match="out of GPU memory after 2 retries"):
            backend._with_oom_retry(registry.BACKGROUND, "flux", fn)
        assert torch.cuda.memory_allocated() < total * 0.01
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def test_profiles_and_weight_resolution(tmp_path: Path, tiny_hub) -> None:
    s = model_settings(tmp_path, tiny_hub, flux_steps=None)
    assert loader.flux_profile(s)[1:] == (28, 3.5)
    schnell = s.model_copy(update={"flux_model": "black-forest-labs/FLUX.1-schnell"})
    assert loader.flux_profile(schnell)[1:] == (4, 0.0)
    assert loader.weights_resolvable(s)[0]
    ok, why = loader.weights_resolvable(s.model_copy(update={"vlm_model": "nobody/not-a-model"}))
    assert not ok and "nobody/not-a-model" in why


@pytest.mark.anyio
async def test_resources_show_backend_plan_and_cache_before_any_job(tmp_path: Path, tiny_hub) -> None:
    async with JobManager(model_settings(tmp_path, tiny_hub)) as m:
        assert await m.wait_ready(READY_S)
        res = m.resources()
        backend = res.models["backend"]
        assert res.backend == "diffusion" and backend["reason"] == "configured"
        assert backend["dtype"] == "bfloat16" and backend["memory_plan"]["level"] == "resident"
        assert backend["memory_plan"]["fits"] and backend["memory_plan"]["headroom_gib"] > 0
        assert backend["models"]["flux"] == {"id": tiny_hub["flux"], "revision": "main",
                                             "license": "unknown (see the model card)", "commercial_use": False}
        assert backend["profile"] == "classic"  # only flux_model is configured: its old meaning
        assert backend["cache"]["loads"] == 0 and backend["cache"]["budget_mb"] == 4096.0
        assert backend["components"] == []


@pytest.mark.anyio
async def test_warm_start_loads_the_plan_s_models_before_the_first_job(tmp_path: Path, tiny_hub, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_hub, warmup=True)) as m:
        assert await m.wait_ready(READY_S)
        assert m.worker.state.warming and m.health().status == "warming"  # nothing loaded yet at ready
        await wait_until(lambda: not m.worker.state.warming and cache_info(m)["loads"] >= 3, 180, "warm start")
        assert m.health().status == "ok"
        warm = cache_info(m)
        assert warm["loads"] == 3 and {e["key"] for e in warm["resident"]} == {"flux", "segmenter", "vlm"}
        assert await wait_done(m, (await m.submit(req(product_b64))).job_id) == "completed"
        assert cache_info(m)["loads"] == 3  # the first job paid no load
        assert m.worker.state.warming is False


def test_warm_start_defaults_to_cuda_only(tmp_path: Path, tiny_hub) -> None:
    from pipeline.worker.main import BackendRegistry

    reg = BackendRegistry(model_settings(tmp_path, tiny_hub))
    assert reg.warmup_wanted() is torch.cuda.is_available()
    assert BackendRegistry(model_settings(tmp_path, tiny_hub, warmup=True)).warming()
    assert not BackendRegistry(model_settings(tmp_path, tiny_hub, backend="draft", warmup=True)).warming()


def test_auto_backend_falls_back_to_draft_without_cuda(tmp_path: Path, tiny_hub) -> None:
    from pipeline.worker.main import BackendRegistry

    reg = BackendRegistry(model_settings(tmp_path, tiny_hub, backend="auto"))
    assert reg.default == "draft" and "no CUDA" in reg.reason


@pytest.mark.anyio
async def test_poisoned_cuda_context_restarts_the_worker(tmp_path, tiny_hub, product_b64) -> None:
    async with JobManager(model_settings(tmp_path, tiny_hub, worker_hooks="tests.faults:poison@background")) as m:
        assert await m.wait_ready(READY_S)
        pid = m.worker.handle.pid
        job = await m.submit(req(product_b64))
        assert await wait_done(m, job.job_id) == "failed"
        assert "illegal memory access" in m.status(job.job_id).error
        await wait_until(lambda: m.worker.restarts and m.worker.ready, 120, "a fresh worker after the poisoned one")
        assert m.worker.handle.pid != pid
        ok = await m.submit(req(product_b64, test_mode=True))
        assert await wait_done(m, ok.job_id) == "completed"
