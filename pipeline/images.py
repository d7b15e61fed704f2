"""Turning client-supplied image bytes into checked PIL images, and images into files.

Every check a hostile input could trip (bad base64, non-images, truncated files,
decompression bombs, formats we do not accept, paths outside the input folders)
raises ``InputError`` with a message meant for the caller.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import warnings
from pathlib import Path

from PIL import ExifTags, Image, ImageOps

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF"})
_DATA_URL_RE = re.compile(r"^data:image/[a-z+.-]+;base64,", re.IGNORECASE)
_STANDARD_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_URLSAFE_RE = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


class InputError(ValueError):
    """A request problem the caller can fix; its message is shown to them as-is."""


def decode_base64(data: str, field: str, max_bytes: int) -> bytes:
    text = _DATA_URL_RE.sub("", data.strip(), count=1)
    text = "".join(text.split())  # line-wrapped base64 is common
    if len(text) * 3 // 4 > max_bytes:
        raise InputError(f"{field} is larger than {max_bytes // (1024 * 1024)} MiB")
    try:
        if _URLSAFE_RE.match(text) and not _STANDARD_RE.match(text):
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{field} is not valid base64") from None
    if not raw:
        raise InputError(f"{field} is empty")
    return raw


def read_confined(path_text: str, field: str, input_dirs: list[Path], max_bytes: int) -> bytes:
    """Read a file only if it resolves (symlinks followed) inside one of ``input_dirs``."""
    if not input_dirs:
        raise InputError(f"{field}: this server accepts no file paths (no input folders configured); send base64")
    # One answer for "missing" and "outside": the error must not reveal which paths exist.
    refused = InputError(f"{field}: not a readable file inside the configured input folders")
    try:
        path = Path(path_text).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise refused from None
    roots = [d.expanduser().resolve() for d in input_dirs]
    if not any(path.is_relative_to(root) for root in roots) or not path.is_file():
        raise refused
    if path.stat().st_size > max_bytes:
        raise InputError(f"{field} is larger than {max_bytes // (1024 * 1024)} MiB")
    return path.read_bytes()


# The product photo exactly as uploaded, in the job folder. The server only checks that it decodes (a few
# ms); the worker decodes it again with the same load_image and writes product.png (the photo as received,
# for clients), so accepting a job never waits for a PNG encoder (~40 ms for a 768 px photo).
PHOTO_UPLOAD = "product.upload"


def load_image(raw: bytes, field: str, max_pixels: int, notes: list[str] | None = None) -> Image.Image:
    """Decode and fully load image bytes, refusing bombs, truncation and odd formats.

    Animations (GIF, animated WebP/PNG) give their first frame; a sentence saying so is
    appended to ``notes`` when a list is passed.
    """
    img, _ = _decoded(raw, field, max_pixels, notes, reduce=False)
    ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of every pixel when there is nothing to turn
    if img.mode not in ("RGB", "RGBA"):
        return img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    return img


def probe_image(raw: bytes, field: str, max_pixels: int, notes: list[str] | None = None) -> tuple[int, int]:
    """``load_image``'s checks and refusals, answering only the upright size: what a submission needs of a
    photo the worker decodes again. A JPEG is decoded at an eighth of its size (libjpeg still reads every
    byte of it, so truncation is refused the same), about a fifth of the full decode's time."""
    img, (w, h) = _decoded(raw, field, max_pixels, notes, reduce=True)
    return (h, w) if img.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8) else (w, h)


def _decoded(raw: bytes, field: str, max_pixels: int, notes: list[str] | None,
             reduce: bool) -> tuple[Image.Image, tuple[int, int]]:
    """The image opened, checked and loaded (a JPEG at an eighth of its size when ``reduce``), with its full size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            fmt = img.format
            if fmt not in ACCEPTED_FORMATS:
                raise InputError(f"{field}: format {fmt or 'unknown'} is not accepted; send PNG, JPEG, WebP or GIF")
            w, h = img.size
            if w * h > max_pixels:
                raise InputError(f"{field}: {w}x{h} is over the {max_pixels // 1_000_000} megapixel limit")
            if min(w, h) < 16:
                raise InputError(f"{field}: {w}x{h} is too small (16 px at least on each side)")
            animated = getattr(img, "is_animated", False)
            if animated:
                img.seek(0)
                if notes is not None:
                    notes.append(f"The {field.replace('_', ' ')} is an animation; its first frame was used.")
            if reduce and fmt == "JPEG":
                img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
            img.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{field}: over the {max_pixels // 1_000_000} megapixel limit") from None
    except Exception as exc:  # PIL raises many types for broken data
        raise InputError(f"{field} is not a readable image ({type(exc).__name__})") from None
    return img, (w, h)


def save_png(img: Image.Image, path: Path) -> Path:
    """Write atomically so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    img.save(tmp, format="PNG", compress_level=1, compress_type=3)  # zlib Z_RLE: as fast, 15-45% smaller
    os.replace(tmp, path)
    return path


def save_preview(img: Image.Image, path: Path, max_side: int = 512) -> Path:
    """A small JPEG for tool results (clients refuse results over 1 MiB)."""
    preview = img.convert("RGB")
    preview.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    tmp = path.with_suffix(".tmp")
    preview.save(tmp, format="JPEG", quality=85, optimize=True)
    os.replace(tmp, path)
    return path
