"""Delivery: the finished ad written to the output folder under a name a person can find.

``2026-11-25_summer-sale-50_1a2b3c4d.png``: date, a slug of the copy, the job id's start.
The job folder keeps its own ``final.png``; this is the copy meant for people (and for
clients that cannot read MCP resources, such as Claude Desktop).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import unicodedata
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.worker.provenance import save_kwargs

_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_SLUG_CHARS = 40


def slug(text: str | None) -> str:
    """Letters and digits of any script kept, everything else a single dash (e.g. '여름-세일-50')."""
    if not text:
        return "ad"
    norm = unicodedata.normalize("NFKC", text).lower()
    kept = "".join(ch if unicodedata.category(ch)[0] in "LN" else "-" for ch in norm)
    return re.sub(r"-+", "-", kept).strip("-")[:_SLUG_CHARS].strip("-") or "ad"


def output_name(job_id: str, copy: str | None, fmt: str, when: float | None = None) -> str:
    day = time.strftime("%Y-%m-%d", time.localtime(when))
    return f"{day}_{slug(copy)}_{job_id[:8]}.{_EXT[fmt]}"


def result_name(job_id: str, copy: str | None, unit: str, fmt: str, when: float | None = None) -> str:
    """One result of a placements/variants job: ``2026-11-25_summer-sale_story-v2_1a2b3c4d.png``."""
    day = time.strftime("%Y-%m-%d", time.localtime(when))
    return f"{day}_{slug(copy)}_{unit}_{job_id[:8]}.{_EXT[fmt]}"


def deliver(
    image: Image.Image, folder: Path, name: str, fmt: str, quality: int, provenance: dict[str, Any] | None = None,
    encoded: Path | None = None,
) -> Path:
    """Write atomically (a reader never sees half a file), with ``provenance`` embedded; returns the absolute path.

    ``encoded``: the same image already written as a PNG with the same provenance (the job's final.png);
    a PNG delivery copies its bytes instead of encoding the image again."""
    folder = folder.expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / name).resolve()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if fmt == "png" and encoded is not None and encoded.is_file():
        shutil.copyfile(encoded, tmp)
        os.replace(tmp, path)
        return path
    rgb = image.convert("RGB")
    meta = save_kwargs(fmt, provenance)  # PNG iTXt + XMP; JPEG/WebP XMP + EXIF
    if fmt == "jpeg":
        rgb.save(tmp, format="JPEG", quality=quality, optimize=True, progressive=True, **meta)
    elif fmt == "webp":
        rgb.save(tmp, format="WEBP", quality=quality, method=4, **meta)
    else:
        rgb.save(tmp, format="PNG", optimize=False, compress_level=6, **meta)
    os.replace(tmp, path)
    return path
