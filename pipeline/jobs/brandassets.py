"""A brand kit's files checked before they are stored: uploaded fonts and the logo.

Fonts are parsed with fontTools (every table loaded, every mapped glyph drawn, sane header
values) and stored as fontTools re-serialised them, WOFF2 decompressed to a plain TTF/OTF so
the worker can subset them like the bundled fonts. Logos are PNG or SVG; an SVG is checked
against an allowlist (no DOCTYPE or entities, no scripts or event handlers, no foreignObject
or image, every reference internal: ``#id``) and only then rasterised by CairoSVG with a URL
fetcher that refuses everything, at a size we choose. CairoSVG rather than the worker's
Chromium: the kit is checked when it is saved, in the server, which holds no browser, and a
rasterised PNG is all the worker ever sees. Every refusal is one line naming the field.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Literal
from xml.etree.ElementTree import Element

from PIL import Image

from pipeline.images import InputError, decode_base64, load_image

LOGO_MAX_SIDE = 1024  # stored logos are at most this long: a logo is ~12% of the ad's short side
LOGO_MAX_PIXELS = 4096 * 4096  # a PNG logo larger than this is refused as huge
SVG_MAX_BYTES = 1024 * 1024
SVG_MAX_ELEMENTS = 5000
SVG_MAX_USES = 64
FONT_REQUIRED = ("cmap", "head", "hhea", "hmtx", "maxp", "name")
_DATA_URL = re.compile(r"^data:[a-z0-9/+.-]*;base64,", re.IGNORECASE)
_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK = "{http://www.w3.org/1999/xlink}href"
_XHTML_NS = "http://www.w3.org/1999/xhtml"
# Static drawing only: shapes, text, paint servers, clipping, masking and simple filters.
SVG_ELEMENTS = frozenset((
    "svg g defs symbol use path rect circle ellipse line polyline polygon text tspan textPath title desc metadata "
    "style linearGradient radialGradient stop clipPath mask pattern marker filter feGaussianBlur feOffset feFlood "
    "feComposite feMerge feMergeNode feColorMatrix feBlend switch"
).split())
_URL_REF = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE | re.DOTALL)


def b64_bytes(value: str, field: str, max_bytes: int) -> bytes:
    """Base64 (with or without a data: prefix) decoded, at most ``max_bytes``."""
    return decode_base64(_DATA_URL.sub("", value.strip(), count=1), field, max_bytes)


def is_path(value: str) -> bool:
    """A logo given as a path (or file:// URI) rather than base64: base64 has no '.' or ':'."""
    v = value.strip()
    return v.lower().startswith("file://") or v.startswith(("~", "./", "../")) or bool(
        re.search(r"\.(png|svg)$", v, re.IGNORECASE))


# ---- fonts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckedFont:
    data: bytes  # plain sfnt (TTF or OTF), as fontTools wrote it
    ext: str  # "ttf" or "otf"
    family: str  # the family name inside the file (shown to people, never used in CSS)


def _font_magic(raw: bytes, field: str) -> None:
    if raw[:4] == b"wOF2":
        try:
            import brotli  # type: ignore[import-untyped]  # noqa: F401 - fontTools needs it for WOFF2
        except ImportError:
            raise InputError(f"{field}: WOFF2 needs the brotli package on the server; send a TTF or OTF") from None
    elif raw[:4] not in (b"\x00\x01\x00\x00", b"true", b"OTTO"):
        raise InputError(f"{field}: not a TTF, OTF or WOFF2 font file")


def _font_tables(font: Any, field: str) -> None:
    """The tables a font needs to be drawn, and a sane em size."""
    tables = set(font.keys())
    missing = [t for t in FONT_REQUIRED if t not in tables]
    if not ({"glyf", "loca"} <= tables or "CFF " in tables or "CFF2" in tables):
        missing.append("glyf or CFF")
    if missing:
        raise InputError(f"{field}: the font has no {', '.join(missing)} table; not a usable font")
    upem = font["head"].unitsPerEm
    if not 16 <= upem <= 16384:
        raise InputError(f"{field}: unitsPerEm {upem} is outside 16-16384; not a sane font")


def _font_draws(font: Any, field: str) -> None:
    """Every mapped outline parses and draws, and at least one has ink."""
    from fontTools.pens.boundsPen import BoundsPen

    cmap = font.getBestCmap() or {}
    if not cmap:
        raise InputError(f"{field}: the font maps no characters (empty cmap)")
    glyphs = font.getGlyphSet()
    inked = 0
    for name in set(cmap.values()):
        pen = BoundsPen(glyphs)
        glyphs[name].draw(pen)
        inked += pen.bounds is not None
    if not inked:
        raise InputError(f"{field}: the font draws no glyph (every outline is empty)")


def check_font(raw: bytes, field: str) -> CheckedFont:
    """An uploaded font, refused unless fontTools reads all of it and it can draw something."""
    from fontTools.ttLib import TTFont

    _font_magic(raw, field)
    try:
        font = TTFont(io.BytesIO(raw), lazy=False, recalcBBoxes=False, recalcTimestamp=False)
        _font_tables(font, field)
        _font_draws(font, field)
        family = font["name"].getBestFamilyName() or "uploaded font"
        ext = "otf" if ("CFF " in font or "CFF2" in font) else "ttf"
        font.flavor = None  # stored as plain sfnt: the worker subsets and embeds it like a bundled font
        buf = io.BytesIO()
        font.save(buf)
        TTFont(io.BytesIO(buf.getvalue())).getBestCmap()  # what we wrote reads back
    except InputError:
        raise
    except Exception as exc:  # fontTools raises many types for broken data
        raise InputError(f"{field}: not a readable font ({type(exc).__name__})") from None
    clean_family = re.sub(r"[^\w .-]", "", family)[:64] or "uploaded font"
    return CheckedFont(buf.getvalue(), ext, clean_family)


def font_cmap(data: bytes) -> frozenset[int]:
    """The code points an sfnt maps (its cmap)."""
    from fontTools.ttLib import TTFont

    return frozenset((TTFont(io.BytesIO(data), lazy=True).getBestCmap() or {}).keys())


# ---- logos ----------------------------------------------------------------------------------
def read_logo(raw: bytes, field: str = "logo") -> tuple[Image.Image, Literal["png", "svg"]]:
    """The logo as RGBA trimmed to its ink, at most LOGO_MAX_SIDE long, and its source type."""
    head = raw[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    source: Literal["png", "svg"]
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        img, source = load_image(raw, field, LOGO_MAX_PIXELS), "png"
    elif head.startswith(b"<") and b"<svg" in raw[:65536]:
        img, source = rasterise_svg(raw, field), "svg"
    else:
        raise InputError(f"{field}: must be a PNG or an SVG image")
    img = img.convert("RGBA")
    box = img.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if box is None:
        raise InputError(f"{field}: the image is fully transparent")
    img = img.crop(box)
    if max(img.size) > LOGO_MAX_SIDE:
        k = LOGO_MAX_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.Resampling.LANCZOS)
    return img, source


def _local(tag: Any) -> tuple[str, str]:
    """(namespace, local name) of an element tag."""
    if not isinstance(tag, str):  # comments and processing instructions
        return "", ""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _check_refs(text: str, field: str) -> None:
    for m in _URL_REF.finditer(text):
        if not m.group(2).strip().startswith("#"):
            raise InputError(f"{field}: the SVG references an external resource ({m.group(2)[:60]!r}); "
                             "only internal #id references are allowed")
    if re.search(r"@import|javascript:|expression\(", text, re.IGNORECASE):
        raise InputError(f"{field}: the SVG has @import, javascript: or expression(); not allowed")


def _parse_svg(raw: bytes, field: str) -> Element:
    from defusedxml import ElementTree as SafeET  # type: ignore[import-untyped]

    if len(raw) > SVG_MAX_BYTES:
        raise InputError(f"{field}: the SVG is larger than {SVG_MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{field}: the SVG is not UTF-8 text") from None
    if re.search(r"<!DOCTYPE|<!ENTITY", text, re.IGNORECASE):
        raise InputError(f"{field}: the SVG has a DOCTYPE or entities; not allowed")
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except Exception as exc:
        raise InputError(f"{field}: the SVG is not well-formed XML ({type(exc).__name__})") from None
    if _local(root.tag) != (_SVG_NS, "svg"):
        raise InputError(f"{field}: the root element is not an SVG <svg>")
    return root


def _check_element(el: Element, field: str) -> None:
    """One element: allowlisted, no event handlers, every reference internal."""
    ns, name = _local(el.tag)
    if ns == _SVG_NS and name not in SVG_ELEMENTS:
        raise InputError(f"{field}: SVG element <{name[:30]}> is not allowed (scripts, foreignObject, images "
                         "and animation are refused)")
    if ns == _XHTML_NS or (ns not in (_SVG_NS, "") and name.lower() in ("script", "foreignobject")):
        raise InputError(f"{field}: SVG element <{name[:30]}> is not allowed")
    for attr, value in el.attrib.items():
        _, attr_name = _local(attr)
        if attr_name.lower().startswith("on"):
            raise InputError(f"{field}: SVG event handler attribute {attr_name[:30]!r} is not allowed")
        if (attr_name == "href" or attr == _XLINK) and not value.strip().startswith("#"):
            raise InputError(f"{field}: the SVG references an external resource ({value[:60]!r}); "
                             "only internal #id references are allowed")
        _check_refs(value, field)
    if name == "style" and el.text:
        _check_refs(el.text, field)


def check_svg(raw: bytes, field: str) -> Element:
    """The SVG's root element if it is static and self-contained; raises InputError otherwise."""
    root = _parse_svg(raw, field)
    elements = list(root.iter())
    if len(elements) > SVG_MAX_ELEMENTS:
        raise InputError(f"{field}: the SVG has over {SVG_MAX_ELEMENTS} elements")
    ids = {el.get("id"): el for el in elements if el.get("id")}
    uses = 0
    for el in elements:
        if not _local(el.tag)[1]:
            continue  # a comment or processing instruction
        _check_element(el, field)
        if _local(el.tag)[1] == "use":
            uses += 1
            target = ids.get((el.get("href") or el.get(_XLINK) or "").strip()[1:])
            # A <use> of a tree holding <use>s multiplies: refused, like too many of them.
            if target is None or any(_local(t.tag)[1] == "use" for t in target.iter()):
                raise InputError(f"{field}: SVG <use> must point at an element of this file that holds no <use>")
    if uses > SVG_MAX_USES:
        raise InputError(f"{field}: the SVG has over {SVG_MAX_USES} <use> elements")
    return root


def _svg_size(root: Element, field: str) -> tuple[float, float]:
    """The SVG's aspect from its viewBox, else its width and height in plain numbers or px."""
    box = (root.get("viewBox") or "").replace(",", " ").split()
    try:
        if len(box) == 4 and float(box[2]) > 0 and float(box[3]) > 0:
            return float(box[2]), float(box[3])
        w, h = (float(re.sub(r"px$", "", (root.get(k) or "").strip())) for k in ("width", "height"))
        if w > 0 and h > 0:
            return w, h
    except ValueError:
        pass
    raise InputError(f"{field}: the SVG needs a viewBox (or width and height in px) to be sized")


def rasterise_svg(raw: bytes, field: str = "logo") -> Image.Image:
    """A checked SVG drawn by CairoSVG at LOGO_MAX_SIDE on its long side, nothing fetched."""
    root = check_svg(raw, field)
    w, h = _svg_size(root, field)
    k = LOGO_MAX_SIDE / max(w, h)
    out_w, out_h = max(1, round(w * k)), max(1, round(h * k))
    if max(w, h) / min(w, h) > 20:
        raise InputError(f"{field}: the SVG is {w:g}x{h:g}, too long and thin for a logo")

    def refuse(url: str, resource_type: str) -> bytes:  # belt and braces: check_svg already refused these
        raise InputError(f"{field}: the SVG references an external resource")

    try:
        from cairosvg.surface import PNGSurface  # type: ignore[import-untyped]

        png = PNGSurface.convert(bytestring=raw, url_fetcher=refuse, unsafe=False, output_width=out_w,
                                 output_height=out_h)
        img = Image.open(io.BytesIO(png))
        img.load()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{field}: the SVG could not be drawn ({type(exc).__name__})") from None
    return img.convert("RGBA")
