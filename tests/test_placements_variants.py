"""Placements and variants (issue 13): one job, several sizes and seeds, every result delivered.

One real server process (MCP over streamable HTTP and REST on the same port, its own worker and
Chromium) runs one job with placements [story, landscape] and 2 variants, submitted by the SDK's
real MCP client. The checks read what a client and a person get: the PNGs over REST and MCP
resources, the text layers' pixels (copy kept out of the story's safe zones), the output folder,
the contact sheet and the dashboard's gallery. Bad requests get one-line errors.
"""

from __future__ import annotations

import base64
import io
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from mcp import Client
from PIL import Image

from pipeline.jobs.store import ARTIFACTS, JobStore
from pipeline.placements import PLACEMENTS
from pipeline.schemas import GenerateRequest
from pipeline.units import expand_plan, master_canvas, stage_canvas, units_of
from pipeline.worker.reframe import cover, product_window, take
from tests.conftest import ARTIFACTS as ARTIFACT_DIR
from tests.conftest import EXAMPLE, REPO, ServerProcess
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio

PLACED = ["story", "landscape"]
SEED = 4242
COPY = {"text_content": "Summer **Sale**", "subline": "Hydrating serum, all day", "cta": "Shop now"}
UNITS = ["story-v1", "landscape-v1", "story-v2", "landscape-v2"]


@dataclass
class Served:
    srv: ServerProcess
    data_dir: Path
    out_dir: Path
    job_id: str
    status: dict  # get_status over MCP, structured
    progress: list[float]


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory, product_b64: str) -> AsyncIterator[Served]:
    root = tmp_path_factory.mktemp("pv")
    out_dir = root / "out"
    srv = ServerProcess("streamable-http", root / "data", {"ADGEN_OUTPUT_DIR": str(out_dir)})
    try:
        srv.wait_healthy()
        progress: list[float] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            progress.append(p)

        async with Client(f"{srv.base}/mcp", mode="legacy") as client:
            args = {"product_image": product_b64, **COPY, "placements": PLACED, "variants": 2, "seed": SEED,
                    "test_mode": True, "use_llm_html": False}
            first = await client.call_tool("generate_ad", args, progress_callback=on_progress)
            assert not first.is_error, first.content
            job_id = first.structured_content["job_id"]

            async def done() -> dict | None:
                r = await client.call_tool("get_status", {"job_id": job_id}, progress_callback=on_progress)
                return r if r.structured_content["status"] in ("completed", "failed", "stopped") else None

            result = await wait_until(done, 180, "the placements job to finish", interval=0.2)
        st = result.structured_content
        assert st["status"] == "completed", st
        yield Served(srv, root / "data", out_dir, job_id, {**st, "_content": result.content}, progress)
    finally:
        srv.stop()


def _png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# ---- the plan and the pieces, without a server ---------------------------------------------
def test_plan_repeats_stages_per_unit_and_shares_the_cut_out() -> None:
    req = GenerateRequest(product_image="x.png", text_content="Hi", placements=PLACED, variants=2)
    plan = expand_plan(req, ("segment", "background", "composite", "refine", "analyze", "design", "render", "final"))
    assert plan.count("segment") == 1 and [k for k in plan if k.startswith("background")] == ["background#v1",
                                                                                            "background#v2"]
    assert [k.split("#")[1] for k in plan if k.startswith("final")] == UNITS  # variant by variant
    assert len(set(plan)) == len(plan) == 1 + 2 + 4 * 6
    assert stage_canvas(req, "render#landscape-v2", (1024, 1024)) == (1200, 628)
    assert stage_canvas(req, "background#v2", (1024, 1024)) == master_canvas(req) == (1200, 1920)
    one = GenerateRequest(product_image="x.png", text_content="Hi")
    assert expand_plan(one, ("segment", "final")) == ("segment", "final") and len(units_of(one)) == 1


def test_every_placement_is_a_crop_of_the_shared_scene_without_upscaling() -> None:
    req = GenerateRequest(product_image="x.png", placements=list(PLACEMENTS))
    mw, mh = master_canvas(req)
    scene = Image.radial_gradient("L").resize((mw, mh)).convert("RGB")
    for p in PLACEMENTS.values():
        crop = cover(scene, (p.width, p.height))
        assert crop.size == (p.width, p.height)
        # Centred: the scene's centre stays the crop's centre (the gradient is darkest there).
        grey = np.asarray(crop.convert("L"), np.float32)
        y, x = np.unravel_index(int(grey.argmin()), grey.shape)
        assert abs(x - p.width / 2) < p.width * 0.05 and abs(y - p.height / 2) < p.height * 0.05


def test_a_given_picture_is_reframed_around_its_product() -> None:
    """Step 2 on a story picture, reframed for wide: the whole product stays in the frame (widened past the
    picture's edges, which are extended blurred, when a crop cannot hold it); a small product off-centre is
    kept by moving the crop."""
    pic = Image.new("RGB", (1080, 1920), (200, 170, 140))
    mask = Image.new("L", pic.size, 0)
    tall = (300, 500, 480, 1300)  # x, y, w, h: taller than a 16:9 crop of this picture (1080x608) can hold
    pic.paste((20, 120, 60), (tall[0], tall[1], tall[0] + tall[2], tall[1] + tall[3]))
    mask.paste(255, (tall[0], tall[1], tall[0] + tall[2], tall[1] + tall[3]))
    window = product_window(pic.size, (1920, 1080), tall)
    out = take(pic, window, (1920, 1080))
    framed = np.asarray(take(mask, window, (1920, 1080), extend=False)) > 127
    assert out.size == (1920, 1080) and framed.any()
    ys, xs = np.nonzero(framed)
    assert ys.min() > 0 and ys.max() < 1079 and xs.min() > 0 and xs.max() < 1919  # the whole product, with air
    green = np.asarray(out, np.int16)[..., 1] - np.asarray(out, np.int16)[..., 0] > 60
    assert abs(int(green.sum()) - int(framed.sum())) < 0.05 * framed.sum()  # the product's pixels are where its mask is
    edge = np.asarray(out, np.float32)[:, :40]  # the extension beside the picture: its own colour, no hard edge
    assert np.abs(edge - np.array([200, 170, 140])).max() < 12
    small = (60, 1500, 200, 300)  # low and left: a centred crop (rows 656-1264) would cut it off
    x, y, w, h = product_window(pic.size, (1920, 1080), small)
    assert (w, h) == (1080, 607.5) and y <= small[1] and y + h >= small[1] + small[3] and x == 0


def test_only_listed_result_names_are_served(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = "a" * 32
    d = store.create(job)
    (d / "results").mkdir()
    Image.new("RGB", (8, 8)).save(d / "results" / "story-v2.png")
    (tmp_path / "secret.png").write_bytes(b"x")
    assert store.artifact(job, "result-story-v2.png") == d / "results" / "story-v2.png"
    for bad in ("results/story-v2.png", "result-story-v9.png", "result-../../secret.png", "result-story-v2.png/..",
                "result-Story-v2.png", "../secret.png"):
        assert store.artifact(job, bad) is None, bad
    assert "contact.jpg" in ARTIFACTS and "result-wide-v8.png" in ARTIFACTS


# ---- bad requests --------------------------------------------------------------------------
BAD = [
    ({"placements": ["square", "portrait", "story", "landscape", "wide", "square"]}, "placements"),
    ({"placements": ["story", "story"]}, "each placement may be given once"),
    ({"variants": 9}, "variants"),
    ({"variants": 0}, "variants"),
    ({"placements": ["story"], "width": 1200}, "give placements or width/height, not both"),
    ({"placements": ["square", "portrait", "story"], "variants": 6}, "at most 16 results"),
    ({"placements": ["billboard"]}, "placements"),
]


@pytest.mark.parametrize("args, reason", BAD, ids=[r for _, r in BAD])
async def test_bad_placements_and_variants_are_one_line_errors(served: Served, product_b64: str, args: dict,
                                                               reason: str) -> None:
    body = {"product_image": product_b64, "text_content": "x", **args}
    async with Client(f"{served.srv.base}/mcp", mode="legacy") as client:
        bad = await client.call_tool("generate_ad", body)
        assert bad.is_error
        text = bad.content[0].text
        assert reason in text and "\n" not in text.strip() and len(text) < 400, text
        assert not (await client.call_tool("get_resources", {})).is_error  # still serving
    async with httpx.AsyncClient(base_url=served.srv.base, timeout=30) as http:
        r = await http.post("/generate", json=body)
    assert r.status_code == 422 and reason in r.json()["detail"] and "\n" not in r.json()["detail"], r.text


# ---- the job -------------------------------------------------------------------------------
async def test_four_results_with_exact_sizes_and_distinct_seeds(served: Served) -> None:
    st = served.status
    results = st["results"]
    assert [f"{r['placement']}-v{r['variant']}" for r in results] == UNITS
    assert [r["seed"] for r in results] == [SEED, SEED, SEED + 1, SEED + 1]
    assert st["final_result"] == f"adgen://jobs/{served.job_id}/final.png"
    text = served.status["_content"][0].text  # what the person reads: the first result's own size, every result
    assert "(PNG, 1080x1920)" in text and all(f"result-{u}.png" in text for u in UNITS), text
    # Progress streamed over 27 planned stages never went back.
    assert len(served.progress) > 5 and served.progress == sorted(served.progress) and st["progress_percent"] == 100
    images = {}
    async with httpx.AsyncClient(base_url=served.srv.base, timeout=30) as http:
        rest = (await http.get(f"/status/{served.job_id}")).json()
        assert [r["uri"] for r in rest["results"]] == [f"/jobs/{served.job_id}/result-{u}.png" for u in UNITS]
        assert [r["uri"] for r in results] == [f"adgen://jobs/{served.job_id}/result-{u}.png" for u in UNITS]
        for r in rest["results"]:
            got = await http.get(r["uri"])
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            img = _png(got.content)
            placement = PLACEMENTS[r["placement"]]
            assert img.size == (r["width"], r["height"]) == (placement.width, placement.height)
            # The file says what made it, its own seed included.
            prov = json.loads(img.text["adgen:provenance"])
            assert prov["seed"] == r["seed"] and prov["job_id"] == served.job_id
            images[f"{r['placement']}-v{r['variant']}"] = np.asarray(img.convert("RGB"), np.int16)
        final = (await http.get(f"/jobs/{served.job_id}/final.png")).content
        assert final == (await http.get(f"/jobs/{served.job_id}/result-story-v1.png")).content  # one-ad clients keep working
    for p in PLACED:  # the variants really differ (scene seed and layout)
        assert np.abs(images[f"{p}-v1"] - images[f"{p}-v2"]).mean() > 3, p


def _runs(flags: np.ndarray) -> list[int]:
    """Lengths of the runs of True (tiles across or down the sheet)."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return [int(e - s) for s, e in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0], strict=True)]


def _ink_rows(layer: Path) -> tuple[int, int]:
    alpha = np.asarray(Image.open(layer).getchannel("A")) > 32
    rows = np.nonzero(alpha.any(axis=1))[0]
    assert rows.size, f"no copy drawn in {layer}"
    return int(rows.min()), int(rows.max())


async def test_story_copy_stays_out_of_its_safe_zones_and_variants_move_it(served: Served) -> None:
    job = served.data_dir / "jobs" / served.job_id
    story = PLACEMENTS["story"]
    top, bottom = math.ceil(story.safe_top * story.height), story.height - math.ceil(story.safe_bottom * story.height)
    spans = {}
    for unit, layer in (("story-v1", job / "text.png"), ("story-v2", job / "units" / "story-v2" / "text.png")):
        assert Image.open(layer).size == (story.width, story.height)
        first, last = _ink_rows(layer)
        assert top <= first and last < bottom, (unit, first, last, top, bottom)
        spans[unit] = (first, last)
    # The template designer gives the second variant another layout: its copy lies elsewhere.
    (a0, a1), (b0, b1) = spans["story-v1"], spans["story-v2"]
    assert abs((a0 + a1) / 2 - (b0 + b1) / 2) > story.height * 0.1, spans


async def test_results_in_the_output_folder_and_over_mcp_resources(served: Served) -> None:
    results = served.status["results"]
    files = sorted(p.name for p in served.out_dir.iterdir() if not p.name.startswith("."))
    assert len(files) == 4 and all(served.job_id[:8] in f for f in files)
    for r in results:
        path = Path(r["path"])
        assert path.parent == served.out_dir.resolve() and f"_{r['placement']}-v{r['variant']}_" in path.name
        assert Image.open(path).size == (r["width"], r["height"])
    assert served.status["output_file"] == results[0]["path"]
    async with Client(f"{served.srv.base}/mcp", mode="legacy") as client:
        for r in results:
            if r["placement"] != "landscape":  # story PNGs are over what one MCP message over HTTP carries
                continue
            got = await client.read_resource(r["uri"])
            data = got.contents[0]
            img = _png(base64.b64decode(data.blob))
            assert img.size == (1200, 628)
        # Every result is linked from the tool result, the first as final_result.
        links = [c.uri for c in served.status["_content"] if getattr(c, "type", "") == "resource_link"]
        assert [str(u) for u in links if "result-" in str(u)] == [r["uri"] for r in results[1:]]


async def test_contact_sheet_is_the_preview_and_under_a_mebibyte(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.srv.base, timeout=30) as http:
        sheet = await http.get(f"/jobs/{served.job_id}/contact.jpg")
        preview = await http.get(f"/jobs/{served.job_id}/preview.jpg")
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/jpeg"
    assert len(sheet.content) < 1024 * 1024
    img, small = _png(sheet.content), _png(preview.content)
    assert abs(img.width / img.height - small.width / small.height) < 0.02  # the preview is the contact sheet
    assert len(base64.b64encode(preview.content)) < 512 * 1024
    # Two rows (variants) of two tiles: the left column is the tall story, the right the wide landscape.
    lit = np.asarray(img.convert("L")) > 40  # the tiles (the sheet's background and labels are darker / sparse)
    cols, rows = _runs(lit.mean(axis=0) > 0.3), _runs(lit.mean(axis=1) > 0.3)
    assert len(cols) == 2 and len(rows) == 2, (cols, rows)
    story, landscape = PLACEMENTS["story"], PLACEMENTS["landscape"]
    expected = (story.width / story.height) / (landscape.width / landscape.height)
    assert abs(cols[0] / cols[1] - expected) < 0.03, (cols, expected)  # one tile height, true aspect ratios
    ARTIFACT_DIR.mkdir(exist_ok=True)
    img.save(ARTIFACT_DIR / "placements-contact-sheet.jpg")
    # The tool result attaches it (the preview) as its image.
    attached = [c for c in served.status["_content"] if getattr(c, "type", "") == "image"]
    assert attached and _png(base64.b64decode(attached[0].data)).size == small.size


async def test_dashboard_gallery_links_every_result(served: Served) -> None:
    from playwright.async_api import async_playwright

    from pipeline.config import Settings

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=Settings().chromium_path, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        page = await browser.new_page(viewport={"width": 1300, "height": 900})
        await page.goto(served.srv.base + "/dashboard")
        gallery = page.locator(f'.job[data-job="{served.job_id}"] .gallery')
        await gallery.wait_for(timeout=20_000)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.gallery img')].filter(i => i.complete && i.naturalWidth > 0)"
            ".length >= 4", timeout=20_000)
        hrefs = await gallery.locator("figure > a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert hrefs == [f"/jobs/{served.job_id}/result-{u}.png" for u in UNITS]
        sizes = await gallery.locator("img").evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
        assert [tuple(s) for s in sizes] == [(1080, 1920), (1200, 628)] * 2
        await page.screenshot(path=str(ARTIFACT_DIR / "dashboard-gallery.png"), full_page=True)
        await browser.close()


def test_cli_placements_over_http_downloads_every_result(served: Served, tmp_path: Path) -> None:
    """``adgen generate --placements --variants`` (a real MCP client over HTTP): every result saved beside --out."""
    out = tmp_path / "ad.png"
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_server.cli", "generate", str(EXAMPLE), "--text", "Two **sizes**",
         "--placements", "square,landscape", "--variants", "1", "--seed", "9", "--out", str(out),
         "--server", f"{served.srv.base}/mcp"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    printed = [Path(line) for line in proc.stdout.split("\n") if line.strip()]
    assert printed[0] == out.resolve() and len(printed) == 2 and printed[1].parent == out.parent
    assert Image.open(out).size == (1080, 1080)
    assert Image.open(printed[1]).size == (1200, 628) and "_landscape-v1_" in printed[1].name
    bad = subprocess.run([sys.executable, "-m", "mcp_server.cli", "generate", str(EXAMPLE), "--placements",
                          "story", "--size", "800x800", "--server", f"{served.srv.base}/mcp"],
                         capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert bad.returncode != 0 and "not both" in bad.stderr and bad.stderr.strip().count("\n") == 0, bad.stderr


async def test_resumed_step2_job_crops_the_given_picture_per_placement(served: Served) -> None:
    """start_step 2 on the finished job's picture, two other placements: each a crop of it, copy set again."""
    async with Client(f"{served.srv.base}/mcp", mode="legacy") as client:
        r = await client.call_tool("generate_ad", {"start_step": 2, "parent_job_id": served.job_id,
                                                   "text_content": "Again", "placements": ["square", "wide"],
                                                   "use_llm_html": False, "wait_seconds": 50})
        st = r.structured_content
        if st["status"] not in ("completed", "failed"):
            st = (await wait_until(lambda: _finished(client, st["job_id"]), 120, "the step 2 job")).structured_content
    assert st["status"] == "completed", st
    assert [(x["placement"], x["width"], x["height"]) for x in st["results"]] == [("square", 1080, 1080),
                                                                                ("wide", 1920, 1080)]
    job = served.data_dir / "jobs" / st["job_id"]
    for layer in (job / "text.png", job / "units" / "wide-v1" / "text.png"):
        _ink_rows(layer)  # the copy is drawn on every placement


async def _finished(client: Client, job_id: str) -> Any:  # the CallToolResult once finished, else None
    r = await client.call_tool("get_status", {"job_id": job_id, "include_preview": False})
    return r if r.structured_content["status"] in ("completed", "failed", "stopped") else None


async def test_a_stopped_job_keeps_the_results_it_finished(served: Served, product_b64: str) -> None:
    """Stopped after its first result: status stopped, that result listed, served and delivered."""
    async with Client(f"{served.srv.base}/mcp", mode="legacy") as client:
        r = await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "Stop me",
                                                   "placements": ["landscape", "square"], "variants": 3,
                                                   "test_mode": True, "use_llm_html": False, "wait_seconds": 0})
        job_id = r.structured_content["job_id"]
        job = served.data_dir / "jobs" / job_id
        await wait_until(lambda: (job / "results" / "landscape-v1.png").is_file(), 120, "the first result")
        stopped = (await client.call_tool("stop_job", {"job_id": job_id})).structured_content
        assert stopped["status"] == "stopped", stopped
        st = (await client.call_tool("get_status", {"job_id": job_id, "include_preview": False})).structured_content
    assert st["status"] == "stopped" and 1 <= len(st["results"]) < 6, st["results"]
    assert st["results"][0]["placement"] == "landscape" and await anyio.Path(st["results"][0]["path"]).is_file()
    async with httpx.AsyncClient(base_url=served.srv.base, timeout=30) as http:
        for item in st["results"]:
            got = await http.get(f"/jobs/{job_id}/{item['uri'].rsplit('/', 1)[-1]}")
            assert got.status_code == 200 and _png(got.content).size == (item["width"], item["height"])


async def test_campaign_of_four_placements_and_three_variants_with_a_brand_kit(served: Served,
                                                                               product_b64: str) -> None:
    """Issue 13's campaign: 12 results at exact sizes, copy inside each safe zone (text layers' pixels),
    the kit's logo in every image, contrast reported per result and at or above its threshold."""
    from tests.test_brand_kits import kit, logo_png, magenta_box

    placements = ["square", "portrait", "story", "landscape"]
    async with Client(f"{served.srv.base}/mcp", mode="legacy") as client:
        saved = await client.call_tool("save_brand_kit", kit("campaign", logo=logo_png(), logo_corner="top-right"))
        assert not saved.is_error, saved.content
        r = await client.call_tool("generate_ad", {
            "product_image": product_b64, **COPY, "placements": placements, "variants": 3, "seed": 77,
            "brand_kit": "campaign", "test_mode": True, "use_llm_html": False, "wait_seconds": 0})
        assert not r.is_error, r.content
        job_id = r.structured_content["job_id"]
        st = (await client.call_tool("get_status", {"job_id": job_id, "wait_seconds": 55})).structured_content
        while st["status"] in ("pending", "running"):
            st = (await client.call_tool("get_status", {"job_id": job_id, "wait_seconds": 55})).structured_content
    assert st["status"] == "completed", st.get("error")
    results = st["results"]
    units = [f"{p}-v{v}" for v in (1, 2, 3) for p in placements]
    assert sorted(f"{x['placement']}-v{x['variant']}" for x in results) == sorted(units)
    assert st["contrast_ratio"] is not None and st["contrast_ratio"] == min(x["contrast_ratio"] for x in results)
    job = served.data_dir / "jobs" / job_id
    for item in results:
        unit = f"{item['placement']}-v{item['variant']}"
        spec = PLACEMENTS[item["placement"]]
        image = Image.open(job / "results" / f"{unit}.png")
        assert image.size == (item["width"], item["height"]) == (spec.width, spec.height), unit
        layer = job / "text.png" if unit == units[0] else job / "units" / unit / "text.png"
        first, last = _ink_rows(layer)
        top, bottom = spec.safe_px()
        assert top <= first and last < spec.height - bottom, (unit, first, last)
        logo = magenta_box(image)
        assert logo is not None, f"no logo in {unit}"
        assert logo[0] > spec.width / 2 and logo[1] < spec.height / 2, (unit, logo)  # its corner: top right
        assert item["contrast_ratio"] >= 3.0, (unit, item["contrast_ratio"])  # large copy: WCAG 3:1
