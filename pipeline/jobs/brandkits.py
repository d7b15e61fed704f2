"""Brand kits on disk beside the job store: ``<data_dir>/brand_kits/<name>/``.

Each kit folder holds ``kit.json`` (a ``BrandKit``), ``logo.png`` and any uploaded fonts
(``font-headline.ttf``...). Saving writes a new folder and swaps it in with renames, so a
reader (or a crash) sees the old kit or the new one, never half of either; kits survive
restarts because nothing about them lives only in memory.

A job that names a kit gets a copy of what it needs in its own folder at intake
(``job_files``): later changes to the kit never change a job already accepted, and the worker
reads only its job folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import unicodedata
import uuid
from pathlib import Path

from pipeline.config import Settings
from pipeline.fonts import FontCatalog
from pipeline.images import InputError, save_png
from pipeline.jobs.brandassets import b64_bytes, check_font, font_cmap, is_path, read_logo
from pipeline.jobs.sources.paths import resolve_path
from pipeline.schemas import (
    MAX_FONT_BYTES,
    MAX_LOGO_BYTES,
    BrandFont,
    BrandKit,
    BrandKitInput,
    BrandLogo,
    FontUpload,
    GenerateRequest,
    check_brand_kit_name,
)

log = logging.getLogger(__name__)

KIT_FILE = "kit.json"
JOB_KIT = "brand_kit.json"  # in a job folder: the kit as the job uses it
JOB_LOGO = "brand_logo.png"
MAX_KITS = 200


class BrandKitNotFound(InputError):
    def __init__(self, name: str) -> None:
        super().__init__(f"brand_kit: no brand kit named {name[:40]!r} (list_brand_kits shows the saved ones)")


def css_family(kit: str, role: str) -> str:
    """The family name an uploaded font is embedded under: unique per kit and role, safe in CSS."""
    return f"adgen-brand-{kit}-{role}"


class BrandKitStore:
    def __init__(self, root: Path, fonts: FontCatalog, settings: Settings) -> None:
        self.root = root
        self.fonts = fonts
        self.settings = settings
        self._lock = threading.Lock()

    def _dir(self, name: str) -> Path:
        try:
            check_brand_kit_name(name)
        except ValueError:
            raise BrandKitNotFound(name) from None
        return self.root / name

    # ---- reading ---------------------------------------------------------------------------
    def get(self, name: str) -> BrandKit:
        try:
            return BrandKit.model_validate_json((self._dir(name) / KIT_FILE).read_text())
        except (OSError, ValueError):
            raise BrandKitNotFound(name) from None

    def list(self) -> list[BrandKit]:
        if not self.root.is_dir():
            return []
        kits = []
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not (d / KIT_FILE).is_file():
                continue
            try:
                kits.append(BrandKit.model_validate_json((d / KIT_FILE).read_text()))
            except (OSError, ValueError):
                log.warning("skipping unreadable brand kit %s", d.name)
        return kits

    # ---- writing ---------------------------------------------------------------------------
    def save(self, given: BrandKitInput) -> BrandKit:
        """Check every file of the kit, then store it (replacing a kit of the same name)."""
        files: dict[str, bytes] = {}
        fonts = {"headline": self._font(given.name, "headline", given.fonts.headline, files)}
        body = given.fonts.body if given.fonts.body is not None else given.fonts.headline
        if isinstance(body, FontUpload) and body == given.fonts.headline:
            fonts["body"] = fonts["headline"]  # the same upload: stored once
        else:
            fonts["body"] = self._font(given.name, "body", body, files)
        logo, logo_img = None, None
        if given.logo:
            logo_img, source = read_logo(self._logo_bytes(given.logo))
            logo = BrandLogo(width=logo_img.width, height=logo_img.height, source=source)
        kit = BrandKit(name=given.name, colors=given.colors, fonts=fonts, logo=logo, logo_corner=given.logo_corner,
                       tone=given.tone, updated_at=time.time())
        with self._lock:
            if not (self.root / given.name).exists() and len(self.list()) >= MAX_KITS:
                raise InputError(f"name: this server keeps at most {MAX_KITS} brand kits; delete one first")
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".new-{given.name}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                for fname, data in files.items():
                    (tmp / fname).write_bytes(data)
                if logo is not None and logo_img is not None:
                    save_png(logo_img, tmp / logo.file)
                (tmp / KIT_FILE).write_text(kit.model_dump_json(indent=1))
                self._swap_in(tmp, self.root / given.name)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return kit

    def _swap_in(self, new: Path, final: Path) -> None:
        old = None
        if final.exists():
            old = self.root / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
        os.rename(new, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def delete(self, name: str) -> bool:
        d = self._dir(name)
        with self._lock:
            if not (d / KIT_FILE).is_file():
                return False
            gone = self.root / f".del-{name}-{uuid.uuid4().hex[:8]}"
            os.rename(d, gone)  # one rename: the kit is gone at once, even if removing its files is slow
            shutil.rmtree(gone, ignore_errors=True)
            return True

    def _font(self, kit: str, role: str, value: str | FontUpload, files: dict[str, bytes]) -> BrandFont:
        field = f"fonts.{role}"
        if isinstance(value, FontUpload):
            checked = check_font(b64_bytes(value.data, field, MAX_FONT_BYTES), field)
            fname = f"font-{role}.{checked.ext}"
            files[fname] = checked.data
            return BrandFont(family=css_family(kit, role), source="upload", file=fname,
                             original_family=checked.family)
        try:
            family = self.fonts.check_family_list(value)
        except ValueError as exc:
            raise InputError(f"{field}: {exc}") from None
        return BrandFont(family=family, source="catalog", file=None, original_family=None)

    def _logo_bytes(self, value: str) -> bytes:
        if is_path(value):
            return resolve_path(value, "logo", self.settings.input_dirs, MAX_LOGO_BYTES)
        return b64_bytes(value, "logo", MAX_LOGO_BYTES)

    # ---- jobs ------------------------------------------------------------------------------
    def job_files(self, req: GenerateRequest) -> dict[str, bytes]:
        """What a job with ``brand_kit`` needs in its folder (kit, logo, fonts), after checking that
        the kit's uploaded fonts have every letter of the copy they set."""
        assert req.brand_kit is not None
        kit = self.get(req.brand_kit)
        d = self._dir(kit.name)
        files: dict[str, bytes] = {}
        headline = req.text_content or ""
        body = "\n".join(p for p in (req.subline, req.price, req.badge, req.cta) if p)
        fonts = {}
        for role, text in (("headline", headline), ("body", body)):
            font = kit.fonts[role]
            if font.source == "upload" and font.file:
                data = (d / font.file).read_bytes()
                _check_coverage(kit.name, role, font, data, text)
                job_name = f"brand_font_{role}.{font.file.rsplit('.', 1)[-1]}"
                files[job_name] = data
                font = font.model_copy(update={"file": job_name})
            fonts[role] = font
        logo = kit.logo
        if logo is not None:
            files[JOB_LOGO] = (d / logo.file).read_bytes()
            logo = logo.model_copy(update={"file": JOB_LOGO})
        files[JOB_KIT] = kit.model_copy(update={"fonts": fonts, "logo": logo}).model_dump_json(indent=1).encode()
        return files


def _check_coverage(kit: str, role: str, font: BrandFont, data: bytes, text: str) -> None:
    """Every letter the font sets must be in its cmap (digits and symbols may come from a fallback)."""
    cmap = font_cmap(data)
    missing = sorted({c for c in text if unicodedata.category(c).startswith("L") and ord(c) not in cmap})
    if missing:
        shown = ", ".join(f"{c} (U+{ord(c):04X})" for c in missing[:6])
        raise InputError(f"brand_kit: the {role} font of kit {kit!r} ({font.original_family}) has no glyph for "
                         f"{shown}; save the kit with a font that covers the copy's script, or use a list_fonts id")
