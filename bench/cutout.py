"""Cut-out accuracy on the real-photo corpus (tests/data/corpus): IoU, confidence, fallback, time.

    .venv/bin/python -m bench.cutout        # prints the Markdown table for docs/benchmarks.md

Each case is a real photo with a ground truth that does not come from the method under test:
either a real product's own alpha channel (the product composited onto the photo) or a
polygon drawn by hand (see tests/data/README.md).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.worker.stages.cutout import CONFIDENCE_THRESHOLD, CutoutResult, cut_out  # noqa: E402

CORPUS = REPO / "tests" / "data" / "corpus"


@dataclass(frozen=True)
class Case:
    name: str
    background: str  # "plain" or "cluttered"
    photo: Path
    truth_file: Path

    def image(self) -> Image.Image:
        return Image.open(self.photo)

    def truth(self) -> np.ndarray:
        """Boolean HxW ground truth at the photo's resolution."""
        if self.truth_file.suffix == ".json":
            spec = json.loads(self.truth_file.read_text())
            m = Image.new("L", tuple(spec["size"]), 0)
            d = ImageDraw.Draw(m)
            for poly in spec["polygons"]:
                d.polygon([tuple(p) for p in poly], fill=255)
            return np.asarray(m) > 127
        return np.asarray(Image.open(self.truth_file).convert("L")) > 127


def cases() -> list[Case]:
    spec = json.loads((CORPUS / "cases.json").read_text())
    return [
        Case(name, c["background"], CORPUS / f"{name}.jpg", CORPUS / c["truth"])
        for name, c in sorted(spec.items(), key=lambda kv: (kv[1]["background"] != "plain", kv[0]))
    ]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@dataclass(frozen=True)
class Row:
    case: Case
    result: CutoutResult
    iou: float
    ms: float

    @property
    def declared(self) -> bool:
        return self.result.confidence < CONFIDENCE_THRESHOLD


def evaluate(selected: list[Case] | None = None) -> list[Row]:
    rows = []
    for case in selected or cases():
        img = case.image()
        img.load()
        t0 = time.perf_counter()
        res = cut_out(img)
        ms = (time.perf_counter() - t0) * 1000
        rows.append(Row(case, res, iou(res.mask > 127, case.truth()), ms))
    return rows


def iou_table(rows: list[Row] | None = None) -> str:
    rows = rows if rows is not None else evaluate()
    out = [
        f"Cut-out on the real-photo corpus (confidence threshold {CONFIDENCE_THRESHOLD:.2f}; "
        "a declared fallback means the caller lays the photo out deliberately instead of cutting it).",
        "",
        "| case | background | IoU | confidence | declared fallback | method | ms |",
        "| --- | --- | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        out.append(
            f"| {r.case.name} | {r.case.background} | {r.iou:.3f} | {r.result.confidence:.2f} | "
            f"{'yes' if r.declared else 'no'} | {r.result.method} | {r.ms:.0f} |"
        )
    for bg in ("plain", "cluttered"):
        sel = [r for r in rows if r.case.background == bg]
        if not sel:
            continue
        good = sum(1 for r in sel if r.iou >= 0.85 and not r.declared)
        declared = sum(1 for r in sel if r.declared)
        out.append("")
        out.append(
            f"{bg}: {len(sel)} cases, median IoU {np.median([r.iou for r in sel]):.3f}, "
            f"{good} confident with IoU >= 0.85, {declared} declared, "
            f"median {np.median([r.ms for r in sel]):.0f} ms"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(iou_table())
