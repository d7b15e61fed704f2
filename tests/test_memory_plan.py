"""The memory plan for the real default models, from their published configs on the meta device.

No weights: bench/published.py writes the config.json files the model repositories publish, the
loader's measuring code reads them as it reads a downloaded model, and ``plan_memory`` (a pure
function) decides per card. Card sizes are what torch reports as total memory, minus the
default 2 GiB reserve.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="model stages need the [models] extra")
pytest.importorskip("diffusers", reason="model stages need the [models] extra")

from bench.published import QWEN2VL_7B, write_defaults, write_qwen2vl  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.worker.models import loader, memory  # noqa: E402
from pipeline.worker.models.memory import ComponentSize, GiB, MemoryPlan  # noqa: E402

RESERVE = 2 * GiB
CARDS = {"H100 80GB": 79.2, "L40S/A6000 48GB": 47.5, "L4 24GB": 22.5, "T4/A4000 16GB": 15.6, "8GB": 7.6}
HOST = 64 * GiB


def budget(card: str) -> int:
    return int(CARDS[card] * GiB) - RESERVE


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("published")
    folders = write_defaults(root)
    folders["vlm7b"] = write_qwen2vl(root / "qwen2-vl-7b", QWEN2VL_7B)
    return folders


@pytest.fixture(scope="module")
def components(published, tmp_path_factory) -> list[ComponentSize]:
    s = Settings(data_dir=tmp_path_factory.mktemp("d"), flux_model=str(published["flux"]),
                 seg_model=str(published["seg"]), matting_model=str(published["matting"]),
                 vlm_model=str(published["vlm"]))
    return loader.measure_models(s, "cuda")


def by_name(components: list[ComponentSize]) -> dict[str, ComponentSize]:
    return {f"{c.model}.{c.name}": c for c in components}


def plan(components: list[ComponentSize], card: str, nf4: bool = True, host: int = HOST) -> MemoryPlan:
    return memory.plan_memory(components, device="cuda", device_bytes=budget(card), host_bytes=host,
                              dtype=torch.bfloat16, nf4_available=nf4)


def test_sizes_come_from_the_configs(components) -> None:
    c = by_name(components)
    # Published sizes: FLUX.1-dev transformer 11.9 B, T5-XXL encoder 4.76 B, CLIP-L text 123 M, VAE 84 M,
    # Qwen2-VL-2B 2.21 B, SAM-HQ ViT-H ~0.64 B.
    assert abs(c["flux.transformer"].params / 11.90e9 - 1) < 0.01
    assert abs(c["flux.text_encoder_2"].params / 4.762e9 - 1) < 0.01
    assert abs(c["flux.text_encoder"].params / 123.1e6 - 1) < 0.01
    assert abs(c["flux.vae"].params / 83.8e6 - 1) < 0.01
    assert abs(c["vlm.vlm"].params / 2.209e9 - 1) < 0.01
    assert 0.6e9 < c["segmenter.sam"].params < 0.7e9
    assert c["flux.transformer"].library == "diffusers" and c["flux.text_encoder_2"].library == "transformers"
    assert c["flux.transformer"].role == "denoiser" and c["flux.vae"].role == "vae"
    # NF4 stores linear weights; diffusers' fp8 casting skips norm/embedding layers (incl. AdaLN's linears)
    assert c["flux.transformer"].castable_params < c["flux.transformer"].linear_params <= c["flux.transformer"].params
    # VAE tiling bounds the decoder's working memory above the tile size only
    assert c["flux.vae"].tiled_activation_bytes <= c["flux.vae"].activation_bytes


def test_80gb_keeps_everything_resident_in_bf16(components) -> None:
    p = plan(components, "H100 80GB")
    assert p.level == "resident" and p.fits and p.dtype == "bfloat16"
    assert set(p.resident) == {"flux", "segmenter", "vlm"} and p.per_stage == ()
    assert all(pl.storage == "dtype" and pl.where == "device" for pl in p.placements.values())
    assert p.headroom > 30 * GiB


def test_48gb_is_bf16_and_evicts_the_vlm_only_when_needed(components, published, tmp_path) -> None:
    p = plan(components, "L40S/A6000 48GB")
    assert p.level == "resident" and p.fits  # FLUX.1-dev + Qwen2-VL-2B + SAM-HQ fit in bf16
    s = Settings(data_dir=tmp_path, flux_model=str(published["flux"]), seg_model=str(published["seg"]),
                 matting_model=str(published["matting"]), vlm_model=str(published["vlm7b"]))
    # With Qwen2-VL-7B, bf16 FLUX (31 GiB) and the VLM (15 GiB) cannot share the card even one stage at a
    # time, so the plan moves to NF4 FLUX with every model kept (rather than reloading 15 GiB per job).
    big = plan(loader.measure_models(s, "cuda"), "L40S/A6000 48GB")
    assert big.fits and big.level == "quantized" and "flux" in big.resident, big.summary()
    assert plan(loader.measure_models(s, "cuda"), "H100 80GB").level == "resident"
    # A 40 GB card holds FLUX in bf16 and loads the segmenter and the VLM for their stages.
    a100 = memory.plan_memory(components, device="cuda", device_bytes=int(39.4 * GiB) - RESERVE, host_bytes=HOST,
                              nf4_available=True)
    assert a100.level == "evict" and a100.fits and a100.resident == ("flux",), a100.summary()
    assert set(a100.per_stage) == {"segmenter", "vlm"}
    assert all(pl.storage == "dtype" and pl.where == "device" for pl in a100.placements.values())


def test_24gb_plan_fits_with_headroom_by_its_own_accounting(components) -> None:
    p = plan(components, "L4 24GB")
    assert p.fits and p.level == "quantized", p.summary()
    assert p.storage("flux", "transformer") == "nf4" and p.storage("flux", "text_encoder_2") == "nf4"
    assert p.offload("flux") is None  # everything stays on the card: no 22 GiB transfer per job
    assert p.headroom >= 2 * GiB, p.summary()
    # Without bitsandbytes (CPU CI exercises this path): fp8 storage for the transformer, and model offload.
    fp8 = plan(components, "L4 24GB", nf4=False)
    assert fp8.fits and fp8.storage("flux", "transformer") == "fp8", fp8.summary()
    assert fp8.headroom > 0


def test_the_old_24gb_plan_does_not_fit(components) -> None:
    """Before: bf16 and model CPU offload of the whole pipeline, i.e. the 22 GiB transformer moved onto a
    22.5 GiB card. The plan's own accounting says it cannot run."""
    old = memory._Candidate("offload", "bf16 + model CPU offload", where="model-offload")
    _, stages, _ = memory._account(components, old, 2, {"segmenter", "vlm"})
    assert stages["flux"] > budget("L4 24GB")
    _, alone, _ = memory._account(components, old, 2, set())
    assert alone["flux"] > budget("L4 24GB")  # even with nothing else on the card


def test_16gb_and_below_run_slowly_or_refuse_clearly(components) -> None:
    p16 = plan(components, "T4/A4000 16GB")
    assert p16.fits and p16.level in ("offload", "group"), p16.summary()
    p8 = plan(components, "8GB")
    assert p8.fits and p8.level == "group", p8.summary()
    refused = plan(components, "8GB", host=16 * GiB)  # offloading needs the weights in host RAM
    assert refused.level == "refused" and not refused.fits
    assert "host RAM" in refused.refusal and "GiB" in refused.refusal
    tiny_card = memory.plan_memory(components, device="cuda", device_bytes=GiB, host_bytes=HOST,
                                   nf4_available=True)
    assert tiny_card.level == "refused" and "needs" in tiny_card.refusal


def test_plan_is_reported_and_serialisable(components) -> None:
    p = plan(components, "L4 24GB")
    d = p.as_dict()
    assert d["level"] == "quantized" and d["fits"] and d["headroom_gib"] >= 2
    assert d["placements"]["flux.transformer"]["storage"] == "nf4"
    assert set(d["stage_peaks_gib"]) == {"flux", "segmenter", "vlm"}
    assert "NF4" in p.summary() and "GiB" in p.summary()
