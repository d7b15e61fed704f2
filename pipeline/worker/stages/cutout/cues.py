"""The evidence the classical cut-out starts from, at working size.

One job: per-pixel cues. ``border_colour_distance`` measures how far each pixel is from the
photo's border colour clusters (several, so a busy border still has a model), tells parts in
the backdrop's own hue from cast shadows by their outline (``step_edged_parts``: a step, not a
fading penumbra); ``saliency`` (spectral residual + fine-grained) and ``centre_prior`` add
independent evidence; ``lab_codes`` and ``otsu`` quantise them for the colour models.
"""

from __future__ import annotations

import cv2
import numpy as np

LAB_WEIGHTS = np.array([0.5, 1.0, 1.0], np.float32)  # lightness drifts with studio light fall-off


def normalise(x: np.ndarray, lo_pct: float = 2, hi_pct: float = 99.5) -> np.ndarray:
    lo, hi = np.percentile(x, [lo_pct, hi_pct])
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def border_pixels(lab: np.ndarray, band: int) -> np.ndarray:
    return np.concatenate(
        [lab[:band].reshape(-1, 3), lab[-band:].reshape(-1, 3), lab[:, :band].reshape(-1, 3),
         lab[:, -band:].reshape(-1, 3)]
    )


def border_colour_distance(lab: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Distance of each pixel to the nearest border colour cluster, scaled to ~0..1, the
    border's colour spread (small on a studio backdrop, large on a busy scene), and the
    product parts found in the backdrop's own hue (see `step_edged_parts`)."""
    band = max(2, round(min(lab.shape[:2]) * 0.02))
    border = border_pixels(lab, band) * LAB_WEIGHTS
    k = 10
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 0.5)
    cv2.setRNGSeed(7)  # k-means++ seeding: the same photo always gives the same mask
    _, labels, centres = cv2.kmeans(border.astype(np.float32), k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k)
    centres = centres[counts >= max(3, 0.004 * len(border))]
    own = np.linalg.norm(border - centres[np.argmin(((border[:, None] - centres[None]) ** 2).sum(2), axis=1)], axis=1)
    spread = float(np.percentile(own, 90))
    flat = (lab * LAB_WEIGHTS).reshape(-1, 3)
    centres = centres.astype(np.float32)
    d2 = (flat * flat).sum(1, keepdims=True) - 2.0 * flat @ centres.T + (centres * centres).sum(1)[None]
    nearest = d2.argmin(1)
    dist = np.sqrt(np.maximum(d2[np.arange(len(d2)), nearest], 0)).reshape(lab.shape[:2])
    scale = max(12.0, 2.5 * spread)
    out = np.clip(dist / scale, 0, 1).astype(np.float32)
    c = centres[nearest].reshape(lab.shape[:2] + (3,)) / LAB_WEIGHTS
    # Parts in the backdrop's hue, a step lighter or darker than it (a black cap on charcoal,
    # a white cap on light grey): on a plain backdrop a small distance is foreground too.
    hard, hard_rim = step_edged_parts(lab, c, (out > 0.5), spread)
    # Cast shadows on the backdrop: the backdrop's hue, darker, smooth. Not product.
    d_ab = np.hypot(lab[..., 1] - c[..., 1], lab[..., 2] - c[..., 2])
    d_l = lab[..., 0] - c[..., 0]
    mean = cv2.blur(lab[..., 0], (5, 5))
    std = np.sqrt(np.maximum(cv2.blur(lab[..., 0] ** 2, (5, 5)) - mean**2, 0))
    shadow = (d_ab < max(5.0, 1.5 * spread)) & (d_l < 0) & (d_l > -130) & (std < 10.0) & ~hard_rim
    out[shadow] = np.minimum(out[shadow], 0.2)
    out[hard] = 1.0
    return out, spread, hard


def step_edged_parts(lab: np.ndarray, c: np.ndarray, fg: np.ndarray, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Regions in the backdrop's hue but lighter or darker than it whose outline against the
    backdrop is a step, not a penumbra: parts of the product, not cast shadows or light
    fall-off. Just inside its outline a shadow is barely darker than the backdrop (it fades
    out); a solid part is already almost as dark there as in its middle. Only on a plain
    backdrop (tight border colours): in a busy scene such a patch is more likely scene.
    Returns the regions and the regions grown by their anti-aliased outline."""
    hard, grown = np.zeros(fg.shape, bool), np.zeros(fg.shape, bool)
    if spread >= 4.0:
        return hard, grown
    # Sensor noise would fray the outlines; the hue of near-black pixels is mostly noise,
    # so it is compared smoothed more and with more tolerance than the lightness.
    d_l = cv2.GaussianBlur(lab[..., 0], (0, 0), 1.0) - c[..., 0]
    ab = cv2.GaussianBlur(lab[..., 1:], (0, 0), 2.0)
    tone = np.hypot(ab[..., 0] - c[..., 1], ab[..., 1] - c[..., 2]) < max(8.0, 2.0 * spread)
    # pixels that differ from the backdrop in hue: the rest of the product
    product = cv2.morphologyEx((fg & ~tone).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    near_product = cv2.dilate(product, np.ones((7, 7), np.uint8)) > 0
    thr = max(4.0, 1.5 * spread)
    min_area = max(20, round(fg.size * 2e-4))
    h, w = fg.shape
    for depth in (-d_l, d_l):  # darker, lighter
        sig = (tone & (depth > thr) & (depth < 130)).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(sig, connectivity=8)
        if n <= 1:
            continue
        inside = cv2.distanceTransform(sig, cv2.DIST_L2, 3)
        rim = (inside > 2.5) & (inside <= 4.0) & ~near_product  # ~3 px in from the outline
        for i in range(1, n):
            x, y, bw, bh, area = stats[i]
            if area < min_area or x == 0 or y == 0 or x + bw == w or y + bh == h:
                continue
            comp = labels == i
            edge = rim & comp
            if edge.sum() < 8:
                continue
            full = float(np.percentile(depth[comp], 90))
            if full > 2.0 * thr and float(np.median(depth[edge])) - thr >= 0.7 * (full - thr):
                grown |= comp
                hard |= comp & (depth >= 0.5 * full)  # a blurred step's outline: half its depth
    if not grown.any():
        return hard, grown
    return hard, cv2.dilate(grown.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def saliency(small_bgr: np.ndarray) -> np.ndarray:
    sr = cv2.saliency.StaticSaliencySpectralResidual_create()  # type: ignore[attr-defined]  # contrib, no stubs
    ok1, s1 = sr.computeSaliency(small_bgr)
    fg = cv2.saliency.StaticSaliencyFineGrained_create()  # type: ignore[attr-defined]
    ok2, s2 = fg.computeSaliency(small_bgr)
    side = max(small_bgr.shape[:2])
    s1 = cv2.GaussianBlur(s1.astype(np.float32), (0, 0), side * 0.02)
    s2 = cv2.GaussianBlur(s2.astype(np.float32), (0, 0), side * 0.015)
    return normalise(0.5 * normalise(s1) + 0.5 * normalise(s2))


def centre_prior(h: int, w: int, sigma: float = 0.32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.exp(-(((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / (2 * sigma**2))).astype(np.float32)


def lab_codes(lab: np.ndarray) -> np.ndarray:
    q_l = np.clip(lab[..., 0] / 256 * 12, 0, 11).astype(np.int32)
    q_a = np.clip(lab[..., 1] / 256 * 20, 0, 19).astype(np.int32)
    q_b = np.clip(lab[..., 2] / 256 * 20, 0, 19).astype(np.int32)
    return q_l * 400 + q_a * 20 + q_b


def otsu(x: np.ndarray, lo: float, hi: float) -> float:
    t, _ = cv2.threshold((x * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(np.clip(t / 255, lo, hi))
