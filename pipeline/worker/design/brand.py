"""A job's brand kit inside the worker: read from the job folder, applied to the design.

The intake copied the kit into the job folder (``brand_kit.json``, ``brand_logo.png``,
``brand_font_<role>.ttf``), so this module reads only that. It gives the template designer the
kit's colours and fonts (``apply``), embeds uploaded fonts the way bundled ones are embedded
(``font_css``: subset ``data:`` faces with a ``unicode-range`` of what they draw, so missing
characters fall through to the next family), tells an LLM designer about the kit
(``prompt_lines``) and checks that its answer used the kit's colour and fonts (``violation``).
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from PIL import Image

from pipeline.cssvalues import parse_font_family
from pipeline.schemas import BrandKit
from pipeline.worker.design.fontembed import unicode_range
from pipeline.worker.stages.contrast import choose, hex_rgb, lettering, threshold
from pipeline.worker.stages.design import DesignSpec

KIT_FILE = "brand_kit.json"
ROLES = ("headline", "body")


@dataclass(frozen=True)
class JobBrand:
    kit: BrandKit
    job_dir: Path

    def family(self, role: str) -> str:
        return self.kit.fonts[role].family

    def font_file(self, role: str) -> Path | None:
        f = self.kit.fonts[role]
        return self.job_dir / f.file if f.source == "upload" and f.file else None

    def logo(self) -> Image.Image | None:
        if self.kit.logo is None:
            return None
        with Image.open(self.job_dir / self.kit.logo.file) as img:
            return img.convert("RGBA")


@lru_cache(maxsize=8)
def _load(job_dir: str) -> JobBrand | None:
    for d in (Path(job_dir), Path(job_dir).parent.parent):  # a placement's own folder is <job>/units/<name>
        if (d / KIT_FILE).is_file():
            return JobBrand(BrandKit.model_validate_json((d / KIT_FILE).read_text()), d)
        if Path(job_dir).parent.name != "units":
            break
    return None


def load(job_dir: Path) -> JobBrand | None:
    """The job's kit, or None (the files are written once at intake: cached per job folder)."""
    return _load(str(job_dir))


def family_list(brand: JobBrand, role: str, requested: str) -> str:
    """The kit's font first, the request's families after it as the fallback."""
    names = [brand.family(role), *(n for n in parse_font_family(requested) if n != brand.family(role))]
    return ", ".join(names[:6])


# ---- fonts ------------------------------------------------------------------------------------------
_OPTIONS = subset.Options()
_OPTIONS.layout_features = ["*"]
_OPTIONS.notdef_outline = True
_OPTIONS.name_IDs = ["*"]


@lru_cache(maxsize=32)
def _face(path: str, text: str) -> tuple[str, str] | None:
    """(base64 subset, unicode-range) of the characters of ``text`` the font maps; None if none."""
    font = TTFont(path)
    cmap = font.getBestCmap() or {}
    chars = "".join(sorted({c for c in text if ord(c) in cmap} | ({" "} if 32 in cmap else set())))
    if not chars.strip():
        return None
    sub = subset.Subsetter(_OPTIONS)
    sub.populate(text=chars)
    sub.subset(font)
    buf = io.BytesIO()
    font.save(buf)
    return base64.b64encode(buf.getvalue()).decode(), unicode_range(chars)


def font_css(brand: JobBrand | None, texts: dict[str, str]) -> str:
    """``@font-face`` rules for the kit's uploaded fonts, each subset to the text it sets (role -> text).
    One face serves every weight (no synthetic bold over a brand's own letterforms)."""
    if brand is None:
        return ""
    rules = []
    for role in ROLES:
        path = brand.font_file(role)
        face = _face(str(path), texts.get(role, "") + texts.get("all", "")) if path else None
        if face is not None:
            data, ranges = face
            rules.append(f'@font-face {{ font-family: "{brand.family(role)}"; font-weight: 1 1000; font-style: '
                         f'normal; src: url(data:font/ttf;base64,{data}) format("truetype"); '
                         f"unicode-range: {ranges}; }}")
    return "\n".join(rules)


# ---- the template designer ---------------------------------------------------------------------------
def apply(spec: DesignSpec, brand: JobBrand | None, step1: Image.Image | None,
          copy_box: tuple[int, int, int, int] | None, font_px: int, busy: bool = False) -> DesignSpec:
    """The spec with the kit's fonts and colours, and a panel when the kit's text colour alone would not
    reach its WCAG contrast over the picture under the copy (predicted from step 1's pixels there). ``busy``:
    the planner already wants a panel (busy scenery), so the choice starts with one."""
    if brand is not None:
        c = brand.kit.colors
        spec = replace(
            spec, font_family=family_list(brand, "headline", spec.font_family),
            body_font_family=family_list(brand, "body", spec.font_family),
            text_color=spec.text_color or c.text, accent_fill=(c.primary, lettering(c.primary)),
            badge_fill=(c.secondary, lettering(c.secondary)),
        )
    if spec.text_color is None or hex_rgb(spec.text_color) is None:
        return spec  # automatic or gradient colour: the planner's own panel rule and the measurement after render
    small_parts = any((spec.subline, spec.price, spec.cta))
    needed = 4.5 if small_parts else threshold(font_px, (spec.width, spec.height))
    panel_colour = brand.kit.colors.background if brand is not None else None
    treat = choose(spec.text_color, step1, copy_box, needed, panel_colour, need_panel=busy)
    return replace(spec, text_color=treat.color, panel_fill=treat.panel_css)


# ---- LLM designers -------------------------------------------------------------------------------
def prompt_lines(brand: JobBrand | None) -> list[str]:
    """The kit as structured input for an LLM designer (its answer is checked against it)."""
    if brand is None:
        return []
    k = brand.kit
    lines = [
        "[Brand kit] (required: the answer is checked for these and refused without them)",
        f"- Copy colour: {k.colors.text} (use exactly this value for the headline's color)",
        f"- Primary colour: {k.colors.primary} (call-to-action button); secondary: {k.colors.secondary} (badge)",
        f"- Panel colour if the copy needs one for contrast: {k.colors.background}",
        f"- Headline font-family: \"{brand.family('headline')}\"; body font-family: \"{brand.family('body')}\" "
        "(installed; name them in font-family)",
    ]
    if k.logo:
        lines.append(f"- Leave the {k.logo_corner} corner free (about 15% of the short side): the logo goes there.")
    if k.tone:
        lines.append(f"- Tone: {', '.join(k.tone)}")
    return lines


_HEX = re.compile(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
_RGB = re.compile(r"rgba?\(\s*(\d{1,3})[\s,]+(\d{1,3})[\s,]+(\d{1,3})")


def _colours(css: str) -> set[tuple[int, int, int]]:
    found = {rgb for m in _HEX.finditer(css) if (rgb := hex_rgb(m.group(0))) is not None}
    found |= {(int(r), int(g), int(b)) for r, g, b in _RGB.findall(css)}
    return found


def violation(brand: JobBrand | None, css: str, text_color: str | None = None) -> str | None:
    """Why an LLM's sanitised CSS (stylesheet and style attributes) ignores the kit, or None."""
    if brand is None:
        return None
    want = hex_rgb(text_color or brand.kit.colors.text)
    if want is not None and not any(max(abs(a - b) for a, b in zip(want, c, strict=True)) <= 6
                                    for c in _colours(css)):
        return f"did not use the brand kit's copy colour {text_color or brand.kit.colors.text}"
    family = brand.family("headline").lower()
    if family not in css.lower():
        return f"did not use the brand kit's headline font ({brand.family('headline')})"
    return None
