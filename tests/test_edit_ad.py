"""edit_ad: a completed ad changed with as little redone as the change allows, over MCP and REST."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from mcp import Client
from PIL import Image

from pipeline.jobs import JobManager
from tests.conftest import EXAMPLE, png_b64
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio


async def _png(client: Client, uri: str) -> np.ndarray:
    res = await client.read_resource(uri)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(res.contents[0].blob))).convert("RGBA"))


async def _ok(client: Client, tool: str, args: dict) -> dict:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    st = result.structured_content
    assert st["status"] == "completed", st
    return st


def _photo() -> str:
    img = Image.open(EXAMPLE).convert("RGB")
    img.thumbnail((640, 640))
    return png_b64(img)


async def test_copy_edit_redraws_only_the_text_layer(server, manager: JobManager) -> None:
    async with Client(server, mode="legacy") as client:
        first = await _ok(client, "generate_ad", {
            "product_image": _photo(), "text_content": "Summer sale", "test_mode": True, "seed": 5,
            "width": 768, "height": 960,
        })
        edited = await _ok(client, "edit_ad", {"job_id": first["job_id"], "text_content": "Winter sale",
                                               "cta": "Shop now", "text_color": "#ffd400"})
        assert edited["parent_job_id"] == first["job_id"] and edited["job_id"] != first["job_id"]
        assert "only the text layer" in edited["edit_note"]
        p = edited["parameters"]
        assert (p["text_content"], p["cta"], p["text_color"]) == ("Winter sale", "Shop now", "#ffd400")
        assert (p["width"], p["height"], p["bg_prompt"]) == (768, 960, first["parameters"]["bg_prompt"])
        assert not any(s.startswith(("segment", "background")) for s in manager.jobs[edited["job_id"]].plan)

        # The scene is the parent's, pixel for pixel; the ad differs only where the copy is.
        assert np.array_equal(await _png(client, first["step1_result"]), await _png(client, edited["step1_result"]))
        before, after = await _png(client, first["final_result"]), await _png(client, edited["final_result"])
        assert before.shape == after.shape == (960, 768, 4)
        changed = np.abs(before.astype(int) - after.astype(int)).max(axis=2) > 8
        layer = await _png(client, edited["step2_result"])
        old_layer = await _png(client, first["step2_result"])
        copy_area = (layer[..., 3] > 0) | (old_layer[..., 3] > 0)
        assert changed.any() and not (changed & ~copy_area).any()
        # The new colour is in the copy's own pixels.
        solid = layer[layer[..., 3] > 250][:, :3].astype(int)
        assert (np.abs(solid - [255, 212, 0]).sum(axis=1) < 60).mean() > 0.2

        # An edit of the edit keeps the lineage; the scene is still the first job's.
        again = await _ok(client, "edit_ad", {"job_id": edited["job_id"], "subline": "Two days only"})
        assert again["parent_job_id"] == edited["job_id"]
        assert again["parameters"]["cta"] == "Shop now" and again["parameters"]["text_content"] == "Winter sale"


async def test_size_or_scene_change_regenerates_step1_with_the_same_seed(server) -> None:
    async with Client(server, mode="legacy") as client:
        first = await _ok(client, "generate_ad", {
            "product_image": _photo(), "text_content": "New in", "test_mode": True, "seed": 42,
        })
        copy_only = await _ok(client, "edit_ad", {"job_id": first["job_id"], "text_content": "Back in stock"})
        # From a copy-only edit (which has no photo of its own) the photo comes from the first job.
        wide = await _ok(client, "edit_ad", {"job_id": copy_only["job_id"], "width": 1200, "height": 628})
        assert "same seed (42)" in wide["edit_note"] and "width" in wide["edit_note"]
        assert wide["parameters"]["seed"] == 42 and wide["parameters"]["text_content"] == "Back in stock"
        final = await _png(client, wide["final_result"])
        assert final.shape[:2] == (628, 1200)

        reseeded = await _ok(client, "edit_ad", {"job_id": first["job_id"], "seed": 7})
        assert "a new seed" in reseeded["edit_note"] and reseeded["parameters"]["seed"] == 7
        assert not np.array_equal(await _png(client, first["step1_result"]),
                                  await _png(client, reseeded["step1_result"]))


async def test_position_edit_keeps_the_copy_off_the_product(server, manager: JobManager) -> None:
    async with Client(server, mode="legacy") as client:
        first = await _ok(client, "generate_ad", {
            "product_image": _photo(), "text_content": "Fresh every morning", "test_mode": True, "seed": 3,
            "text_position": "top",
        })
        for position in ("bottom", "center"):
            edited = await _ok(client, "edit_ad", {"job_id": first["job_id"], "text_position": position})
            job_dir = manager.store.job_dir(edited["job_id"])
            # Whatever was redone, the product (its mask in this job's folder) and the copy do not meet.
            mask = np.asarray(Image.open(job_dir / "mask.png").convert("L")) > 127
            layer = await _png(client, edited["step2_result"])
            text = layer[..., 3] > 128
            assert text.any() and mask.any()
            assert (text & mask).sum() < 0.01 * text.sum(), (position, edited["edit_note"])


@pytest.mark.parametrize(("args", "expected"), [
    ({"job_id": "0" * 32, "text_content": "x"}, "no job with id"),
    ({"job_id": "nope"}, "job_id"),
    ({"job_id": "0" * 32, "product_image": "abc"}, "product_image: unknown argument"),
    ({"job_id": "0" * 32, "text_size": 1000}, "text_size"),
])
async def test_bad_edits_are_one_line_tool_errors(server, args: dict, expected: str) -> None:
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("edit_ad", args)
    text = result.content[0].text
    assert result.is_error and expected in text and "\n" not in text.strip(), text


async def test_edit_of_an_unfinished_or_copyless_value_is_refused(server, manager: JobManager) -> None:
    async with Client(server, mode="legacy") as client:
        pending = await client.call_tool("generate_ad", {"product_image": _photo(), "text_content": "Wait",
                                                         "test_mode": True, "wait_seconds": 0})
        job_id = pending.structured_content["job_id"]
        if pending.structured_content["status"] != "completed":
            result = await client.call_tool("edit_ad", {"job_id": job_id, "text_content": "x"})
            if manager.jobs[job_id].status != "completed":  # (it may have finished in between)
                assert result.is_error and "only a completed job can be edited" in result.content[0].text
        await client.call_tool("get_status", {"job_id": job_id, "wait_seconds": 30})
        # A subline without a headline is refused like in generate_ad.
        result = await client.call_tool("edit_ad", {"job_id": job_id, "text_content": "", "subline": "x"})
        assert result.is_error and "subline needs text_content" in result.content[0].text


async def test_rest_edit(http_server_factory) -> None:
    srv = http_server_factory("streamable-http")
    async with httpx.AsyncClient(base_url=srv.base, timeout=30) as http:
        first = (await http.post("/generate", json={"product_image": _photo(), "text_content": "REST",
                                                    "test_mode": True})).json()

        async def done(job_id: str) -> dict | None:
            st = (await http.get(f"/status/{job_id}")).json()
            return st if st["status"] in ("completed", "failed") else None

        await wait_until(lambda: done(first["job_id"]), 60, "the first job", interval=0.1)
        r = await http.post("/edit", json={"job_id": first["job_id"], "text_content": "REST, edited"})
        assert r.status_code == 200, r.text
        st = await wait_until(lambda: done(r.json()["job_id"]), 60, "the edit", interval=0.1)
        assert st["status"] == "completed" and st["parent_job_id"] == first["job_id"]
        assert st["parameters"]["text_content"] == "REST, edited" and "text layer" in st["edit_note"]
        assert (await http.post("/edit", json={"job_id": "0" * 32})).status_code == 404
        bad = await http.post("/edit", json={"job_id": first["job_id"], "width": 5})
        assert bad.status_code == 422 and "width" in bad.json()["detail"]
        doc = (await http.get("/openapi.json")).json()
        assert "/edit" in doc["paths"] and "text_content" in doc["components"]["schemas"]["EditRequest"]["properties"]
