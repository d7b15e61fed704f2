"""The Studio MCP App: its committed build, its resource and app-only tool through a real MCP client, and the
app itself in real Chromium inside a host page built on ext-apps' own AppBridge, relaying to the real server."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.extension import ClientExtension
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.server.mcpserver import MCPServer
from PIL import Image

from mcp_server.server import build_server
from mcp_server.studio import MAX_CHUNK, STUDIO_URI, ui_meta
from pipeline.config import Settings
from pipeline.jobs import JobManager
from pipeline.worker.render.browser import CHROMIUM_FLAGS
from tests.conftest import ARTIFACTS, REPO
from tests.helpers import serving, wait_for_job

STUDIO_HTML = REPO / "mcp_server" / "studio" / "studio.html"
HOST_HTML = REPO / "tests" / "data" / "studio-host.html"
ONE_MIB = 1024 * 1024
pytestmark = pytest.mark.anyio


# -- the committed build ------------------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in {"meta", "input", "img", "br", "link"}:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def test_build_is_one_small_self_contained_document_with_csp() -> None:
    raw = STUDIO_HTML.read_bytes()
    assert len(raw) < ONE_MIB
    html = raw.decode("utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    parser = _Tags()
    parser.feed(html)
    parser.close()
    assert not parser.errors and not parser.open, (parser.errors, parser.open)
    names = [t for t, _ in parser.tags]
    assert names.count("html") == names.count("head") == names.count("body") == 1
    assert names.count("script") == 1 and names.count("style") == 1 and "link" not in names and "iframe" not in names
    for tag, attrs in parser.tags:  # nothing the browser would fetch: no src/href/action/poster at all
        for key in ("src", "href", "action", "poster", "srcset", "data"):
            assert key not in attrs, (tag, attrs)
    csp = next(a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None
    for directive in ("default-src 'none'", "connect-src 'none'", "frame-src 'none'", "base-uri 'none'"):
        assert directive in csp
    assert "http" not in csp
    # Scripts and styles: no module import, dynamic import, @import or url() of anything remote.
    for pattern in (r"""\bimport\s*\(\s*['"`]https?:""", r"""\bfrom\s*['"`]https?:""", r"@import",
                    r"url\(\s*['\"]?https?:", r"importScripts\s*\(", r"new\s+Worker\s*\("):
        assert not re.search(pattern, html), pattern


@pytest.mark.skipif(shutil.which("node") is None or not (REPO / "studio" / "node_modules").is_dir(),
                    reason="needs node and studio/node_modules (make studio)")
def test_build_is_reproducible_and_committed_build_is_current() -> None:
    # Builds twice in memory and compares both with each other and with the committed files.
    done = subprocess.run(["node", "build.mjs", "--check"], cwd=REPO / "studio", capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ui_meta_declares_the_studio_in_both_spellings() -> None:
    assert ui_meta() == {"ui": {"resourceUri": STUDIO_URI}, "ui/resourceUri": STUDIO_URI}


# -- the server side through a real MCP client ---------------------------------------------------------

class AppsHostExtension(ClientExtension):
    """What an MCP Apps host advertises: the extension with its MIME type."""

    identifier = EXTENSION_ID

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


async def studio_server(manager: JobManager, transport: str = "stdio") -> MCPServer:
    """The real server: build_server wires the Studio (Apps extension) and the real edit_ad."""
    server = build_server(manager, transport)  # type: ignore[arg-type]
    names = {t.name for t in await server.list_tools()}
    assert {"studio_image", "studio_jobs", "edit_ad"} <= names
    return server


def _size(result: Any) -> int:
    return len(result.model_dump_json(by_alias=True, exclude_none=True))


async def test_resource_and_app_only_tool_through_a_client(manager: JobManager, product_b64: str) -> None:
    server = await studio_server(manager)
    async with Client(server, mode="legacy", extensions=[AppsHostExtension()]) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        studio = listed[STUDIO_URI]
        assert studio.mime_type == APP_MIME_TYPE and studio.meta == {"ui": {"csp": {}, "prefersBorder": True}}
        read = (await client.read_resource(STUDIO_URI)).contents[0]
        assert read.mime_type == APP_MIME_TYPE and read.text == STUDIO_HTML.read_text(encoding="utf-8")
        assert read.meta["ui"]["csp"] == {}  # no external origin of any kind

        tools = {t.name: t for t in (await client.list_tools()).tools}
        # The SDK lists every tool; visibility ["app"] tells hosts to keep it from the model (spec: the host filters).
        assert tools["studio_image"].meta["ui"] == {"resourceUri": STUDIO_URI, "visibility": ["app"]}
        assert "studio_image" not in (tools["generate_ad"].description or "")

        gen = await client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "스튜디오",
                                                     "width": 1536, "height": 1024, "seed": 3, "wait_seconds": 50})
        st = gen.structured_content
        assert st["status"] == "completed", gen.content
        job = st["job_id"]
        final = manager.artifact(job, "final.png")
        assert final is not None
        whole = final.read_bytes()

        # Slices reassemble to the file's exact bytes, each answer far below the 1 MiB hosts accept.
        parts, offset = [], 0
        while True:
            r = await client.call_tool("studio_image", {"job_id": job, "offset": offset, "length": 200_000})
            assert not r.is_error, r.content
            c = r.structured_content
            assert (c["width"], c["height"], c["mime_type"]) == (1536, 1024, "image/png")
            assert c["total_bytes"] == len(whole) and c["offset"] == offset
            parts.append(base64.b64decode(c["data"]))
            offset += len(parts[-1])
            assert _size(r) < ONE_MIB
            if c["done"]:
                break
        assert len(parts) > 1 and b"".join(parts) == whole
        assert sum(len(str(x.text)) for x in r.content if x.type == "text") < 200  # no base64 echoed as text

        big = await client.call_tool("studio_image", {"job_id": job})  # default length: the biggest slice
        assert _size(big) < ONE_MIB and len(base64.b64decode(big.structured_content["data"])) == min(MAX_CHUNK, len(whole))

        small = await client.call_tool("studio_image", {"job_id": job, "max_side": 300})
        c = small.structured_content
        jpeg = base64.b64decode(c["data"])
        assert c["done"] and c["mime_type"] == "image/jpeg" and len(jpeg) == c["total_bytes"]
        with Image.open(io.BytesIO(jpeg)) as im:
            assert im.format == "JPEG" and im.size == (300, 200) == (c["width"], c["height"])

        jobs = (await client.call_tool("studio_jobs", {"limit": 5})).structured_content["jobs"]
        assert jobs[0]["job_id"] == job and jobs[0]["text_content"] == "스튜디오"
        assert (jobs[0]["width"], jobs[0]["height"], jobs[0]["status"]) == (1536, 1024, "completed")
        assert tools["studio_jobs"].meta["ui"]["visibility"] == ["app"]

        delivered = await client.call_tool("studio_image", {"job_id": job, "artifact": "download"})
        assert delivered.structured_content["total_bytes"] == manager.output_file(job).stat().st_size

        for args, words in (({"job_id": job, "artifact": "../../etc/passwd"}, "artifact"),
                            ({"job_id": "0" * 32}, "0" * 32),
                            ({"job_id": job, "length": MAX_CHUNK + 1}, "length")):
            bad = await client.call_tool("studio_image", args)
            text = bad.content[0].text
            assert bad.is_error and words in text and "\n" not in text and len(text) < 300, text


# -- the app in Chromium, hosted by ext-apps' AppBridge, relaying to the real server over HTTP -------------------

@dataclass
class Session:
    page: Any
    frame: Any
    client: Client
    calls: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@asynccontextmanager
async def hosted_studio(manager: JobManager, theme: str = "light") -> AsyncIterator[Session]:
    from playwright.async_api import async_playwright

    server = await studio_server(manager, "streamable-http")
    async with serving(server.streamable_http_app(host="127.0.0.1")) as base, \
            Client(f"{base}/mcp", extensions=[AppsHostExtension()]) as client, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=Settings().chromium_path, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1180, "height": 1000})
        session = Session(page=page, frame=None, client=client)
        page.on("request", lambda req: session.requests.append(req.url))
        # Shown when a test fails (Chromium's own console, errors and warnings only).
        page.on("console", lambda msg: msg.type in ("error", "warning") and print("console:", msg.text))

        async def relay(params: dict[str, Any]) -> dict[str, Any]:
            # The host's job: forward the app's tools/call to the server, return the result as sent.
            session.calls.append(params["name"])
            result = await client.call_tool(params["name"], params.get("arguments") or {})
            return result.model_dump(by_alias=True, exclude_none=True, mode="json")

        await page.expose_function("adgenCallTool", relay)
        await page.set_content(HOST_HTML.read_text(encoding="utf-8"))
        res = (await client.read_resource(STUDIO_URI)).contents[0]  # over HTTP, as a host reads it
        with anyio.fail_after(20):  # ui/initialize answered, ui/notifications/initialized received
            await page.evaluate("([html, csp, theme]) => window.adgenHost.mount(html, csp, theme)",
                                [res.text, res.meta["ui"]["csp"], theme])
        session.frame = next(f for f in page.frames if f != page.main_frame)
        await session.frame.wait_for_selector('#studio[data-connected="true"]', state="attached", timeout=10_000)
        yield session
        await browser.close()


# Snapshots of what the app shows, taken inside the frame on every DOM change.
WATCH = """() => {
  window.__seen = [];
  const snap = () => window.__seen.push({
    state: document.getElementById('studio').dataset.state, stage: document.getElementById('stage').textContent,
    percent: document.getElementById('percent').textContent, eta: document.getElementById('eta').textContent,
    preview: document.getElementById('final').dataset.preview || ''});
  new MutationObserver(snap).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


async def start_job(session: Session, product_b64: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The model's generate_ad call as a host makes it: the arguments go to the app when the call starts."""
    await session.page.evaluate("a => window.adgenHost.input(a)", args)
    result = await session.client.call_tool("generate_ad", {"product_image": product_b64, "wait_seconds": 0, **args})
    assert not result.is_error, result.content
    return result.structured_content["job_id"], result.model_dump(by_alias=True, exclude_none=True, mode="json")


async def deliver(session: Session, result: dict[str, Any]) -> None:
    """...and the result when the call answers."""
    await session.page.evaluate("r => window.adgenHost.result(r)", result)


async def shown_final(session: Session, job_id: str) -> dict[str, Any]:
    img = session.frame.locator(f'#final[data-job="{job_id}"]')
    await img.wait_for(state="visible", timeout=60_000)
    return await img.evaluate("i => ({w: i.naturalWidth, h: i.naturalHeight, src: i.src})")


async def test_studio_shows_progress_then_the_full_size_ad(manager: JobManager, product_b64: str) -> None:
    async with hosted_studio(manager) as s:
        await s.frame.evaluate(WATCH)
        # The font list comes from list_fonts through the host.
        await s.frame.wait_for_function("() => document.querySelectorAll('#f-font_family option').length > 1",
                                        timeout=10_000)
        assert "list_fonts" in s.calls
        # One job ahead of ours, so the app has a queue and a running stage to show.
        ahead = await s.client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "앞",
                                                         "width": 1080, "height": 1920, "wait_seconds": 0})
        job, result = await start_job(s, product_b64, {"text_content": "Studio 스튜디오 ✨", "subline": "New season",
                                                       "width": 960, "height": 640, "seed": 5})
        # Before the tool call has answered, the app has found the job from its arguments and shows it.
        await s.frame.wait_for_selector(f'#studio[data-job="{job}"]', state="attached", timeout=10_000)
        assert manager.status(job).status in ("pending", "running") and "studio_jobs" in s.calls
        await wait_for_job(manager, ahead.structured_content["job_id"])
        await wait_for_job(manager, job)
        await deliver(s, result)  # the (stale, wait_seconds=0) result of the call changes nothing shown
        final = await shown_final(s, job)
        st = manager.status(job)
        assert st.status == "completed" and (final["w"], final["h"]) == (960, 640)
        # The full-size PNG itself, byte for byte, not a preview.
        assert final["src"].startswith("data:image/png;base64,")
        shown = base64.b64decode(final["src"].split(",", 1)[1])
        assert hashlib.sha256(shown).digest() == hashlib.sha256(manager.artifact(job, "final.png").read_bytes()).digest()

        seen = await s.frame.evaluate("() => window.__seen")
        live = [x for x in seen if x["state"] in ("pending", "running")]
        assert live, seen[:5]
        assert any(x["state"] == "running" and x["percent"] != "0%" and x["stage"] not in ("", "Queued") for x in live)
        assert any(re.search(r"left|over the estimate", x["eta"]) for x in live if x["state"] == "running")
        assert seen[-1]["state"] == "completed" and seen[-1]["percent"] == "100%"
        assert await s.frame.locator("#f-subline").input_value() == "New season"  # the form holds the job's copy
        assert s.calls.count("get_status") >= 2 and "studio_image" in s.calls

        # Download goes through the host (ui/download-file): the delivered file, whole.
        await s.frame.locator("#download").click()
        await s.page.wait_for_function("() => window.adgenHost.downloads.length === 1", timeout=20_000)
        got = await s.page.evaluate("() => window.adgenHost.downloads[0]")
        assert got["size"] == manager.output_file(job).stat().st_size and got["mimeType"] == "image/png"

        ARTIFACTS.mkdir(exist_ok=True)
        await s.page.screenshot(path=str(ARTIFACTS / "studio.png"))
        # Nothing but the relay: the app itself made no network request at all.
        assert s.requests == [], s.requests


async def test_studio_stop_button_stops_the_job(manager: JobManager, product_b64: str) -> None:
    async with hosted_studio(manager, theme="dark") as s:
        # A call the server refused: its one-line error is shown, and the app stays usable.
        bad = await s.client.call_tool("generate_ad", {"product_image": product_b64, "width": 100})
        assert bad.is_error
        await deliver(s, bad.model_dump(by_alias=True, exclude_none=True, mode="json"))
        await s.frame.locator("#notes .note.error", has_text="width").wait_for(timeout=5_000)
        ahead = await s.client.call_tool("generate_ad", {"product_image": product_b64, "text_content": "앞",
                                                         "width": 1080, "height": 1920, "wait_seconds": 0})
        job, result = await start_job(s, product_b64, {"text_content": "멈춤", "width": 1080, "height": 1920})
        await deliver(s, result)
        stop = s.frame.locator("#stop")
        await stop.wait_for(state="visible")
        await s.frame.wait_for_selector(f'#studio[data-job="{job}"]', state="attached", timeout=10_000)
        await stop.click()
        await s.frame.wait_for_selector('#studio[data-state="stopped"]', state="attached", timeout=30_000)
        assert manager.status(job).status == "stopped" and "stop_job" in s.calls
        assert "stop" in (await s.frame.locator("#notes").inner_text()).lower()
        await wait_for_job(manager, ahead.structured_content["job_id"])
        ARTIFACTS.mkdir(exist_ok=True)
        await s.page.screenshot(path=str(ARTIFACTS / "studio-dark-stopped.png"))
        assert s.requests == [], s.requests


async def test_studio_gallery_shows_every_result(manager: JobManager, product_b64: str) -> None:
    async with hosted_studio(manager) as s:
        job, result = await start_job(s, product_b64, {"text_content": "갤러리", "placements": ["square", "landscape"],
                                                       "seed": 4})
        await wait_for_job(manager, job)
        await deliver(s, result)
        first = await shown_final(s, job)
        assert (first["w"], first["h"]) == (1080, 1080)
        thumbs = s.frame.locator("#gallery .thumb")
        await s.frame.wait_for_function(
            "() => [...document.querySelectorAll('#gallery .thumb img')].filter(i => i.naturalWidth > 0).length === 2",
            timeout=20_000)
        assert await thumbs.count() == 2 and "landscape" in await thumbs.nth(1).inner_text()
        await thumbs.nth(1).click()
        await s.frame.wait_for_function("() => document.getElementById('final').naturalWidth === 1200", timeout=20_000)
        assert await s.frame.locator("#final").evaluate("i => i.naturalHeight") == 628
        assert await thumbs.nth(1).get_attribute("aria-pressed") == "true"
        ARTIFACTS.mkdir(exist_ok=True)
        await s.page.screenshot(path=str(ARTIFACTS / "studio-gallery.png"))
        assert s.requests == [], s.requests


async def test_studio_edit_copy_through_the_ui(manager: JobManager, product_b64: str) -> None:
    async with hosted_studio(manager) as s:
        job, result = await start_job(s, product_b64, {"text_content": "Before", "width": 768, "height": 768,
                                                       "seed": 9})
        await deliver(s, result)
        await shown_final(s, job)
        await s.frame.locator("#f-text_content").fill("After the edit")
        await s.frame.locator('#f-text_position input[value="top"]').check()
        await s.frame.locator("#apply").click()
        await s.frame.wait_for_function(f"() => document.getElementById('studio').dataset.job !== '{job}'",
                                        timeout=20_000)
        new_job = await s.frame.evaluate("() => document.getElementById('studio').dataset.job")
        final = await shown_final(s, new_job)
        st = manager.status(new_job)
        assert st.parent_job_id == job and st.parameters["text_content"] == "After the edit"
        assert st.parameters["text_position"] == "top" and (final["w"], final["h"]) == (768, 768)
        assert "edit_ad" in s.calls
        context = await s.page.evaluate("() => window.adgenHost.modelContext")
        assert any(new_job in c for c in context), context
        ARTIFACTS.mkdir(exist_ok=True)
        await s.page.screenshot(path=str(ARTIFACTS / "studio-edited.png"))
        assert s.requests == [], s.requests


def test_json_of_the_resource_read_fits_one_message() -> None:
    # resources/read carries the document JSON-escaped; the SDK's HTTP client refuses one event over 1 MiB.
    assert len(json.dumps(STUDIO_HTML.read_text(encoding="utf-8"))) < ONE_MIB - 16 * 1024
