"""A job's image artifacts written off the stages' critical path.

The cut-out, background, composite, mask and text layer are only read by people and clients,
never by a later stage, so each is handed to one background thread and the job goes on. So are
step1.png and final.png with their provenance chunks (spliced into OpenCV's PNG): what reads
them within the job (delivery, a placement's result) calls ``flush`` first.
OpenCV's PNG encoder releases the GIL (Pillow's does not), so on two cores the ~50 ms encode of
a 1024 px image overlaps the next stage's work. ``flush`` waits for a job's writes; the job's end
is reported only after it (``JobContext.report``), so a finished job has every file on disk.
Status links are made only for files already on disk (``jobs.store.JobStore.has``).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipeline.images import save_png, save_preview
from pipeline.worker.provenance import png_chunks, with_chunks, write_png

_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artifacts")  # one writer: writes keep their order
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_TO_BGR = {"RGB": cv2.COLOR_RGB2BGR, "RGBA": cv2.COLOR_RGBA2BGRA}


def _write(pixels: np.ndarray, mode: str, path: Path, chunks: bytes = b"") -> None:
    if mode in _TO_BGR:
        pixels = cv2.cvtColor(pixels, _TO_BGR[mode])
    ok, buf = cv2.imencode(".png", pixels, _PNG)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(with_chunks(buf.tobytes(), chunks) if chunks else buf.tobytes())
    os.replace(tmp, path)  # atomic: a reader never sees half a file


class ArtifactWriter:
    """One job's pending artifact writes."""

    def __init__(self) -> None:
        self._pending: list[Future[Any]] = []
        self._lock = threading.Lock()  # a placements job's stages may run on two threads (worker/unit_runner.py)

    def png(self, img: Image.Image, path: Path, provenance: dict[str, Any] | None = None) -> None:
        """Write ``img`` as a PNG at ``path`` (with ``provenance`` embedded) in the background; modes other
        than RGB, RGBA and L are written now."""
        if img.mode not in ("RGB", "RGBA", "L"):
            write_png(img, path, provenance) if provenance is not None else save_png(img, path)
            return
        pixels = np.array(img)  # a copy, taken now: the caller may go on changing its image
        chunks = png_chunks(provenance) if provenance is not None else b""  # now: the dict may change later
        self._add(_POOL.submit(_write, pixels, img.mode, path, chunks))

    def preview(self, img: Image.Image, path: Path) -> None:
        """The small JPEG tool results attach, made from ``img`` in the background."""
        self._add(_POOL.submit(save_preview, img.copy(), path))

    def _add(self, write: Future[Any]) -> None:
        with self._lock:
            self._pending.append(write)

    def flush(self) -> None:
        """Wait until every write handed over so far is on disk; a failed write raises here."""
        with self._lock:
            pending, self._pending = self._pending, []
        errors = [exc for write in pending if (exc := write.exception()) is not None]  # waits for each
        if errors:
            raise errors[0]
