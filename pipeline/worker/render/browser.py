"""The text-layer renderer: one warm headless Chromium, locked down, reused across jobs.

The HTML it renders may come from an LLM, so the page runs with JavaScript off, every
network request aborted except ``data:`` URLs, content set with ``set_content`` (never a
``file://`` navigation), and hard timeouts. Fonts come from fontconfig (the project's
``fonts/`` folder is added to the system's), so no font request ever leaves the page.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.fonts import fontconfig_file
from pipeline.priority import yield_child_sessions
from pipeline.worker.hooks import WorkerHooks

log = logging.getLogger(__name__)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


FONT_WAIT_MS = 3000
_FONTS_READY = """(ms) => Promise.race([
  Promise.allSettled([...document.fonts].map((f) => f.load())).then(() => document.fonts.ready),
  new Promise((resolve) => setTimeout(resolve, ms)),
]).then(() => document.fonts.size)"""


Box = tuple[int, int, int, int]


def _clip_region(clip: Box | None, width: int, height: int) -> dict[str, float] | None:
    """Playwright's clip for (x0, y0, x1, y1) kept inside the page; None for the whole page."""
    if clip is None:
        return None
    x0, y0 = max(0, min(width - 1, clip[0])), max(0, min(height - 1, clip[1]))
    x1, y1 = max(x0 + 1, min(width, clip[2])), max(y0 + 1, min(height, clip[3]))
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}


class RenderError(RuntimeError):
    pass


class NavigationRefused(RenderError):
    pass


LAUNCH_TIMEOUT_MS = 90_000


class TextRenderer:
    """Owns a Playwright driver, one browser and one locked-down page; restarts them on failure."""

    def __init__(
        self, chromium_path: str, fonts_dir: Path, timeout_s: float = 15.0, system_fonts: bool = True,
        hooks: WorkerHooks | None = None,
    ) -> None:
        self.chromium_path = chromium_path
        self.fonts_dir = fonts_dir
        self.system_fonts = system_fonts
        self.hooks = hooks or WorkerHooks()
        self.timeout_ms = int(timeout_s * 1000)
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self._page: Any = None
        self._viewport: tuple[int, int] | None = None
        self.launches = 0
        self.blocked_requests = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self._browser is not None and self._browser.is_connected():
            return
        from playwright.sync_api import sync_playwright

        if self._pw is None:
            self._pw = sync_playwright().start()
        env = dict(os.environ, FONTCONFIG_FILE=str(fontconfig_file(self.fonts_dir, self.system_fonts)))
        # A launch is ~0.5 s when quiet but has taken over 30 s on a loaded 2-core machine; a render's own
        # timeout is no measure of it.
        self._browser = self._pw.chromium.launch(
            executable_path=self.chromium_path, args=CHROMIUM_FLAGS, env=env,
            timeout=max(self.timeout_ms * 2, LAUNCH_TIMEOUT_MS),
        )
        # Chromium runs in a session of its own: put that session behind the server too (pipeline/priority.py).
        yield_child_sessions()
        self.launches += 1
        self._context = None
        self._page = None

    def _ensure_page(self, width: int, height: int) -> Any:
        self.start()
        if self._page is not None and (self._page.is_closed() or self._page.url != "about:blank"):
            self._drop_page()  # a late navigation from the previous HTML: start clean
        if self._page is not None:
            if self._viewport != (width, height):
                # Resizing the page costs a few ms; a new context per size cost ~0.8 s (a placements job
                # renders four sizes, twice each).
                self._page.set_viewport_size({"width": width, "height": height})
                self._viewport = (width, height)
            return self._page
        self._close_quietly(self._context)
        self._context = self._browser.new_context(
            java_script_enabled=False,
            viewport={"width": width, "height": height},
            device_scale_factor=1,
            offline=False,
            service_workers="block",
            accept_downloads=False,
        )
        self._context.set_default_timeout(self.timeout_ms)
        self._context.route("**/*", self._gate)
        self._page = self._context.new_page()
        self._viewport = (width, height)
        return self._page

    def _gate(self, route: Any, request: Any) -> None:
        if request.url.startswith("data:"):
            route.continue_()
        else:
            self.blocked_requests += 1
            route.abort("blockedbyclient")

    @staticmethod
    def _close_quietly(obj: Any) -> None:
        """Close a Playwright object that may already be dead (a crashed browser raises on close)."""
        try:
            if obj is not None:
                obj.close()
        except Exception:
            pass

    def close(self) -> None:
        for obj in (self._context, self._browser):
            self._close_quietly(obj)
        try:
            if self._pw is not None:
                self._pw.stop()
        except Exception:
            pass
        self._pw = self._browser = self._context = self._page = None

    @staticmethod
    def _kill_chromium_processes() -> None:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                if "chrom" in child.name().lower():
                    child.kill()
            except psutil.Error:
                pass
        time.sleep(0.2)

    def _drop_page(self) -> None:
        self._close_quietly(self._page)
        self._page = None

    def kill_browser(self) -> None:
        """Drop the browser (used after a failure or hang): the next render relaunches it."""
        self._close_quietly(self._browser)
        self._browser = self._context = self._page = None

    # -- rendering ---------------------------------------------------------------------
    def render(self, html: str, width: int, height: int, clip: Box | None = None) -> Image.Image:
        """HTML -> RGBA image of exactly width x height with a transparent background. With ``clip`` (x0, y0,
        x1, y1) only that part of the page is captured (the rest left transparent): a second look at a page
        whose ink is known to lie there costs the capture of that part only."""
        last: Exception | None = None
        for attempt in range(2):  # one retry on a fresh browser if Chromium died or hung
            started = time.monotonic()
            try:
                page = self._ensure_page(width, height)
                page.set_content(html, wait_until="load", timeout=self.timeout_ms)
                # Web fonts load lazily, after "load": fetch every declared face (ours are data: URLs;
                # anything else is aborted by the route) and wait, boundedly, before the screenshot.
                try:
                    page.evaluate(_FONTS_READY, FONT_WAIT_MS)
                except Exception as exc:
                    log.warning("font wait skipped: %s", exc)
                self.hooks.mid_render(self._kill_chromium_processes)
                region = _clip_region(clip, width, height)
                png = page.screenshot(
                    type="png", omit_background=True, full_page=False, timeout=self.timeout_ms, animations="disabled",
                    clip=region,
                )
                if page.url != "about:blank":  # e.g. <meta http-equiv=refresh>: never keep a shot of elsewhere
                    self._drop_page()
                    raise NavigationRefused("the HTML tried to navigate away from the text layer")
                img = Image.open(io.BytesIO(png)).convert("RGBA")
                if region is not None:
                    part, img = img, Image.new("RGBA", (width, height), (0, 0, 0, 0))
                    x, y, w, h = (int(region[k]) for k in ("x", "y", "width", "height"))
                    img.paste(part if part.size == (w, h) else part.resize((w, h)), (x, y))
                elif img.size != (width, height):
                    img = img.resize((width, height))
                return img
            except NavigationRefused:
                raise
            except Exception as exc:
                last = exc
                log.warning("render attempt %d failed after %.1fs: %s", attempt + 1, time.monotonic() - started, exc)
                self.kill_browser()
        raise RenderError(f"text layer could not be rendered: {type(last).__name__}: {str(last)[:200]}")
