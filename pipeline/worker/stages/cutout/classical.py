"""The classical cut-out without model weights, at ~320 px for speed.

One job: orchestrate the method. ``hypotheses`` builds three candidate masks from the cues
(border colour, its core grown a little, centre-weighted saliency), each refined by colour
models; ``classical`` scores them, refines the best with GrabCut on a band, scores the result
and words warnings when the confidence is low.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.worker.stages.cutout.confidence import CONFIDENCE_THRESHOLD, combine, confidence_parts, iou
from pipeline.worker.stages.cutout.cues import (
    border_colour_distance,
    centre_prior,
    lab_codes,
    normalise,
    otsu,
    saliency,
)
from pipeline.worker.stages.cutout.masks import clean
from pipeline.worker.stages.cutout.refine import attach_step_edged, grabcut_band, refine_colour_model

WORK_SIDE = 320


def hypotheses(small_bgr: np.ndarray, lab: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    h, w = lab.shape[:2]
    border_d, spread, hard = border_colour_distance(lab)
    sal = saliency(small_bgr)
    centre = centre_prior(h, w)
    codes = lab_codes(lab)
    cues = {"border": border_d, "saliency": sal, "hard": hard.astype(np.float32)}
    r = max(3, round(max(h, w) * 0.04)) | 1
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    hyps: dict[str, np.ndarray] = {}
    # border colour: what differs from every colour seen along the frame (plain backdrops)
    init = clean((border_d > 0.5).astype(np.uint8) * 255, centre)
    hyps["border"] = refine_colour_model(
        small_bgr, codes, np.clip(0.15 + 0.7 * border_d, 0.05, 0.95), init, weight=centre
    )
    # the border-colour core, grown only a little (busy scenes: do not spill into look-alikes)
    core = clean((border_d > otsu(border_d, 0.35, 0.85)).astype(np.uint8) * 255, centre)
    hyps["core"] = refine_colour_model(
        small_bgr, codes, np.clip(0.15 + 0.7 * border_d, 0.05, 0.95), core,
        band=cv2.dilate(core, grow) > 0, weight=centre,
    )
    # saliency, weighted towards the centre
    sc = normalise(sal * (0.3 + 0.7 * centre))
    core = clean((sc > otsu(sc, 0.2, 0.8)).astype(np.uint8) * 255, centre)
    prior = np.clip(0.15 + 0.35 * sc + 0.35 * border_d, 0.05, 0.95)
    hyps["saliency"] = refine_colour_model(
        small_bgr, codes, prior, core, band=cv2.dilate(core, grow) > 0, weight=centre
    )
    return hyps, cues, spread


def classical(
    rgb: np.ndarray, debug: dict | None = None
) -> tuple[np.ndarray, float, dict[str, float], list[str], str]:
    h, w = rgb.shape[:2]
    scale = WORK_SIDE / max(h, w)
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    small_bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    hyps, cues, spread = hypotheses(small_bgr, lab)
    scored = {}
    for name, m in hyps.items():
        others = [o for k, o in hyps.items() if k != name]
        comps = confidence_parts(lab, m, others[0], others[-1], cues["border"])
        scored[name] = (combine(comps), comps)
    if debug is not None:
        debug.update(hyps=hyps, scored=scored, small=small)
    best = max(scored, key=lambda k: scored[k][0])
    hyp = hyps[best]
    refined = clean(grabcut_band(small_bgr, hyp), centre_prior(sh, sw))
    refined = attach_step_edged(refined, cues["hard"] > 0)
    if debug is not None:
        debug.update(best=best, refined=refined)
    others = [o for k, o in hyps.items() if k != best]
    comps = confidence_parts(lab, refined, hyp, others[0], cues["border"])
    comps["grabcut_agreement"] = iou(refined, hyp)
    conf = combine(comps)
    comps = dict(comps, spread=spread)
    warnings = []
    if conf < CONFIDENCE_THRESHOLD:
        if comps.get("frame_touch", 1.0) < 0.8:
            warnings.append("The product seems to run off the edge of the photo.")
        if min(comps.get("contrast", 1.0), comps.get("cue_inside", 1.0)) < 0.6:
            warnings.append("The product's colours are too close to its surroundings to cut it out reliably.")
        if comps.get("solidity", 1.0) < 0.8:
            warnings.append("The cut-out is ragged: parts of the background may have been taken for the product.")
    method = "saliency+grabcut" if best == "saliency" else "border-colour+grabcut"
    return refined, conf, comps, warnings, method
