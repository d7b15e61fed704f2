"""Embed the chosen bundled fonts in the text layer as ``data:`` ``@font-face`` rules.

Each face is subset to the characters of the copy that it really draws (a few KB instead of
~1 MB), with a ``unicode-range`` of exactly those characters, so the page never needs a font
request and renders the same whatever fonts the host has installed. The range matters: the
bundled NanumSquare maps thousands of CJK ideographs to empty glyphs, and Chromium takes the
first family whose font has a character; a web font with this family name also hides the
installed file of the same name. Characters outside the range fall through to the next family
of the stack (``FontCatalog.font_stack``: a CJK, Arabic... font that draws them, from fontconfig).

Subsetting starts from a per-process copy of each face already cut down to what it draws
(``_drawable``): most of the cost of subsetting is parsing the ~18,000 glyphs and cmap entries of
a CJK face, most of them blank ideographs, and the result is byte for byte the same. ``warm``
builds those copies in a thread when the worker starts. Building one costs seconds of CPU, so each
copy is also kept on disk (``use_disk_cache``, the worker's ``ADGEN_CACHE_DIR``): a restarted worker
reads it back in milliseconds.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import fontTools
from fontTools import subset
from fontTools.ttLib import TTFont

from pipeline.fonts import embeddable_chars, face
from pipeline.worker.design.hyphenate import HYPHENS, copy_language

logging.getLogger("fontTools").setLevel(logging.WARNING)  # the subsetter narrates every table at INFO

_SUBSET_OPTIONS = subset.Options()
_SUBSET_OPTIONS.layout_features = ["*"]  # keep kerning and ligatures
_SUBSET_OPTIONS.notdef_outline = True
_SUBSET_OPTIONS.name_IDs = ["*"]


@lru_cache(maxsize=64)
def _face_info(path: str) -> tuple[str, int, str]:
    font = TTFont(path, lazy=True)
    family = font["name"].getBestFamilyName() or Path(path).stem
    weight = int(font["OS/2"].usWeightClass) if "OS/2" in font else 400
    style = "italic" if "head" in font and font["head"].macStyle & 0b10 else "normal"
    return family, weight, style


_DRAWABLE_OPTIONS = copy.copy(_SUBSET_OPTIONS)
_DRAWABLE_OPTIONS.glyph_names = True  # an intermediate: keep every name the final subset might look up
_drawable_lock = threading.Lock()  # held while a copy is built (a second or three)
_drawable_fonts: dict[str, bytes] = {}
_warming_lock = threading.Lock()  # never held for long: a job only checks and moves on
_warming: set[str] = set()  # faces whose drawable copy is built or being built
_disk_cache: Path | None = None  # where built copies are kept between worker starts (None: not kept)
# Part of every cache key: change it whenever what ``_build_drawable`` makes changes.
_DRAWABLE_FORMAT = "drawable-1"


def use_disk_cache(folder: Path | None) -> None:
    """Keep drawable copies under ``folder``/fonts (the worker calls this once at start)."""
    global _disk_cache
    _disk_cache = folder / "fonts" if folder is not None else None


def _cache_file(path: str) -> Path | None:
    """The copy's file: named for the face file's path, size and time and the fontTools that built it."""
    if _disk_cache is None:
        return None
    st = os.stat(path)
    key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{fontTools.version}|{_DRAWABLE_FORMAT}"
    return _disk_cache / f"{Path(path).stem}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.bin"


def _read_cached(file: Path) -> bytes | None:
    """The copy if the file is whole: it ends with the SHA-256 of what precedes it."""
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logging.getLogger(__name__).warning("font cache %s unreadable (%s); rebuilding it", file, exc)
        return None
    data, digest = raw[:-32], raw[-32:]
    if len(raw) <= 32 or hashlib.sha256(data).digest() != digest:
        logging.getLogger(__name__).warning("font cache %s damaged; rebuilding it", file)
        return None
    return data


def _write_cached(file: Path, data: bytes) -> None:
    """Atomically (two workers may build the same face at once); a read-only cache only costs time."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as out:
            out.write(data + hashlib.sha256(data).digest())
        os.replace(tmp, file)
    except OSError as exc:
        logging.getLogger(__name__).info("font cache not written (%s)", exc)


def _cut(font: TTFont, options: subset.Options, **chars: object) -> bytes:
    """The font's file cut down to ``chars`` (``text=`` or ``unicodes=``, as the subsetter takes them)."""
    subsetter = subset.Subsetter(options)
    subsetter.populate(**chars)
    subsetter.subset(font)
    buf = io.BytesIO()
    font.save(buf)
    return buf.getvalue()


def _build_drawable(path: str) -> bytes:
    font, reader = TTFont(path, recalcTimestamp=False), face(path)
    drawn = [cp for cp in font.getBestCmap() if reader is not None and reader.draws(chr(cp))]
    return _cut(font, _DRAWABLE_OPTIONS, unicodes=drawn)


def _drawable(path: str) -> bytes:
    """The face subset to every character it really draws (``Face.draws``): all that
    ``embeddable_chars`` can ever ask of it, so a subset of this is the subset of the file."""
    with _drawable_lock:  # one build per face, whether the warm-up thread or a job asks first
        if path not in _drawable_fonts:
            file = _cache_file(path)
            data = _read_cached(file) if file is not None else None
            if data is None:
                data = _build_drawable(path)
                if file is not None:
                    _write_cached(file, data)
            _drawable_fonts[path] = data
        return _drawable_fonts[path]


def warm(paths: Iterable[str]) -> threading.Thread:
    """Build the drawable copies of these faces in a daemon thread (the worker's start, a face's first use)."""
    def build() -> None:
        for path in paths:
            try:
                _drawable(path)
            except Exception as exc:  # only a warm-up: subsetting from the file still works
                logging.getLogger(__name__).warning("font warm-up %s: %s", path, exc)
    thread = threading.Thread(target=build, name="font-warmup", daemon=True)
    thread.start()
    return thread


def warm_default(fonts_dir: Path, family: str = "NanumSquare") -> threading.Thread:
    """``warm`` for the bundled faces of the default family (the others warm on their first use)."""
    paths = bundled_faces(fonts_dir).get(family, [])
    with _warming_lock:
        _warming.update(paths)
    return warm(paths)


def _source(path: str) -> str | io.BytesIO:
    """The drawable copy when it is ready; until then the file, and the copy starts building for next time."""
    data = _drawable_fonts.get(path)
    if data is not None:
        return io.BytesIO(data)
    with _warming_lock:
        start = path not in _warming
        _warming.add(path)
    if start:
        warm([path])
    return path


@lru_cache(maxsize=256)
def _subset(path: str, chars: str, from_file: bool = False) -> bytes:
    """``chars`` of the face (``from_file``: straight from the file, the slow way the tests compare with)."""
    # The file's own timestamp, not the time of the job: the same copy gives the same bytes.
    return _cut(TTFont(path if from_file else _source(path), recalcTimestamp=False), _SUBSET_OPTIONS, text=chars)


def bundled_faces(fonts_dir: Path) -> dict[str, list[str]]:
    """Family name -> font files shipped in ``fonts_dir``."""
    faces: dict[str, list[str]] = {}
    for path in sorted(fonts_dir.glob("*.[ot]tf")):
        family, _, _ = _face_info(str(path))
        faces.setdefault(family, []).append(str(path))
    return faces


def unicode_range(chars: str) -> str:
    """A CSS ``unicode-range`` value for the characters, consecutive code points merged."""
    cps = sorted({ord(c) for c in chars})
    parts: list[str] = []
    start = prev = None
    for cp in [*cps, None]:
        if cp is not None and prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            parts.append(f"U+{start:X}" if start == prev else f"U+{start:X}-{prev:X}")
        start = prev = cp
    return ", ".join(parts)


def font_face_css(families: list[str], text: str, fonts_dir: Path) -> str:
    """``@font-face`` rules (data: URLs, subset to what they draw of ``text``, see
    ``pipeline.fonts.embeddable_chars``) for the bundled families named. Every named bundled face
    gets a rule, even one that draws nothing of the copy but a space: its range then keeps the
    installed file's blank glyphs out of the page."""
    faces = bundled_faces(fonts_dir)
    if copy_language(text):  # a hyphen drawn at a soft hyphen (``hyphenate``) comes from the copy's own face
        text += HYPHENS
    rules = []
    for family in families:
        for path in faces.get(family, ()):
            _, weight, style = _face_info(path)
            # What it draws of the copy and its case variants (a style may uppercase it), by script.
            drawn = "".join(sorted(embeddable_chars(path, text))) or " "
            data = base64.b64encode(_subset(path, drawn)).decode()
            rules.append(
                f'@font-face {{ font-family: "{family}"; font-weight: {weight}; font-style: {style}; '
                f'src: url(data:font/ttf;base64,{data}) format("truetype"); unicode-range: {unicode_range(drawn)}; }}'
            )
    return "\n".join(rules)
