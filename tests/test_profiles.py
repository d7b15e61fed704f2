"""Model profiles (fast, quality, classic): their declarations, and a whole job per profile on tiny models.

The one-pass profiles run the real pipeline classes (``Flux2KleinInpaintPipeline`` with FLUX.2's
transformer, VAE and a Qwen3 encoder; ``FluxFillPipeline``) with random weights, saved in hub layout and
loaded by id offline in bfloat16, through the real worker process. The tests check what the model is
given (the placed product outside the paint mask, the product reference) and that the product's core
pixels come back unchanged.
"""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import numpy as np
import pytest
from PIL import Image

from pipeline import profiles, registry
from pipeline.config import Settings
from pipeline.schemas import GenerateRequest

torch = pytest.importorskip("torch", reason="model stages need the [models] extra")
pytest.importorskip("diffusers", reason="model stages need the [models] extra")

from pipeline.jobs import JobManager  # noqa: E402
from pipeline.worker.backends.diffusion import DiffusionBackend, text_encoder_layers  # noqa: E402
from pipeline.worker.models import loader  # noqa: E402
from pipeline.worker.provenance import read_png  # noqa: E402
from pipeline.worker.stages.fidelity import product_core, relight_kwargs  # noqa: E402
from pipeline.worker.stages.lighting import Light, light_kwargs  # noqa: E402
from pipeline.worker.stages.scene import paint_mask, place_product, product_reference  # noqa: E402
from tests.conftest import EXAMPLE  # noqa: E402
from tests.helpers import READY_S, wait_until  # noqa: E402
from tests.test_models import assert_placed  # noqa: E402

BF16 = torch.bfloat16
KLEIN = "black-forest-labs/FLUX.2-klein-4B"


# ---- declarations ------------------------------------------------------------------------------
def test_profile_resolution_and_role_overrides(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert profiles.resolve_name(s) == "fast"  # nothing configured: the commercially licensed one-pass path
    refs = loader.model_refs(s)
    assert refs["scene"].id == KLEIN and "flux" not in refs and "matting" not in refs
    assert refs["segmenter"].id == "syscv-community/sam-hq-vit-huge" and refs["vlm"].id == "Qwen/Qwen2-VL-2B-Instruct"
    # ADGEN_FLUX_MODEL alone keeps its old meaning: the classic path with that FLUX.1
    classic = Settings(data_dir=tmp_path, flux_model="black-forest-labs/FLUX.1-schnell")
    assert profiles.resolve_name(classic) == "classic"
    assert loader.model_refs(classic)["flux"].id.endswith("schnell") and loader.flux_profile(classic)[1:] == (4, 0.0)
    kontext = Settings(data_dir=tmp_path, profile="quality", scene_pipeline="FluxKontextInpaintPipeline")
    assert loader.model_refs(kontext)["scene"].id == profiles.KONTEXT
    assert profiles.steps_and_guidance(kontext) == (28, 2.5)
    quality = Settings(data_dir=tmp_path, profile="quality")
    q = loader.model_refs(quality)
    assert q["scene"].id == "black-forest-labs/FLUX.1-Fill-dev" and q["vlm"].id == "Qwen/Qwen2-VL-7B-Instruct"
    assert q["matting"].revision == "bf486d01a7d9e3dbcc8400f7942835caf0eaf76e"  # the pinned ViTMatte
    assert profiles.steps_and_guidance(quality) == (28, 30.0)
    # each role's own setting wins over the profile's default; "" turns matting off
    own = Settings(data_dir=tmp_path, profile="quality", scene_model="me/scene", scene_revision="abc",
                   vlm_model="me/vlm", matting_model="", flux_steps=6)
    r = loader.model_refs(own)
    assert (r["scene"].id, r["scene"].revision, r["vlm"].id) == ("me/scene", "abc", "me/vlm") and "matting" not in r
    assert profiles.steps_and_guidance(own)[0] == 6
    assert profiles.resolve_name(Settings(data_dir=tmp_path, profile="fast", flux_model="x/y")) == "fast"


def test_licences_and_commercial_use() -> None:
    for name, p in profiles.PROFILES.items():
        ids = [p.scene_model, p.segmenter, p.vlm] + ([p.matting] if p.matting else [])
        licences = [profiles.licence_of(i) for i in ids]
        assert all(lic is not profiles.UNKNOWN for lic in licences), name
        if name == "fast":  # the rule: only commercially licensed models, segmenter and VLM included
            assert all(lic.commercial for lic in licences)
    assert not profiles.licence_of("black-forest-labs/FLUX.1-Fill-dev").commercial
    assert profiles.licence_of(KLEIN).name == "Apache-2.0"
    d = profiles.describe(Settings(profile="fast"), {"scene": {"id": KLEIN, "revision": "main"}})
    assert d["name"] == "fast" and d["one_pass"] and d["commercial_use"] is True
    assert d["models"]["scene"] == {"id": KLEIN, "revision": "main", "license": "Apache-2.0", "commercial_use": True}


def test_one_pass_plans() -> None:
    req = GenerateRequest(product_image="aGk=", text_content="x")
    classic = registry.plan_stages(req)
    assert classic == ("segment", "background", "composite", "refine", "analyze", "design", "render", "final")
    one = registry.plan_stages(req, one_pass=True)
    assert one == ("segment", "scene", "analyze", "design", "render", "final")
    assert registry.one_pass_plan(classic) == one and registry.one_pass_plan(one) == one
    step2 = ("final",)
    assert registry.one_pass_plan(step2) == step2


def test_text_encoder_layers_match_the_published_default() -> None:
    # klein 4B: Qwen3-4B (36 layers, hidden 2560), transformer joint_attention_dim 7680 = 3 stacked layers
    assert text_encoder_layers(36, 7680, 2560) == (9, 18, 27)
    assert text_encoder_layers(2, 16, 16) == (1,)  # the tiny model's


def test_scene_inputs_cover_all_but_the_core() -> None:
    from pipeline.worker.layout import Box

    cut = Image.new("RGBA", (60, 100), (0, 0, 0, 0))
    cut.paste(Image.new("RGBA", (40, 80), (200, 30, 30, 255)), (10, 10))

    canvas, mask = place_product(cut, (256, 256), Box(100, 120, 60, 100))
    core, _ = product_core(mask)
    paint = paint_mask(mask)
    assert (paint[core] == 0).all() and (paint[mask == 0] == 255).all()
    ring = (mask > 127) & ~core
    assert ring.any() and (paint[ring] > 0).all()  # the outline is repainted into the scene
    assert np.asarray(canvas)[core].tolist()[0] == [200, 30, 30]
    ref = product_reference(cut)
    assert ref.size == (64, 80) and ref.getpixel((32, 40)) == (200, 30, 30) and ref.getpixel((0, 0)) == (255,) * 3


# ---- tiny models -------------------------------------------------------------------------------
def profile_settings(tmp_path: Path, hub: dict[str, str], profile: str, **kw) -> Settings:
    values = dict(
        data_dir=tmp_path / "data", backend="diffusion", device="cpu", dtype="bfloat16", offline=True,
        profile=profile, seg_model=hub["seg"], vlm_model=hub["vlm"], matting_model=hub["matting"],
        flux_steps=2, vlm_max_new_tokens=24, vlm_max_pixels=224 * 224, matting_max_side=256, vram_budget_gb=4.0,
        stop_grace_s=3.0,
    )
    if profile == "classic":
        values["flux_model"] = hub["flux"]
    else:
        values["scene_model"] = hub["klein" if profile == "fast" else "fill"]
    if profile == "fast":
        values["matting_model"] = None  # the profile's own choice: SAM-HQ's edges
    values.update(kw)
    return Settings(**values)


def placed(size: int = 256) -> tuple[Image.Image, np.ndarray, Image.Image]:
    cut = Image.new("RGBA", (80, 120), (0, 0, 0, 0))
    body = Image.new("RGBA", (60, 100), (30, 90, 200, 255))
    cut.paste(body, (10, 10))
    from pipeline.worker.layout import Box

    canvas, mask = place_product(cut, (size, size), Box(88, 100, 80, 120))
    return canvas, mask, cut


@pytest.mark.parametrize("profile,pipeline_cls", [("fast", "Flux2KleinInpaintPipeline"),
                                                   ("quality", "FluxFillPipeline"),
                                                   ("quality", "FluxKontextInpaintPipeline")])
def test_scene_model_is_given_the_product(tmp_path: Path, tiny_hub, profile: str, pipeline_cls: str) -> None:
    kontext = pipeline_cls == "FluxKontextInpaintPipeline"
    extra = {"scene_pipeline": pipeline_cls, "scene_model": tiny_hub["kontext"]} if kontext else {}
    backend = DiffusionBackend(profile_settings(tmp_path, tiny_hub, profile, **extra))
    assert backend.one_pass and backend.plan is not None and "scene" in backend.plan.resident
    canvas, mask, cut = placed()
    paint, ref = paint_mask(mask), product_reference(cut)
    labels: list[str] = []
    out = backend.scene(canvas, paint, ref, "a wooden table", "", 5, 3.5, lambda f, s: labels.append(s))
    assert out.size == canvas.size and labels == ["scene_generation (0/2)", "scene_generation (1/2)",
                                                  "scene_generation (2/2)"]
    scene = backend.cache.value("scene")
    assert type(scene.pipe).__name__ == pipeline_cls and assert_placed(backend) >= 3
    assert all(p.dtype == BF16 for p in scene.pipe.transformer.parameters())
    again = np.asarray(backend.scene(canvas, paint, ref, "a wooden table", "", 5, 3.5, lambda f, s: None), np.int16)
    assert np.array_equal(again, np.asarray(out, np.int16))  # same inputs and seed: the same scene
    # The model sees the product: another product (Fill: in the unmasked canvas; klein: as the reference too)
    # changes the painted scene around it, though seed, prompt and mask are the same.
    other_cut = Image.new("RGBA", cut.size, (0, 0, 0, 0))
    other_cut.paste(Image.new("RGBA", (60, 100), (240, 200, 20, 255)), (10, 10))
    from pipeline.worker.layout import Box

    other_canvas, _ = place_product(other_cut, canvas.size, Box(88, 100, 80, 120))
    outside = mask == 0
    # Mask semantics: the product's core is outside the painted area, so the model sees it on the canvas
    # (a mask painting everything, or the inverse, would make the product's pixels irrelevant to the scene).
    changed = backend.scene(other_canvas, paint, ref, "a wooden table", "", 5, 3.5, lambda f, s: None)
    seen = np.abs(np.asarray(changed, np.int16) - again)[outside].mean()
    everything = np.full_like(paint, 255)
    blind = np.asarray(backend.scene(other_canvas, everything, ref, "a wooden table", "", 5, 3.5, lambda f, s: None),
                       np.int16)
    blind_again = backend.scene(canvas, everything, ref, "a wooden table", "", 5, 3.5, lambda f, s: None)
    unseen = np.abs(np.asarray(blind_again, np.int16) - blind)[outside].mean()
    assert seen > 0.5 and unseen < seen / 5, (seen, unseen)  # painting everything: the product barely matters
    if profile == "fast" or kontext:  # these also get the product as image_reference: it alone changes the scene
        changed = backend.scene(canvas, paint, product_reference(other_cut), "a wooden table", "", 5, 3.5,
                                lambda f, s: None)
        assert np.abs(np.asarray(changed, np.int16) - again)[outside].mean() > 0.5
    info = backend.info()
    assert info["profile"] == profile and info["one_pass"] and info["generator"]["pipeline"] == pipeline_cls
    assert info["models"]["scene"]["license"] == profiles.UNKNOWN.name  # a test repo has no known licence
    assert info["profile_detail"]["scene_pipeline"] == pipeline_cls


def test_classic_refine_takes_relight_and_the_scene_light(tmp_path: Path, tiny_hub) -> None:
    backend = DiffusionBackend(profile_settings(tmp_path, tiny_hub, "classic"))
    assert not backend.one_pass and relight_kwargs(backend.refine, "none") == {"relight": "none"}
    light = Light(0.2, 0.8, 0.55, 0.83)
    assert light_kwargs(backend.refine, light) == {"light": light}
    canvas, mask, _ = placed()
    core, _ = product_core(mask)
    out = backend.refine(canvas, mask, "a table", "", 0.6, 3.5, 1, lambda f, s: None, relight="none", light=light)
    assert np.array_equal(np.asarray(out)[core], np.asarray(canvas)[core])  # none: the product untouched
    lit = np.asarray(backend.refine(canvas, mask, "a table", "", 0.6, 3.5, 1, lambda f, s: None, relight="full",
                                    light=light), np.float32)
    ys, xs = np.nonzero(core)
    mid = (xs.min() + xs.max()) / 2
    left, right = lit[core & (np.arange(256)[None, :] < mid)].mean(), lit[core & (np.arange(256)[None, :] > mid)].mean()
    assert left > right  # lit from the left: its left side brighter


async def _run(m: JobManager, **kw) -> tuple[str, str]:
    from tests.conftest import png_b64, synthetic_product

    img, truth = synthetic_product("bottle", 256)
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.fromarray((truth * 255).astype(np.uint8), "L"))  # a product PNG with transparency
    photo = png_b64(rgba)
    job = await m.submit(GenerateRequest(product_image=photo, text_content="프로필", width=256, height=256, seed=2,
                                         **kw))
    with anyio.fail_after(300):
        while (s := m.status(job.job_id, with_metrics=False).status) not in ("completed", "failed", "stopped"):
            await m.wait_for_change(job.job_id, 0.2)
    return job.job_id, s


@pytest.mark.anyio
@pytest.mark.parametrize("profile", ["fast", "quality", "classic"])
async def test_full_job_per_profile(tmp_path: Path, tiny_hub, profile: str) -> None:
    async with JobManager(profile_settings(tmp_path, tiny_hub, profile)) as m:
        assert await m.wait_ready(READY_S)
        info = m.resources().models["backend"]
        assert info["profile"] == profile and info["profile_detail"]["name"] == profile
        assert all("license" in e and "commercial_use" in e for e in info["models"].values())
        job_id, status = await _run(m, relight="none", cutout="alpha")
        st = m.status(job_id)
        assert status == "completed", st.error
        done = set(m.jobs[job_id].done)
        step1 = {"scene"} if profile != "classic" else {"background", "composite", "refine"}
        assert done == {"segment", "analyze", "design", "render", "final"} | step1
        assert set(m.jobs[job_id].plan) == done  # the server planned (progress, ETA) the stages that ran
        # relight none: the product's core is the product as placed, bit for bit
        assert st.product_fidelity is not None and st.product_fidelity["delta_e_mean"] == 0.0
        jd = m.store.job_dir(job_id)
        composite, step1_img = np.asarray(Image.open(jd / "composite.png")), np.asarray(Image.open(jd / "step1.png"))
        core, _ = product_core(np.asarray(Image.open(jd / "mask.png")))
        assert core.sum() > 100 and np.array_equal(step1_img[core], composite[core])
        prov = read_png(jd / "final.png")
        assert prov is not None and prov["profile"] == profile
        roles = {e["role"]: e for e in prov["models"]}
        generator = "flux" if profile == "classic" else "scene"
        assert roles[generator]["license"] == profiles.UNKNOWN.name and "license" in roles["vlm"]
        components = {(c["model"], c["class"]) for c in m.resources().models["backend"]["components"]}
        expected = {"fast": "Flux2Transformer2DModel", "quality": "FluxTransformer2DModel",
                    "classic": "FluxTransformer2DModel"}[profile]
        assert (generator, expected) in components
        assert all(c["dtype"] == "bfloat16" for c in m.resources().models["backend"]["components"])
        if profile == "fast":  # the same warm models, a placements job (classic's units: test_placements_variants)
            await _one_pass_units(m)


async def _one_pass_units(m: JobManager) -> None:
    """A one-pass profile paints each placement's scene around its product (scene per unit, per variant);
    every result at its size, with its seed."""
    job = await m.submit(GenerateRequest(
        product_image=base64.b64encode(EXAMPLE.read_bytes()).decode(), text_content="Tiny", seed=3,
        placements=["landscape"], variants=2, use_llm_html=False, use_qwen_analysis=False))
    st = await wait_until(lambda: (s := m.status(job.job_id, with_metrics=False)).status in (
        "completed", "failed", "stopped") and s, 600, "the tiny-model placements job")
    assert st.status == "completed", st.error
    done = m.jobs[job.job_id].done
    assert {"scene#landscape-v1", "scene#landscape-v2"} <= set(done), sorted(done)
    assert set(m.jobs[job.job_id].plan) == set(done)  # progress and ETA follow the stages that really ran
    assert [(r.width, r.height, r.seed) for r in st.results] == [(1200, 628, 3), (1200, 628, 4)]
    for r in st.results:
        path = m.artifact(job.job_id, r.uri.rsplit("/", 1)[-1])
        assert path is not None and Image.open(path).size == (1200, 628)


def test_fast_on_a_24gb_card_keeps_segmenter_and_vlm_resident(tmp_path: Path) -> None:
    """The memory plan for the published klein 4B, SAM-HQ ViT-H and Qwen2-VL-2B configs (no weights)."""
    from bench.published import write_defaults
    from pipeline.worker.models import memory
    from tests.tiny_models.flux2_klein import write_klein_4b_configs

    folders = write_defaults(tmp_path / "published")
    klein = write_klein_4b_configs(tmp_path / "klein")
    s = Settings(data_dir=tmp_path / "d", profile="fast", scene_model=str(klein), seg_model=str(folders["seg"]),
                 vlm_model=str(folders["vlm"]))
    comps = loader.measure_models(s, "cuda")
    sizes = {c.name: c.params for c in comps if c.model == "scene"}
    assert 3.8e9 < sizes["transformer"] < 4.0e9 and 3.9e9 < sizes["text_encoder"] < 4.1e9  # "4B", Qwen3-4B
    gib = 2**30

    def plan(card_gib: float, nf4: bool) -> memory.MemoryPlan:
        return memory.plan_memory(comps, device="cuda", device_bytes=int((card_gib - 2) * gib), host_bytes=64 * gib,
                                  dtype=BF16, nf4_available=nf4)

    assert plan(79.2, True).level == "resident"
    l4 = plan(22.5, True)  # an L4's usable memory, minus the 2 GiB reserve
    assert l4.level == "encoder-nf4" and set(l4.resident) == {"scene", "segmenter", "vlm"}, l4.summary()
    assert l4.storage("scene", "text_encoder") == "nf4" and l4.storage("scene", "transformer") == "dtype"
    # Without bitsandbytes the segmenter and VLM are loaded per stage instead.
    assert plan(22.5, False).level == "evict"


def test_auto_backend_looks_for_the_active_profile_s_weights(tmp_path: Path, tiny_hub) -> None:
    """ADGEN_BACKEND=auto picks the diffusion backend only when the active profile's models are local: by
    default that is fast's FLUX.2 [klein] 4B (not in the test cache), with the scene model configured it is."""
    ok, why = loader.weights_resolvable(Settings(data_dir=tmp_path, offline=True))
    assert not ok and KLEIN in why
    fast = profile_settings(tmp_path, tiny_hub, "fast", backend="auto")
    assert loader.weights_resolvable(fast) == (True, "all weights found locally")
    assert set(loader.model_refs(fast)) == {"scene", "segmenter", "vlm"}
