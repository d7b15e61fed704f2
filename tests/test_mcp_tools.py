"""The MCP tools through the SDK's in-memory Client, over a real job manager and worker."""

from __future__ import annotations

import base64
import io
import json

import anyio
import numpy as np
import pytest
from mcp import Client
from PIL import Image

from tests.conftest import png_b64

pytestmark = pytest.mark.anyio

TOOLS = {"generate_ad", "edit_ad", "get_status", "stop_job", "list_fonts", "get_resources",
         "save_brand_kit", "list_brand_kits", "delete_brand_kit"}


async def _call(client: Client, name: str, args: dict, progress: list | None = None):
    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        if progress is not None:
            progress.append((p, total, message))

    return await client.call_tool(name, args, progress_callback=on_progress)


async def test_tool_list_and_schemas(server) -> None:
    async with Client(server, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    # studio_image is for the Studio app only: listed, but marked so Apps hosts keep it from the model.
    app_only = {"studio_image", "studio_jobs"}
    assert set(tools) == TOOLS | app_only
    assert all(tools[name].meta["ui"]["visibility"] == ["app"] for name in app_only)
    for name in ("generate_ad", "edit_ad", "get_status"):
        assert tools[name].meta["ui"]["resourceUri"] == "ui://adgen/studio"
    gen = tools["generate_ad"]
    props = gen.input_schema["properties"]
    # Every field of the design doc's GenerateRequest is a tool argument, with its limits.
    for field in ("start_step", "product_image", "text_content", "bg_prompt", "bg_negative_prompt",
                  "bg_composition_prompt", "bg_composition_negative_prompt", "step1_image", "html_style_prompt",
                  "use_qwen_analysis", "font_family", "font_weight", "text_color", "text_position", "text_size",
                  "use_llm_html", "strength", "guidance_scale", "seed", "test_mode", "wait_seconds"):
        assert field in props, field
    assert props["strength"]["maximum"] == 1.0 and props["wait_seconds"]["maximum"] < 60
    assert set(props["text_position"]["enum"]) == {"top", "center", "bottom", "auto"}
    assert "get_status" in gen.description and len(gen.description) > 200
    out = gen.output_schema
    assert out is not None and {"job_id", "status", "progress_percent", "final_result"} <= set(out["properties"])
    assert tools["get_status"].annotations.read_only_hint


async def test_full_job_streams_strictly_increasing_progress(server, product_b64: str) -> None:
    progress: list = []
    async with Client(server, mode="legacy") as client:
        result = await _call(client, "generate_ad",
                             {"product_image": product_b64, "text_content": "여름 세일 50%", "seed": 11}, progress)
        assert not result.is_error, result.content
        st = result.structured_content
        assert st["status"] == "completed" and st["progress_percent"] == 100
        values = [p for p, _, _ in progress]
        assert len(values) >= 5 and values == sorted(set(values)) and values[-1] == 100
        assert all(total == 100 for _, total, _ in progress)
        messages = " ".join(m or "" for _, _, m in progress)
        # Every stage is news, even one that starts before the percentage moves (a draft stage takes ms).
        for stage in ("segmentation", "background_generation", "compositing", "refinement", "image_analysis",
                      "html_design", "html_rendering", "final_composite"):
            assert stage in messages, (stage, progress)
        # Results are resource URIs in MCP, never base64 in the status.
        assert st["final_result"] == f"adgen://jobs/{st['job_id']}/final.png"
        assert st["step2_result"].endswith("/text.png") and st["parameters"]["seed"] == 11

        # Preview image small enough for Claude Desktop, plus links to the full-size PNGs.
        kinds = [c.type for c in result.content]
        assert kinds.count("image") == 1 and "resource_link" in kinds
        preview = next(c for c in result.content if c.type == "image")
        raw = base64.b64decode(preview.data)
        assert preview.mime_type == "image/jpeg" and len(raw) < 200_000
        assert max(Image.open(io.BytesIO(raw)).size) <= 512

        res = await client.read_resource(st["final_result"])
        final = Image.open(io.BytesIO(base64.b64decode(res.contents[0].blob)))
        assert final.size == (1024, 1024) and res.contents[0].mime_type == "image/png"
        layer = Image.open(io.BytesIO(base64.b64decode((await client.read_resource(st["step2_result"])).contents[0].blob)))
        alpha = np.asarray(layer.getchannel("A"))
        assert layer.mode == "RGBA" and 0.005 < (alpha > 0).mean() < 0.3  # text, on transparency

        # get_status without images stays small; with the preview it stays under 1 MiB.
        plain = await _call(client, "get_status", {"job_id": st["job_id"], "include_preview": False})
        size = len(json.dumps(plain.model_dump(mode="json", by_alias=True)))
        assert size < 8_000, size
        with_preview = await _call(client, "get_status", {"job_id": st["job_id"]})
        assert len(json.dumps(with_preview.model_dump(mode="json", by_alias=True))) < 1_000_000


async def test_no_copy_means_step1_is_final(server, product_b64: str, manager) -> None:
    async with Client(server, mode="legacy") as client:
        result = await _call(client, "generate_ad", {"product_image": product_b64, "text_content": None, "seed": 2})
    st = result.structured_content
    assert st["status"] == "completed" and st["step2_result"] is None
    final = manager.store.artifact(st["job_id"], "final.png").read_bytes()
    step1 = manager.store.artifact(st["job_id"], "step1.png").read_bytes()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(final))), np.asarray(Image.open(io.BytesIO(step1))))


async def test_resume_from_step2_renders_text_over_given_image(server, manager) -> None:
    base = Image.new("RGB", (512, 512), (30, 60, 90))
    async with Client(server, mode="legacy") as client:
        result = await _call(client, "generate_ad", {
            "start_step": 2, "step1_image": png_b64(base), "text_content": "NEW COPY", "width": 512, "height": 512,
            "text_position": "center", "text_color": "#ffcc00",
        })
    st = result.structured_content
    assert st["status"] == "completed", st
    final = np.asarray(Image.open(manager.store.artifact(st["job_id"], "final.png")))
    yellow = (final[..., 0] > 200) & (final[..., 1] > 150) & (final[..., 2] < 80)
    assert yellow[170:340].sum() > 500 and yellow[:150].sum() == 0  # copy in the centre band only
    assert manager.jobs[st["job_id"]].plan == ("analyze", "design", "render", "final")


async def test_second_job_queues_behind_the_first(server, product_b64: str) -> None:
    async with Client(server, mode="legacy") as client:
        a = await _call(client, "generate_ad", {"product_image": product_b64, "text_content": "A", "wait_seconds": 0})
        b = await _call(client, "generate_ad", {"product_image": product_b64, "text_content": "B", "wait_seconds": 0})
        sa, sb = a.structured_content, b.structured_content
        assert sa["status"] == "running"
        assert sb["status"] == "pending" and sb["queue_position"] == 0 and "Queued" in sb["message"]
        assert sb["eta_seconds"] > 0
        done_b = await _call(client, "get_status", {"job_id": sb["job_id"], "wait_seconds": 30})
        done_a = await _call(client, "get_status", {"job_id": sa["job_id"]})
    assert done_a.structured_content["status"] == "completed"
    assert done_b.structured_content["status"] == "completed"


async def test_stop_running_and_queued_jobs(server, product_b64: str, manager) -> None:
    async with Client(server, mode="legacy") as client:
        a = await _call(client, "generate_ad", {"product_image": product_b64, "text_content": "A", "wait_seconds": 0})
        b = await _call(client, "generate_ad", {"product_image": product_b64, "text_content": "B", "wait_seconds": 0})
        ja, jb = a.structured_content["job_id"], b.structured_content["job_id"]
        stopped_b = await _call(client, "stop_job", {"job_id": jb})
        assert stopped_b.structured_content["status"] == "stopped"
        stopped_a = await _call(client, "stop_job", {"job_id": ja})
        assert stopped_a.structured_content["status"] == "stopped", stopped_a.structured_content
        # A stopped job stays stopped; stopping again changes nothing.
        again = await _call(client, "stop_job", {"job_id": ja})
        assert again.structured_content["status"] == "stopped" and "already" in again.structured_content["message"]
        # The worker is healthy: the next job completes.
        c = await _call(client, "generate_ad", {"product_image": product_b64, "text_content": "C"})
        assert c.structured_content["status"] == "completed"
    assert manager.jobs[jb].error == "stopped before it started"
    assert manager.store.artifact(ja, "final.png") is None


@pytest.mark.parametrize(
    "args, reason",
    [
        ({"product_image": "!!!not base64!!!", "text_content": "x"}, "not valid base64"),
        ({"product_image": base64.b64encode(b"just some text, not an image").decode()}, "not a readable image"),
        ({"product_image": "PB64", "strength": 7}, "strength"),
        ({"product_image": "PB64", "text_position": "diagonal"}, "text_position"),
        ({"product_image": "PB64", "font_family": "Comic Sans Nowhere"}, "unknown font"),
        ({"product_image": png_b64(Image.new("RGB", (64, 64)), "BMP")}, "format BMP is not accepted"),
        ({"product_image_path": "/etc/passwd"}, "input folders"),
        ({"start_step": 2}, "step1_image"),
    ],
)
async def test_bad_inputs_give_tool_errors_and_server_keeps_serving(server, product_b64, args, reason) -> None:
    args = {k: (product_b64 if v == "PB64" else v) for k, v in args.items()}
    async with Client(server, mode="legacy") as client:
        bad = await _call(client, "generate_ad", args)
        assert bad.is_error
        text = bad.content[0].text
        assert reason in text, text
        assert len(text) < 2000
        ok = await _call(client, "get_resources", {})
        assert not ok.is_error and ok.structured_content["worker_alive"]


async def test_unknown_job_and_fonts(server) -> None:
    async with Client(server, mode="legacy") as client:
        missing = await _call(client, "get_status", {"job_id": "0" * 32})
        assert missing.is_error and "no job" in missing.content[0].text
        fonts = (await _call(client, "list_fonts", {})).structured_content["fonts"]
    bundled = {f["family"]: f for f in fonts if f["bundled"]}
    assert {"NanumSquare", "NanumSquareRound", "NanumMyeongjo"} <= set(bundled)
    assert all(f["hangul"] for f in bundled.values())
    assert not any("/" in json.dumps(f) for f in fonts)  # ids and names only, no paths


async def test_stateless_protocol_mode_too(server, product_b64: str) -> None:
    async with Client(server, mode="auto") as client:
        result = await _call(client, "generate_ad", {"product_image": product_b64, "text_content": "auto mode"})
    assert result.structured_content["status"] == "completed"


async def test_cancelled_wait_leaves_the_job_running(server, product_b64: str, manager) -> None:
    async with Client(server, mode="legacy") as client:
        with anyio.move_on_after(0.3):
            await _call(client, "generate_ad", {"product_image": product_b64, "text_content": "cancel me"})
    job = max(manager.jobs.values(), key=lambda j: j.created_at)
    await manager.wait_for_change(job.id, 0)
    for _ in range(100):
        if manager.status(job.id).status == "completed":
            break
        await anyio.sleep(0.1)
    assert manager.status(job.id).status == "completed"
