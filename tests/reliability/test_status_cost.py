"""What keeps status polls and job accepts cheap, checked for the behaviour they must keep.

* The output schemas clients validate against are published in a faster spelling that must accept and
  refuse exactly what the SDK's own schema does (checked on real results and on broken ones).
* Status links come from a cache of files seen on disk; new files still show up, removed jobs do not.
* A job accepted while the worker is busy gets its images written after the answer: the files are the
  same, the queue order holds, and a write that fails fails only that job, with a one-line reason.
* The photo's EXIF orientation is still applied (it is now applied in place).
* System metrics are refreshed off the event loop and served while a refresh runs.
"""

from __future__ import annotations

import base64
import copy
import io
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from jsonschema.validators import validator_for
from mcp import Client
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from PIL import Image

from mcp_server.schema_compact import compact_schema
from mcp_server.server import build_server
from pipeline.config import Settings
from pipeline.images import PHOTO_UPLOAD, load_image
from pipeline.jobs import JobManager
from pipeline.jobs.store import JobStore
from pipeline.schemas import GenerateRequest, ResourcesResponse, StatusResponse
from tests.conftest import png_b64
from tests.helpers import READY_S, wait_for_job, wait_until

pytestmark = pytest.mark.anyio


def _sdk_schema(model: type) -> dict[str, Any]:
    """The output schema exactly as the SDK derives it from a tool's return model."""
    schema = FuncMetadata(arg_model=ArgModelBase, output_model=model).output_schema
    assert schema is not None
    return schema


def _verdicts(schema: dict[str, Any], instances: list[Any]) -> list[bool]:
    cls = validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    return [validator.is_valid(i) for i in instances]


def _broken(instance: dict[str, Any]) -> list[Any]:
    """Every field replaced by wrong values: wrong types, null where it is not allowed, a bad nested object."""
    out: list[Any] = [None, [], "x", {}]
    for key in instance:
        for bad in (None, "text", 12, 1.5, True, [], {}, {"cpu_percent": "high"}):
            out.append({**instance, key: bad})
        out.append({k: v for k, v in instance.items() if k != key})  # missing (fine unless required)
    if isinstance(instance.get("system_metrics"), dict):
        metrics = instance["system_metrics"]
        out.append({**instance, "system_metrics": {**metrics, "gpu_info": [{"index": "0"}]}})
        out.append({**instance, "system_metrics": {**metrics, "gpu_info": [
            {"index": 0, "name": "H100", "vram_used_mb": 1, "vram_total_mb": 2, "vram_percent": 50.0,
             "utilization": None}]}})
        out.append({**instance, "system_metrics": {**metrics, "gpu_info": [
            {"index": 0, "name": "H100", "vram_used_mb": 1, "vram_total_mb": 2, "vram_percent": 50.0,
             "utilization": "busy"}]}})
    return out


async def test_compact_output_schemas_accept_and_refuse_what_the_sdk_schema_does(
    manager: JobManager, product_b64: str
) -> None:
    server = build_server(manager, "streamable-http")
    async with Client(server, mode="legacy") as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        pending = await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "스키마",
                                                         "wait_seconds": 0})
        job_id = pending.structured_content["job_id"]
        done = await client.call_tool("get_status", {"job_id": job_id, "wait_seconds": 50})
        resources = await client.call_tool("get_resources", {})
    assert not pending.is_error and not done.is_error and not resources.is_error
    assert done.structured_content["status"] == "completed"

    sdk = _sdk_schema(StatusResponse)
    published = listed["get_status"].output_schema
    assert published == compact_schema(sdk) == listed["generate_ad"].output_schema
    assert "anyOf" not in str(published) and "$ref" not in str(published)  # the spelling that costs clients
    assert set(published["properties"]) == set(sdk["properties"])  # every field still declared
    assert published["required"] == sdk["required"]
    assert published["properties"]["eta_seconds"]["description"] == sdk["properties"]["eta_seconds"]["description"]

    instances = [pending.structured_content, done.structured_content]
    for real in list(instances):
        instances += _broken(real)
    before, after = _verdicts(sdk, instances), _verdicts(published, instances)
    assert before[:2] == [True, True]
    assert after == before
    assert before.count(False) > 50  # the broken ones really are refused, by both

    sdk_res = _sdk_schema(ResourcesResponse)
    res_instances = [resources.structured_content, *_broken(resources.structured_content)]
    assert _verdicts(compact_schema(sdk_res), res_instances) == _verdicts(sdk_res, res_instances)
    assert listed["get_resources"].output_schema == compact_schema(sdk_res)


def test_compact_schema_keeps_what_it_cannot_simplify() -> None:
    """A recursive model keeps its $defs; enum/const with null stays an anyOf (a type list would change it)."""
    schema = {
        "type": "object",
        "properties": {
            "tree": {"$ref": "#/$defs/Node"},
            "mode": {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]},
            "n": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None},
        },
        "$defs": {"Node": {"type": "object", "properties": {"child": {"anyOf": [{"$ref": "#/$defs/Node"},
                                                                                 {"type": "null"}]}}}},
    }
    out = compact_schema(copy.deepcopy(schema))
    assert out["properties"]["mode"] == schema["properties"]["mode"]
    assert out["properties"]["n"] == {"type": ["integer", "null"], "minimum": 1, "default": None}
    assert "$defs" in out
    samples: list[Any] = [{"tree": {"child": {"child": None}}}, {"tree": {"child": {"child": 3}}}, {"mode": "c"},
                          {"mode": None}, {"n": 0}, {"n": None}, {"n": 2}, {"tree": {"child": "x"}}]
    assert _verdicts(out, samples) == _verdicts(schema, samples) == [True, False, False, True, False, True, True,
                                                                     False]


def test_status_links_come_from_a_cache_that_sees_new_files_and_forgets_removed_jobs(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    job_id = "a" * 32
    folder = store.create(job_id)
    assert not store.has(job_id, "final.png")  # not there: asked again next time
    (folder / "final.png").write_bytes(b"png")
    assert store.has(job_id, "final.png")  # appears as soon as it is written
    (folder / "final.png").unlink()
    assert store.has(job_id, "final.png")  # cached: written once, never rewritten by the worker...
    assert store.artifact(job_id, "final.png") is None  # ...but readers of the bytes always look
    store.remove(job_id)
    assert not store.has(job_id, "final.png")  # a removed (pruned) job has no files
    assert not store.has(job_id, "../job.json") and not store.has("nope", "final.png")


async def test_accepted_behind_a_busy_worker_written_after_the_answer_in_order(
    tmp_path: Path, product_b64: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", stop_grace_s=3.0)
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        # A large first job keeps the worker busy while the others are accepted.
        first = await m.submit(GenerateRequest(product_image=product_b64, text_content="one", seed=1, width=2048,
                                               height=2048))
        assert first.status == "running"  # an idle worker takes it at once, its photo already on disk
        assert (m.store.job_dir(first.job_id) / PHOTO_UPLOAD).is_file()
        queued = [await m.submit(GenerateRequest(product_image=product_b64, text_content=f"q{i}", seed=i,
                                                 width=256, height=256)) for i in range(3)]
        assert [q.queue_position for q in queued] == [0, 1, 2]
        # Non-ASCII copy: checked in a thread and written after the answer (a light request is written before it).
        broken = await m.submit(GenerateRequest(product_image=product_b64, text_content="고장 broken", width=256,
                                                height=256))
        assert broken.status == "pending" and broken.queue_position == 3 and m.running == first.job_id
        # Its images are written after the answer: take their place away before that happens.
        folder = m.store.job_dir(broken.job_id)
        shutil.rmtree(folder)
        folder.write_text("not a folder")
        last = await m.submit(GenerateRequest(product_image=product_b64, text_content="last", width=256,
                                              height=256))
        assert await wait_for_job(m, broken.job_id) == "failed"
        error = m.jobs[broken.job_id].error or ""
        assert error.startswith("could not store the job's images") and "\n" not in error
        for job in (first, *queued, last):
            assert await wait_for_job(m, job.job_id, timeout=120) == "completed"
        started = sorted((first, *queued, last), key=lambda j: m.jobs[j.job_id].started_at or 0)
        assert [j.job_id for j in started] == [j.job_id for j in (first, *queued, last)]  # FIFO held
        product = Image.open(m.store.artifact(queued[0].job_id, "product.png"))  # type: ignore[arg-type]
        assert product.size == Image.open(io.BytesIO(base64.b64decode(product_b64))).size

        # A light request's upload is written before the answer; its folder lost after that fails the job when
        # the worker reads it (its record cannot be written at dispatch either) and the server goes on.
        blocker = await m.submit(GenerateRequest(product_image=product_b64, text_content="busy", width=1536,
                                                 height=1536))
        gone = await m.submit(GenerateRequest(product_image=product_b64, text_content="gone", width=256, height=256))
        assert gone.status == "pending" and (m.store.job_dir(gone.job_id) / PHOTO_UPLOAD).is_file()
        shutil.rmtree(m.store.job_dir(gone.job_id))
        m.store.job_dir(gone.job_id).write_text("not a folder")
        after = await m.submit(GenerateRequest(product_image=product_b64, text_content="after", width=256, height=256))
        assert await wait_for_job(m, gone.job_id, timeout=120) == "failed"
        for job in (blocker, after):
            assert await wait_for_job(m, job.job_id, timeout=120) == "completed"


def test_exif_orientation_is_still_applied(settings: Settings) -> None:
    from pipeline.fonts import FontCatalog
    from pipeline.jobs.intake import Intake

    img = Image.new("RGB", (320, 200), (200, 30, 30))
    img.paste((20, 20, 200), (0, 0, 40, 200))  # a blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    store = JobStore(settings.jobs_dir)
    intake = Intake(settings, store, FontCatalog(settings.fonts_dir))
    checked = intake.read_inputs(GenerateRequest(product_image=base64.b64encode(buf.getvalue()).decode(),
                                                 text_content=None, width=256, height=256))
    # The upload is kept as sent; the worker decodes it with the same load_image, which turns it upright.
    raw = checked.files[PHOTO_UPLOAD]
    assert raw == buf.getvalue() and "product.png" not in checked.images
    product = load_image(raw, "product_image", settings.max_image_pixels)
    assert product.size == (200, 320)  # turned upright
    top = product.convert("RGB").getpixel((100, 10))
    assert top[2] > 150 and top[0] < 100  # the band that was on the left is now at the top
    plain = intake.read_inputs(GenerateRequest(product_image=png_b64(img), width=256, height=256))
    assert load_image(plain.files[PHOTO_UPLOAD], "product_image", settings.max_image_pixels).size == (320, 200)


async def test_metrics_are_served_while_a_refresh_runs_off_the_loop(settings: Settings) -> None:
    async with JobManager(settings) as m:
        m.metrics()
        await anyio.sleep(1.2)
        stale = m.metrics()  # over a second old: served as it is while a thread collects a new one
        assert m.metrics() is stale  # (no await in between: the refresh cannot have landed)
        fresh = await wait_until(lambda: m.metrics() is not stale and m.metrics(), 10, "a refreshed snapshot")
        assert fresh.ram_total_gb == stale.ram_total_gb > 0
        assert m.metrics() is fresh  # and it is served from then on
