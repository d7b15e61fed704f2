"""Measured stage durations, kept as moving averages per backend, canvas size and stage.

They weight progress and drive the ETA. The file is shared by every server process that
uses the same data folder, so updates take an exclusive lock and replace the file whole.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path

from pipeline import registry

log = logging.getLogger(__name__)

ALPHA = 0.3  # weight of the newest measurement


class StageStats:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, float]] = self._read()

    @staticmethod
    def key(backend: str, width: int, height: int, stage: str) -> str:
        return f"{backend}:{width}x{height}:{stage}"

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text())
            return {k: v for k, v in data.items() if isinstance(v, dict) and "mean" in v}
        except (OSError, ValueError):
            return {}

    def expected(self, backend: str, width: int, height: int, stage: str) -> float:
        entry = self._data.get(self.key(backend, width, height, stage))
        if entry:
            return float(entry["mean"])
        base = registry.default_seconds(backend, stage)
        # Denoising time grows with the pixel count; the other stages' defaults are per canvas.
        scales = (registry.BACKGROUND.key, registry.REFINE.key)
        return base * (width * height) / (1024 * 1024) if stage in scales else base

    def record(self, backend: str, width: int, height: int, stage: str, seconds: float) -> None:
        key = self.key(backend, width, height, stage)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.path.with_suffix(".lock")
            with open(lock_path, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                data = self._read()  # merge what other processes wrote
                old = data.get(key)
                if old:
                    data[key] = {"mean": old["mean"] * (1 - ALPHA) + seconds * ALPHA, "count": old.get("count", 1) + 1}
                else:
                    data[key] = {"mean": seconds, "count": 1}
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                os.replace(tmp, self.path)
                self._data = data
