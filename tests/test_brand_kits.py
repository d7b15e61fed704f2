"""Brand kits end to end: saved over a real MCP client and REST, kept across a restart, refused
with one-line errors when broken, and applied by real draft jobs (logo pixels in the corner,
the kit's colour in the copy, an uploaded font's own glyph shapes, contrast measured)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from mcp import Client
from PIL import Image, ImageDraw, ImageFont

from pipeline.config import BUNDLED_FONTS_DIR
from pipeline.worker.stages.contrast import measure, warning
from tests.conftest import ARTIFACTS, png_b64

pytestmark = pytest.mark.anyio
OUT = ARTIFACTS / "brand_kits"
MAGENTA = (255, 0, 255)
COLORS = {"primary": "#0057ff", "secondary": "#ff7a00", "text": "#ffd400", "background": "#101820"}


def block_font(family: str = "Blocky") -> bytes:
    """A TrueType font whose every letter is a solid 480x700 block: unmistakable once rendered."""
    chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    names = [".notdef", "space"] + [f"g{ord(c):04x}" for c in chars]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({32: "space", **{ord(c): f"g{ord(c):04x}" for c in chars}})
    glyphs = {}
    for n in names:
        pen = TTGlyphPen(None)
        if n != "space":
            for x, y in ((60, 0), (60, 700), (540, 700), (540, 0)):
                (pen.lineTo if (x, y) != (60, 0) else pen.moveTo)((x, y))
            pen.closePath()
        glyphs[n] = pen.glyph()
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({n: (600, 60) for n in names})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, sTypoDescender=-200, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    buf = io.BytesIO()
    fb.save(buf)
    return buf.getvalue()


def logo_png(size: tuple[int, int] = (240, 160)) -> str:
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(img).rounded_rectangle((0, 0, size[0] - 1, size[1] - 1), 24, fill=(*MAGENTA, 255))
    return png_b64(img)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kit(name: str, **extra: object) -> dict:
    return {"name": name, "colors": dict(COLORS), **extra}


def magenta_box(img: Image.Image) -> tuple[int, int, int, int] | None:
    a = np.asarray(img.convert("RGB")).astype(int)
    hit = (a[..., 0] > 220) & (a[..., 1] < 40) & (a[..., 2] > 220)
    if hit.sum() < 50:
        return None
    ys, xs = np.nonzero(hit)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


SAFE_SVG = b"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 60">
  <defs><linearGradient id="g"><stop offset="0" stop-color="#ff00ff"/><stop offset="1" stop-color="#ff00ff"/>
  </linearGradient></defs><rect width="120" height="60" rx="12" fill="url(#g)"/></svg>"""
BAD_KITS = {
    "bad colour": (kit("x", colors={**COLORS, "text": "url(http://evil/x)"}), "colors.text"),
    "gradient colour": (kit("x", colors={**COLORS, "primary": "linear-gradient(#fff, #000)"}), "colors.primary"),
    "bad name": (kit("Acme Co"), "name"),
    "corrupt font": (kit("x", fonts={"headline": {"data": b64(block_font()[:700])}}), "fonts.headline"),
    "not a font": (kit("x", fonts={"headline": {"data": b64(b"hello, world" * 20)}}), "fonts.headline"),
    "unknown font": (kit("x", fonts={"headline": "NoSuchFont"}), "fonts.headline"),
    "svg script": (kit("x", logo=b64(b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9">'
                                     b"<script>alert(1)</script></svg>")), "script"),
    "svg external href": (kit("x", logo=b64(
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 9 9">'
        b'<rect width="9" height="9"/><use xlink:href="http://127.0.0.1:9/evil.svg#a"/></svg>')), "external"),
    "svg css url": (kit("x", logo=b64(b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9">'
                                      b'<rect style="fill: url(https://evil/x.png)" width="9" height="9"/></svg>')),
                    "external"),
    "svg entity": (kit("x", logo=b64(b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                                     b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9">&e;</svg>')),
                   "DOCTYPE"),
    "svg onload": (kit("x", logo=b64(b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9" onload="x()">'
                                     b'<rect width="9" height="9"/></svg>')), "onload"),
    "huge logo": (kit("x", logo=logo_png((4200, 4200))), "megapixel"),
    "logo not an image": (kit("x", logo=b64(b"GIF89a" + b"\0" * 64)), "PNG or an SVG"),
}


async def test_save_list_delete_and_refusals_over_mcp(server) -> None:
    async with Client(server, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"save_brand_kit", "list_brand_kits", "delete_brand_kit"} <= set(tools)
        assert {"name", "colors", "fonts", "logo", "logo_corner", "tone"} <= set(
            tools["save_brand_kit"].input_schema["properties"])
        saved = await client.call_tool("save_brand_kit", kit("acme-svg", logo=b64(SAFE_SVG), logo_corner="bottom-left",
                                                            tone=["bold", "summer"], fonts={"headline": {
                                                                "data": b64(block_font())}, "body": "NanumSquare"}))
        assert not saved.is_error, saved.content
        st = saved.structured_content
        assert st["logo"]["source"] == "svg" and st["logo"]["width"] == 1024 and st["logo"]["height"] == 512
        assert st["fonts"]["headline"]["source"] == "upload" and st["fonts"]["headline"]["original_family"] == "Blocky"
        assert st["fonts"]["body"] == {"family": "NanumSquare", "source": "catalog", "file": None,
                                       "original_family": None}
        assert st["colors"]["text"] == "#ffd400"
        # The rasterised SVG: magenta where the rectangle is, transparent nowhere inside (it was trimmed to ink).
        stored = Path(server.manager.settings.data_dir) / "brand_kits" / "acme-svg" / "logo.png"
        logo = Image.open(stored)
        OUT.mkdir(parents=True, exist_ok=True)
        logo.save(OUT / "svg-logo-rasterised.png")
        assert logo.size == (1024, 512) and logo.getpixel((512, 256)) == (*MAGENTA, 255)

        listed = (await client.call_tool("list_brand_kits", {})).structured_content["kits"]
        assert "acme-svg" in [k["name"] for k in listed]

        for case, (args, word) in BAD_KITS.items():
            bad = await client.call_tool("save_brand_kit", args)
            text = bad.content[0].text
            assert bad.is_error, case
            assert word.lower() in text.lower() and "\n" not in text and len(text) < 400, (case, text)
        listed = (await client.call_tool("list_brand_kits", {})).structured_content["kits"]
        assert [k["name"] for k in listed] == ["acme-svg"], "a refused kit must leave nothing behind"

        gone = await client.call_tool("delete_brand_kit", {"name": "acme-svg"})
        assert gone.structured_content["deleted"] is True
        again = await client.call_tool("delete_brand_kit", {"name": "acme-svg"})
        assert again.is_error and "no brand kit named" in again.content[0].text
        assert not stored.parent.exists()
        unknown = await client.call_tool("generate_ad", {"product_image": logo_png(), "text_content": "Hi",
                                                         "brand_kit": "acme-svg", "test_mode": True})
        assert unknown.is_error and "brand_kit" in unknown.content[0].text


def test_rest_and_persistence_across_restart(http_server_factory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = http_server_factory(data_dir=data)
    r = httpx.post(first.base + "/brand-kits", json=kit("rest-kit", logo=logo_png(), tone=["calm"]), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["logo"]["source"] == "png"
    bad = httpx.post(first.base + "/brand-kits", json=kit("rest-bad", fonts={"body": {"data": b64(b"\0\1\0\0junk")}}),
                     timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"].startswith("fonts.body")
    doc = httpx.get(first.base + "/openapi.json", timeout=10).json()
    assert {"post", "get"} <= set(doc["paths"]["/brand-kits"]) and "delete" in doc["paths"]["/brand-kits/{name}"]
    assert first.stop() == 0

    second = http_server_factory(data_dir=data)  # a new process over the same data folder
    kits = httpx.get(second.base + "/brand-kits", timeout=10).json()
    assert [k["name"] for k in kits] == ["rest-kit"] and kits[0]["tone"] == ["calm"]
    assert httpx.delete(second.base + "/brand-kits/rest-kit", timeout=10).json()["deleted"] is True
    missing = httpx.delete(second.base + "/brand-kits/rest-kit", timeout=10)
    assert missing.status_code == 404 and "no brand kit named" in missing.json()["detail"]
    assert httpx.get(second.base + "/brand-kits", timeout=10).json() == []


async def _job(client: Client, manager, args: dict) -> tuple[dict, Path]:
    res = await client.call_tool("generate_ad", {"test_mode": True, "use_llm_html": False, "wait_seconds": 50, **args})
    assert not res.is_error, res.content
    st = res.structured_content
    assert st["status"] == "completed", st
    return st, manager.store.job_dir(st["job_id"])


def _glyph_blocks(layer: Image.Image, colour: tuple[int, int, int]) -> list[tuple[float, float]]:
    """(fill ratio, width/height) of each opaque blob of the copy's colour in the text layer."""
    a = np.asarray(layer.convert("RGBA")).astype(int)
    ink = (a[..., 3] >= 250) & (np.abs(a[..., :3] - np.array(colour)).max(axis=2) < 40)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    return [(stats[i, 4] / (stats[i, 2] * stats[i, 3]), stats[i, 2] / stats[i, 3])
            for i in range(1, n) if stats[i, 4] > 150]


async def test_draft_job_applies_the_kit(server, product_b64: str) -> None:
    manager = server.manager
    async with Client(server, mode="legacy") as client:
        saved = await client.call_tool("save_brand_kit", kit(
            "blocky", logo=logo_png(), logo_corner="top-left", fonts={"headline": {"data": b64(block_font())}}))
        assert not saved.is_error, saved.content
        st, job_dir = await _job(client, manager, {
            "product_image": product_b64, "text_content": "SUMMER SALE", "cta": "Shop now", "brand_kit": "blocky",
            "text_position": "bottom", "width": 1080, "height": 1080, "seed": 5})
        # A kit whose font lacks the copy's letters is refused at submit, naming them.
        nohangul = await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "여름 세일",
                                                          "brand_kit": "blocky", "test_mode": True})
        assert nohangul.is_error and "U+C5EC" in nohangul.content[0].text
    final = Image.open(job_dir / "final.png").convert("RGB")
    layer = Image.open(job_dir / "text.png")
    mask = np.asarray(Image.open(job_dir / "mask.png")) > 127
    OUT.mkdir(parents=True, exist_ok=True)
    final.save(OUT / "kit-draft-final.png")

    # The logo: in the top-left corner at the margin, ~12% of the short side tall, not on the product.
    box = magenta_box(final)
    assert box is not None, "logo not found in final.png"
    x0, y0, x1, y1 = box
    assert x0 < 0.1 * 1080 and y0 < 0.1 * 1080 and x0 >= 30 and y0 >= 30, box
    assert 0.09 * 1080 <= y1 - y0 <= 0.125 * 1080 + 2, box
    assert not mask[y0:y1, x0:x1].any(), "the logo covers the product"
    assert not (np.asarray(layer.getchannel("A"))[y0:y1, x0:x1] > 16).any(), "the logo covers the copy"

    # The kit's text colour is the copy's colour, and its uploaded font drew it: solid blocks, ~0.69 wide/tall.
    blocks = _glyph_blocks(layer, (0xFF, 0xD4, 0x00))
    solid = [b for b in blocks if b[0] > 0.93 and 0.55 < b[1] < 0.85]
    assert len(solid) >= 8, blocks  # "SUMMER SALE": 10 letters (two may touch)
    html = (job_dir / "design.html").read_text()
    assert "adgen-brand-blocky-headline" in html and "#0057ff" in html  # the font face; the button in primary
    assert st["contrast_ratio"] is not None and st["contrast_ratio"] >= 3.0, st
    assert not any("contrast" in w for w in st["warnings"]), st["warnings"]


def _flat(colour: tuple[int, int, int], size: int = 1024) -> str:
    return png_b64(Image.new("RGB", (size, size), colour))


async def test_contrast_reported_and_low_contrast_kit_gets_a_panel(server) -> None:
    manager = server.manager
    async with Client(server, mode="legacy") as client:
        grey = {**COLORS, "text": "#5a5a5a", "background": "#f4f0e8"}
        await client.call_tool("save_brand_kit", {"name": "greyish", "colors": grey})
        await client.call_tool("save_brand_kit", {"name": "white-copy", "colors": {**COLORS, "text": "#ffffff"}})
        low, low_dir = await _job(client, manager, {"start_step": 2, "step1_image": _flat((128, 128, 128)),
                                                    "text_content": "Fresh roast", "subline": "Every morning",
                                                    "brand_kit": "greyish"})
        high, high_dir = await _job(client, manager, {"start_step": 2, "step1_image": _flat((10, 12, 20)),
                                                      "text_content": "Fresh roast", "brand_kit": "white-copy"})
    OUT.mkdir(parents=True, exist_ok=True)
    Image.open(low_dir / "final.png").save(OUT / "low-contrast-kit-panel.png")
    # Dark grey on mid grey (1.8:1 bare) is set on a panel of the kit's background colour and reaches body-text contrast.
    html = (low_dir / "design.html").read_text()
    assert "rgba(244,240,232," in html, "no panel in the kit's background colour"
    assert low["contrast_ratio"] >= 4.5 and not any("contrast" in w for w in low["warnings"]), low
    a = np.asarray(Image.open(low_dir / "text.png").convert("RGBA")).astype(int)
    copy_px = (a[..., 3] >= 250) & (np.abs(a[..., :3] - 0x5A).max(axis=2) < 12)
    assert copy_px.sum() > 500, "the kit's text colour is not in the copy"
    # White on near-black needs nothing: no panel, a high ratio.
    assert "rgba(" not in (high_dir / "design.html").read_text().split(".band")[1].split("}")[0]
    assert high["contrast_ratio"] > 12


def test_measure_warns_on_unreadable_copy() -> None:
    """The measurement itself: pale text on a pale picture is reported, dark text on it is not."""
    font = ImageFont.truetype(str(next(BUNDLED_FONTS_DIR.glob("*.ttf"))), 60)
    step1 = Image.new("RGB", (600, 200), (235, 235, 235))
    for colour, readable in (((220, 220, 220), False), ((20, 20, 20), True)):
        layer = Image.new("RGBA", step1.size, (0, 0, 0, 0))
        ImageDraw.Draw(layer).text((40, 60), "Readable?", font=font, fill=(*colour, 255))
        final = Image.alpha_composite(step1.convert("RGBA"), layer).convert("RGB")
        result = measure(final, layer)
        assert len(result.lines) == 1 and result.ratio is not None
        assert (warning(result) is None) == readable, (colour, result)
        assert (result.ratio > 10) == readable


def test_saved_kit_json_is_the_listed_kit(server) -> None:
    """kit.json on disk is exactly what list_brand_kits serves (one source of truth)."""
    store = server.manager.brand_kits
    from pipeline.schemas import BrandKitInput

    saved = store.save(BrandKitInput(**kit("disk-check", tone=["warm"])))
    on_disk = json.loads((store.root / "disk-check" / "kit.json").read_text())
    assert on_disk == saved.model_dump(mode="json")
    assert store.delete("disk-check")


@pytest.mark.skipif("placements" not in __import__("pipeline.schemas").schemas.GenerateRequest.model_fields,
                    reason="placements are not in this tree yet")
async def test_logo_in_every_placement_inside_its_safe_zone(server) -> None:
    """A story keeps its top 14% free of copy and of the logo; the landscape gets the logo too."""
    from pipeline.placements import PLACEMENTS

    manager = server.manager
    async with Client(server, mode="legacy") as client:
        await client.call_tool("save_brand_kit", kit("corner-kit", logo=logo_png(), logo_corner="top-right"))
        st, job_dir = await _job(client, manager, {
            "start_step": 2, "step1_image": _flat((40, 60, 90), 1080), "text_content": "New season",
            "brand_kit": "corner-kit", "placements": ["story", "landscape"]})
    assert st["contrast_ratio"] is not None and st["contrast_ratio"] >= 3.0, st
    ratios = [r["contrast_ratio"] for r in st["results"]]
    assert len(ratios) == 2 and None not in ratios and st["contrast_ratio"] == min(ratios), st["results"]
    for name in ("story", "landscape"):
        p = PLACEMENTS[name]
        img = Image.open(job_dir / "results" / f"{name}-v1.png")
        img.save(OUT / f"kit-{name}.png")
        box = magenta_box(img)
        assert box is not None, name
        top, bottom = p.safe_px()
        x0, y0, x1, y1 = box
        assert x1 > 0.8 * p.width and y0 >= top + 0.03 * min(p.width, p.height) and y1 <= p.height - bottom, box
        assert 0.09 * min(p.width, p.height) <= y1 - y0 <= 0.125 * min(p.width, p.height) + 2, (name, box)


async def test_llm_designer_gets_the_kit_and_must_use_it(server) -> None:
    """Sampling is asked with the kit as structured input; an answer ignoring the kit's colour or font is refused
    (the template is used, saying why), one honouring both is kept."""
    from mcp_types import CreateMessageResult, TextContent

    from mcp_server.server import build_server

    asked: list[str] = []
    answers = [
        '<div style="position:absolute;left:80px;top:80px;font:bold 80px NanumSquare;color:#00ff00">Sale</div>',
        '<div style="position:absolute;left:80px;top:80px;font:bold 80px NanumSquare;color:#ffd400">Sale</div>',
        '<div style="position:absolute;left:80px;top:80px;font-size:80px;font-family:\'adgen-brand-llm-kit-headline\';'
        'color:#FFD400">Sale</div>',
    ]

    async def sampling(context, params) -> CreateMessageResult:
        asked.append(params.messages[0].content.text)
        return CreateMessageResult(role="assistant", content=TextContent(text=answers[len(asked) - 1]), model="m")

    manager = server.manager
    async with Client(build_server(manager), mode="legacy", sampling_callback=sampling) as client:
        saved = await client.call_tool("save_brand_kit", kit("llm-kit", tone=["warm", "crafty"], logo=logo_png(),
                                                            fonts={"headline": {"data": b64(block_font())}}))
        assert not saved.is_error, saved.content
        args = {"start_step": 2, "step1_image": _flat((20, 30, 40)), "text_content": "Sale", "brand_kit": "llm-kit",
                "test_mode": True, "wait_seconds": 50}
        results = [(await client.call_tool("generate_ad", args)).structured_content for _ in answers]
    prompt = asked[0]
    for part in ("[Brand kit]", "#ffd400", "#0057ff", "#ff7a00", "#101820", "adgen-brand-llm-kit-headline",
                 "warm, crafty", "top-right corner free"):
        assert part in prompt, part
    wrong_colour, wrong_font, kept = results
    assert wrong_colour["designer"] == "template" and "copy colour #ffd400" in wrong_colour["design_note"]
    assert wrong_font["designer"] == "template" and "headline font" in wrong_font["design_note"]
    assert kept["designer"] == "mcp_sampling", kept
    layer = Image.open(manager.store.job_dir(kept["job_id"]) / "text.png")
    assert len([b for b in _glyph_blocks(layer, (0xFF, 0xD4, 0x00)) if b[0] > 0.93]) == 4  # S a l e, as blocks
    assert kept["contrast_ratio"] > 7


def test_woff2_font_and_logo_path(tmp_path: Path) -> None:
    """A WOFF2 upload is stored as a plain TrueType file; a logo path must lie inside the input folders."""
    from fontTools.ttLib import TTFont

    from pipeline.config import Settings
    from pipeline.fonts import FontCatalog
    from pipeline.images import InputError
    from pipeline.jobs.brandkits import BrandKitStore
    from pipeline.schemas import BrandKitInput

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "logo.svg").write_bytes(SAFE_SVG)
    (tmp_path / "outside.png").write_bytes(base64.b64decode(logo_png()))
    settings = Settings(data_dir=tmp_path / "data", input_dirs=[inputs])
    store = BrandKitStore(settings.data_dir / "brand_kits", FontCatalog(settings.fonts_dir), settings)
    woff2 = TTFont(io.BytesIO(block_font()))
    woff2.flavor = "woff2"
    buf = io.BytesIO()
    woff2.save(buf)
    assert buf.getvalue()[:4] == b"wOF2"
    saved = store.save(BrandKitInput(**kit("woff", logo="logo.svg", fonts={"headline": {"data": b64(buf.getvalue())}})))
    stored = store.root / "woff" / saved.fonts["headline"].file
    assert stored.suffix == ".ttf" and stored.read_bytes()[:4] == b"\0\1\0\0"
    assert TTFont(stored).getBestCmap()[ord("A")] == "g0041"
    assert saved.logo is not None and saved.logo.source == "svg"
    with pytest.raises(InputError, match="input folders"):
        store.save(BrandKitInput(**kit("outside", logo=str(tmp_path / "outside.png"))))
    assert [k.name for k in store.list()] == ["woff"]


async def test_logo_on_an_ad_without_copy(server) -> None:
    """No copy, no text layer: the kit's logo still goes on the delivered picture, in its corner."""
    manager = server.manager
    async with Client(server, mode="legacy") as client:
        await client.call_tool("save_brand_kit", kit("quiet-kit", logo=logo_png(), logo_corner="bottom-right"))
        st, job_dir = await _job(client, manager, {"start_step": 2, "step1_image": _flat((200, 200, 190)),
                                                   "brand_kit": "quiet-kit"})
    final = Image.open(job_dir / "final.png")
    box = magenta_box(final)
    assert box is not None and 0.9 * 1024 < box[2] <= 1024 - 40 and 0.9 * 1024 < box[3] <= 1024 - 40, box
    assert st["contrast_ratio"] is None
    assert magenta_box(Image.open(st["output_file"])) == box  # the delivered file is the same picture


def test_cli_brand_kit(tmp_path: Path) -> None:
    """``adgen generate --brand-kit`` (a real MCP client starting the server over stdio) applies a saved kit;
    an unknown kit is a one-line usage error."""
    import os
    import subprocess
    import sys

    from pipeline.config import Settings
    from pipeline.fonts import FontCatalog
    from pipeline.jobs.brandkits import BrandKitStore
    from pipeline.schemas import BrandKitInput
    from tests.conftest import EXAMPLE, REPO

    data = tmp_path / "d"
    settings = Settings(data_dir=data)
    BrandKitStore(data / "brand_kits", FontCatalog(settings.fonts_dir), settings).save(
        BrandKitInput(**kit("cli-kit", logo=logo_png(), logo_corner="bottom-left")))
    env = dict(os.environ, ADGEN_DATA_DIR=str(data), ADGEN_OUTPUT_DIR=str(tmp_path / "out"))

    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mcp_server.cli", "generate", str(EXAMPLE), "--text", "Hello",
                               "--size", "640x640", "--seed", "2", "--data-dir", str(data), *extra],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)

    out = tmp_path / "ad.png"
    proc = cli("--brand-kit", "cli-kit", "--position", "top", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    box = magenta_box(Image.open(out))
    assert box is not None and box[0] < 0.1 * 640 and box[3] > 0.85 * 640, box
    bad = cli("--brand-kit", "no-such-kit", "--out", str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "no brand kit named 'no-such-kit'" in bad.stderr
    assert [line for line in bad.stderr.splitlines() if line.startswith("adgen:")] == [
        "adgen: brand_kit: no brand kit named 'no-such-kit' (list_brand_kits shows the saved ones)"], bad.stderr


async def test_llm_design_below_wcag_is_kept_with_a_warning(server) -> None:
    """An LLM's own design is not redone: pale kit copy on a pale picture is delivered as designed, and the
    status says how low its contrast is."""
    from mcp_types import CreateMessageResult, TextContent

    from mcp_server.server import build_server

    html = ('<div style="position:absolute;left:80px;top:300px;font:bold 90px NanumSquare;color:#f0f0f0">'
            "Pale sale</div>")

    async def sampling(context, params) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", content=TextContent(text=html), model="m")

    manager = server.manager
    async with Client(build_server(manager), mode="legacy", sampling_callback=sampling) as client:
        await client.call_tool("save_brand_kit", {"name": "pale", "colors": {**COLORS, "text": "#f0f0f0"},
                                                  "fonts": {"headline": "NanumSquare"}})
        res = await client.call_tool("generate_ad", {
            "start_step": 2, "step1_image": _flat((232, 232, 226)), "text_content": "Pale sale", "brand_kit": "pale",
            "test_mode": True, "wait_seconds": 50})
    st = res.structured_content
    assert st["designer"] == "mcp_sampling", st
    assert st["contrast_ratio"] < 1.5, st
    assert any("contrast of only" in w and "3:1" in w for w in st["warnings"]), st["warnings"]
