"""Loading like a user: hub ids with revisions from a local cache in hub layout (offline), local
folders, one clear error for a model that is not on the machine; the opt-in ONNX segmenter; the
analysis answer's schema check."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model stages need the [models] extra")
pytest.importorskip("diffusers", reason="model stages need the [models] extra")

from pipeline.config import Settings  # noqa: E402
from pipeline.jobs import JobManager  # noqa: E402
from pipeline.schemas import GenerateRequest  # noqa: E402
from pipeline.worker.backends.diffusion import DiffusionBackend, parse_analysis  # noqa: E402
from pipeline.worker.errors import UserFacingError  # noqa: E402
from pipeline.worker.models import loader  # noqa: E402
from tests.conftest import synthetic_product  # noqa: E402
from tests.test_models import assert_placed, model_settings  # noqa: E402
from tests.tiny_models.hub import commit_for, publish  # noqa: E402


def test_defaults_are_real_hub_ids_with_revisions(tmp_path: Path) -> None:
    fast = loader.model_refs(Settings(data_dir=tmp_path))  # the default profile (tests/test_profiles.py)
    assert fast["scene"].id == "black-forest-labs/FLUX.2-klein-4B" and fast["scene"].revision == "main"
    s = Settings(data_dir=tmp_path, profile="classic")
    refs = loader.model_refs(s)
    assert refs["flux"].id == "black-forest-labs/FLUX.1-dev" and refs["flux"].revision == "main"
    assert refs["segmenter"].id == "syscv-community/sam-hq-vit-huge"
    assert refs["vlm"].id == "Qwen/Qwen2-VL-2B-Instruct"
    # pinned where a public source states the commit (docs/models.md)
    assert refs["matting"].revision == "bf486d01a7d9e3dbcc8400f7942835caf0eaf76e"
    other = loader.model_refs(s.model_copy(update={"matting_model": "hustvl/vitmatte-small-composition-1k"}))
    assert other["matting"].revision == "main"  # the pin belongs to its model only
    assert loader.model_refs(s.model_copy(update={"vlm_revision": "v1"}))["vlm"].revision == "v1"


def test_loads_by_id_and_by_revision_offline(tmp_path: Path, tiny_hub) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    commit = commit_for(tiny_hub["flux"])
    s = model_settings(tmp_path, tiny_hub, flux_revision=commit)
    backend = DiffusionBackend(s)
    assert {k: backend.info()["models"]["flux"][k] for k in ("id", "revision")} == {"id": tiny_hub["flux"],
                                                                                  "revision": commit}
    image, _ = backend.background("a shelf", "", 256, 256, 1, 3.5, lambda f, m: None)
    assert image.size == (256, 256) and assert_placed(backend) == 4


def test_a_local_folder_works_too(tmp_path: Path, tiny_hub) -> None:
    snapshot = loader.locate(loader.model_refs(model_settings(tmp_path, tiny_hub))["segmenter"])
    assert snapshot is not None and snapshot.is_dir()
    s = model_settings(tmp_path, tiny_hub, seg_model=str(snapshot))
    assert loader.model_refs(s)["segmenter"].revision is None
    backend = DiffusionBackend(s)
    cut = backend.segment(synthetic_product("can", 256)[0], lambda f, m: None)
    assert cut.mask.shape == (256, 256) and assert_placed(backend) == 2


@pytest.mark.parametrize("update", [{"vlm_model": "nobody/not-a-model"}, {"flux_revision": "0" * 40}])
def test_a_missing_model_is_one_clear_error(tmp_path: Path, tiny_hub, update: dict) -> None:
    s = model_settings(tmp_path, tiny_hub, **update)
    ref = loader.model_refs(s)["vlm" if "vlm_model" in update else "flux"]
    backend = DiffusionBackend(s)  # the worker still starts (and serves draft jobs)
    assert backend.plan is None and backend.problem
    with pytest.raises(UserFacingError) as err:
        backend.background("a shelf", "", 256, 256, 1, 3.5, lambda f, m: None)
    message = str(err.value)
    assert ref.id in message and f"revision {ref.revision}" in message
    assert f"`hf download {ref.id} --revision {ref.revision}`" in message and "\n" not in message
    assert backend.info()["problem"] == message


@pytest.mark.anyio
async def test_a_missing_model_fails_the_job_with_the_download_command(tmp_path: Path, tiny_hub, product_b64) -> None:
    s = model_settings(tmp_path, tiny_hub, seg_model="nobody/sam-hq-missing")
    async with JobManager(s) as m:
        job = await m.submit(GenerateRequest(product_image=product_b64, text_content="x", width=256, height=256))
        with anyio.fail_after(240):
            while m.status(job.job_id, with_metrics=False).status not in ("completed", "failed"):
                await m.wait_for_change(job.job_id, 0.2)
        st = m.status(job.job_id)
        assert st.status == "failed"
        assert "nobody/sam-hq-missing" in st.error and "hf download nobody/sam-hq-missing --revision main" in st.error
        assert "Traceback" not in st.error and "\n" not in st.error


@pytest.fixture(scope="module")
def birefnet_onnx() -> str:
    pytest.importorskip("onnxruntime", reason="the ONNX segmenter needs the [birefnet] extra")
    pytest.importorskip("onnx", reason="building the tiny graph needs onnx")
    from tests.tiny_models.birefnet_onnx import build_birefnet_onnx

    repo = "adgen-tiny/birefnet-onnx"
    publish(Path(os.environ["HF_HUB_CACHE"]), repo, build_birefnet_onnx)
    return repo


def test_birefnet_onnx_is_an_opt_in_segmenter(tmp_path: Path, tiny_hub, birefnet_onnx) -> None:
    s = model_settings(tmp_path, tiny_hub, segmenter="birefnet-onnx", birefnet_onnx=birefnet_onnx, seg_input_size=64)
    backend = DiffusionBackend(s)
    assert backend.plan is not None and "segmenter.birefnet" in backend.plan.placements
    labels: list[str] = []
    cut = backend.segment(synthetic_product("bottle", 200)[0], lambda f, m: labels.append(m))
    assert cut.method == "birefnet-onnx" and cut.mask.shape == (200, 200) and cut.mask.dtype == np.uint8
    assert "segmentation (BiRefNet, ONNX)" in labels
    session = backend.cache.value("segmenter")
    assert session.providers == ["CPUExecutionProvider"] and session.path.endswith("onnx/model.onnx")
    missing = model_settings(tmp_path, tiny_hub, segmenter="birefnet-onnx", birefnet_onnx=birefnet_onnx,
                             birefnet_onnx_file="onnx/model_fp16.onnx")
    with pytest.raises(UserFacingError, match="onnx/model_fp16.onnx"):
        DiffusionBackend(missing).segment(synthetic_product("box", 64)[0], lambda f, m: None)


def test_analysis_answer_schema() -> None:
    good = ('{"spatial": "The bottle stands centre left; the top third is empty.", "color_material": "Warm beige '
            'wood and frosted glass.", "lighting_mood": "Soft light from the left gives a calm morning mood.", '
            '"overall": "A calm product shot on a wooden table."}')
    assert parse_analysis(good)["overall"] == "A calm product shot on a wooden table."
    assert parse_analysis("Sure! ```json\n" + good + "\n```") is not None  # fenced or chatty answers
    assert parse_analysis(good[:-40]) is None  # cut off by the token limit
    assert parse_analysis(good.replace('"overall"', '"summary"')) is None  # a key missing
    assert parse_analysis(good.replace("wooden table.", "wooden")) is None  # not a whole sentence
    assert parse_analysis('{"spatial": 3}') is None and parse_analysis("no json here") is None


def test_analysis_falls_back_to_pixels_after_one_retry(tmp_path: Path, tiny_hub) -> None:
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub))
    photo, mask = synthetic_product("box", 256)
    labels: list[str] = []
    result = backend.analyze(photo, (mask * 255).astype(np.uint8), lambda f, m: labels.append(m))
    # A random tiny VLM cannot answer the schema: one generation, one retry, then the pixel statistics.
    assert result["analysis_source"] == "pixels" and result["vlm_attempts"] == 2
    assert labels == ["image_analysis (VLM, one JSON answer)", "image_analysis (VLM, retry)"]
    for key in ("spatial", "color_material", "lighting_mood", "overall"):
        assert isinstance(result[key], str) and result[key].endswith(".")
    assert assert_placed(backend) == 1
