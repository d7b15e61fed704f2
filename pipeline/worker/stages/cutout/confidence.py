"""How far to trust a cut-out mask, from what a person would look at.

One job: scoring. ``confidence_parts`` measures whether the mask boundary sits on real edges,
the region is compact, is cut by the frame or covers most of it, two independent cues agree on
it, and its colours differ from the scene right around it; ``combine`` weighs them into one
0..1 confidence (a weighted product: any one bad part pulls it down). Below
``CONFIDENCE_THRESHOLD`` the caller falls back to a deliberate layout.
"""

from __future__ import annotations

import cv2
import numpy as np

CONFIDENCE_THRESHOLD = 0.52  # calibrated on tests/data/corpus (bench/cutout.py)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max(1, (a | b).sum()))


def confidence_parts(
    lab: np.ndarray, mask: np.ndarray, cue_a: np.ndarray, cue_b: np.ndarray, border_d: np.ndarray | None = None
) -> dict[str, float]:
    h, w = mask.shape
    m = mask > 127
    area = float(m.mean())
    comps: dict[str, float] = {}
    if area < 0.002:
        return {"area": 0.0, "boundary": 0.0, "solidity": 0.0, "frame_touch": 0.0, "agreement": 0.0, "contrast": 0.0}
    # boundary: colour gradient on the mask boundary vs in a band around it
    grad = np.zeros((h, w), np.float32)
    for c in range(3):
        gx = cv2.Sobel(lab[..., c], cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(lab[..., c], cv2.CV_32F, 0, 1, ksize=3)
        grad += gx * gx + gy * gy
    grad = np.sqrt(grad)
    grad_max = cv2.dilate(grad, np.ones((3, 3), np.uint8))  # tolerate a pixel of misplacement
    m8 = m.astype(np.uint8)
    edge = (cv2.morphologyEx(m8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False
    r = max(4, round(0.03 * max(h, w)))
    box = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    ring = (cv2.dilate(m8, box) > 0) & ~(cv2.erode(m8, box) > 0) & ~edge
    if edge.any() and ring.any():
        on = float(np.median(grad_max[edge]))
        around = float(np.median(grad[ring])) + 1e-3
        comps["boundary_ratio"] = on / around
        comps["boundary"] = float(np.clip((on / around - 1.0) / 4.0, 0, 1))
    else:
        comps["boundary"] = 0.0
    # solidity: area over convex hull area
    cnts, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pts = np.concatenate(cnts)
    hull = cv2.convexHull(pts)
    comps["solidity"] = float(np.clip(m.sum() / max(cv2.contourArea(hull), 1.0), 0, 1))
    # frame touch: share of the frame perimeter the mask covers
    perim = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
    comps["frame_touch"] = float(1.0 - np.clip(perim.mean() * 4, 0, 1))
    # area: neither tiny nor almost the whole frame
    comps["area"] = float(np.clip(area / 0.03, 0, 1) * np.clip((0.85 - area) / 0.25, 0, 1))
    # agreement between the two cues' own masks and the result
    comps["agreement"] = max(iou(mask, cue_a), iou(mask, cue_b))
    comps["cue_iou"] = iou(cue_a, cue_b)
    if border_d is not None:
        # how clearly the border-colour cue marks the region as not-background, against
        # the scene right around it (look-alike background merged in lowers both)
        near = (cv2.dilate(m8, np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0) & ~m
        inside = float(np.mean(border_d[m] > 0.7))
        outside = float(np.mean(border_d[near])) if near.any() else 0.0
        comps["cue_inside"] = inside
        comps["cue_outside"] = outside
        comps["cue_contrast"] = float(np.clip(inside - outside, 0, 1))
    # contrast: colour histograms of the product vs the scene right around it
    outer = (cv2.dilate(m8, np.ones((4 * r + 1, 4 * r + 1), np.uint8)) > 0) & ~m
    q = np.clip(lab / np.array([256, 256, 256], np.float32) * 8, 0, 7).astype(np.int32)
    codes = q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]
    hf = np.bincount(codes[m], minlength=512).astype(np.float32)
    hb = np.bincount(codes[outer], minlength=512).astype(np.float32)
    if hb.sum() > 0:
        overlap = float(np.minimum(hf / hf.sum(), hb / hb.sum()).sum())
        comps["contrast"] = float(np.clip(1.0 - overlap, 0, 1))
    else:
        comps["contrast"] = 0.0
    return comps


# How much each part counts (exponents of a weighted product: any one bad part pulls the
# confidence down). Calibrated on tests/data/corpus, see bench/cutout.py.
_CONFIDENCE_WEIGHTS = {
    "contrast": 1.0,  # product colours differ from the scene right around it
    "cue_inside": 1.0,  # the border-colour cue marks the region as not-background
    "solidity": 3.0,  # one compact body, not a body plus look-alike scraps (busy scenes only)
    "frame_touch": 3.0,  # not cut by the frame
    "area": 1.0,  # neither a speck nor nearly the whole photo
    "boundary": 0.2,  # the boundary sits on real edges
    "agreement": 0.5,  # an independent cue finds about the same region
}


def combine(c: dict[str, float]) -> float:
    # On a clean backdrop (boundary edges far stronger than anything around them) a
    # sprawling shape is the product's own (cherries on stems, a trumpet): shape is no cue.
    clean = float(np.clip((c.get("boundary_ratio", 0.0) - 12.0) / 8.0, 0, 1))
    conf = 1.0
    for k, w in _CONFIDENCE_WEIGHTS.items():
        if k == "solidity":
            w *= 1.0 - clean
        conf *= max(c.get(k, 0.0), 1e-3) ** w
    return float(np.clip(conf, 0.0, 1.0))
