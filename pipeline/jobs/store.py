"""Job folders on disk: request, status record and stage images, one folder per job.

The folder is the job's durable state: after a restart, finished jobs are served from it
and jobs that were in flight are marked failed. Images are plain PNG files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.placements import PLACEMENTS
from pipeline.schemas import MAX_VARIANTS
from pipeline.units import CUSTOM, RESULT_ARTIFACT_RE

log = logging.getLogger(__name__)

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# Files a client may fetch, by the name used in URIs and URLs.
ARTIFACTS: dict[str, str] = {
    "final.png": "image/png",
    "step1.png": "image/png",
    "text.png": "image/png",
    "cutout.png": "image/png",
    "background.png": "image/png",
    "composite.png": "image/png",
    "mask.png": "image/png",
    "product.png": "image/png",
    "preview.jpg": "image/jpeg",
    "contact.jpg": "image/jpeg",  # every result of a placements/variants job, labelled
}
# Each result of a placements/variants job: result-story-v2.png is results/story-v2.png (pipeline/units.py). The
# names are listed, not matched, so nothing a client sends can name another file.
ARTIFACTS.update({f"result-{p}-v{v}.png": "image/png"
                  for p in (*PLACEMENTS, CUSTOM) for v in range(1, MAX_VARIANTS + 1)})
# The delivered ad in the output folder, by suffix (GET /jobs/<id>/download, adgen://jobs/<id>/download).
OUTPUT_TYPES: dict[str, str] = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


def result_file(name: str) -> str | None:
    """The job-folder path of a result artifact (result-story-v2.png -> results/story-v2.png), else None."""
    m = RESULT_ARTIFACT_RE.match(name)
    return f"results/{m.group(1)}-v{m.group(2)}.png" if m else None


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # Artifacts seen on disk, per job. A job's files are written once (atomically) and only go away
        # with the whole folder (remove), so a status poll need not stat them again.
        self._present: dict[str, set[str]] = {}

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID_RE.match(job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def artifact(self, job_id: str, name: str) -> Path | None:
        """Path of a finished artifact, or None; never anything outside the job folder."""
        if name not in ARTIFACTS:
            return None
        try:
            path = self.job_dir(job_id) / (result_file(name) or name)
        except KeyError:
            return None
        return path if path.is_file() else None

    def has(self, job_id: str, name: str) -> bool:
        """Whether a job has made this artifact: for status links, where a positive answer is cached.

        Readers of the bytes call ``artifact`` (it always checks the disk)."""
        seen = self._present.get(job_id)
        if seen is not None and name in seen:
            return True
        if self.artifact(job_id, name) is None:
            return False
        self._present.setdefault(job_id, set()).add(name)
        return True

    def create(self, job_id: str) -> Path:
        self._present.pop(job_id, None)
        d = self.job_dir(job_id)
        d.mkdir(parents=True, exist_ok=False)
        return d

    def write_record(self, job_id: str, record: dict[str, Any]) -> None:
        d = self.job_dir(job_id)
        tmp = d / "job.json.tmp"
        tmp.write_text(json.dumps(record, ensure_ascii=False, default=str))  # compact: the C encoder
        os.replace(tmp, d / "job.json")

    def load_all(self) -> list[dict[str, Any]]:
        records = []
        for d in self.root.iterdir():
            if not JOB_ID_RE.match(d.name):
                continue
            try:
                records.append(json.loads((d / "job.json").read_text()))
            except (OSError, ValueError):
                log.warning("skipping unreadable job folder %s", d)
        return sorted(records, key=lambda r: r.get("created_at", 0))

    def remove(self, job_id: str) -> None:
        self._present.pop(job_id, None)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def prune(self, records: list[dict[str, Any]], keep: int, max_age_s: float | None = None) -> list[str]:
        """Delete finished jobs beyond the newest ``keep`` (and older than max_age_s); return their ids."""
        finished = [r for r in records if r.get("status") in ("completed", "failed", "stopped")]
        finished.sort(key=lambda r: r.get("created_at", 0), reverse=True)
        now = time.time()
        doomed = [
            r["job_id"] for i, r in enumerate(finished)
            if i >= keep or (max_age_s is not None and now - r.get("created_at", now) > max_age_s)
        ]
        for job_id in doomed:
            self.remove(job_id)
        return doomed
