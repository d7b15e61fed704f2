"""Product cut-out without model weights: a mask, how far to trust it, and why.

`cut_out` returns the product's mask at the photo's own resolution together with a
confidence in 0..1. Below `CONFIDENCE_THRESHOLD` the caller should not paste the mask but
fall back to a deliberate layout (the whole photo, framed).

Sources, in order:
  - mode="none": the whole photo (confidence 1).
  - product_mask given: that mask (confidence 1).
  - a useful alpha channel (mode="alpha", or "auto" when it has one): the alpha; in "auto" a
    soft drop shadow baked into the alpha is detected and dropped.
  - otherwise the classical method, at ~320 px for speed: evidence from the colour distance
    to the photo's border colours (several clusters, so a busy border still has a model),
    spectral-residual and fine-grained saliency, and a centre prior seeds GrabCut; the result
    is reduced to one coherent region and given a soft, edge-aware border by a guided filter
    (never thresholded back to binary: a 1-2 px anti-aliased ring even on pixel-exact edges).
    On a plain backdrop, parts in the backdrop's own hue (a black cap on charcoal) are told
    from cast shadows by their outline: a step, not a fading penumbra.

The confidence combines what a person would look at: does the mask boundary sit on real
edges, is the region compact, is it cut by the frame or covering most of it, do two
independent cues agree on it, and do its colours differ from the scene right around it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 320
CONFIDENCE_THRESHOLD = 0.52  # calibrated on tests/data/corpus (bench/cutout.py)
_LAB_WEIGHTS = np.array([0.5, 1.0, 1.0], np.float32)  # lightness drifts with studio light fall-off


@dataclass(frozen=True)
class CutoutResult:
    mask: np.ndarray  # uint8 HxW, 255 = product, soft edges
    confidence: float  # 0..1
    method: str
    warnings: tuple[str, ...] = ()
    components: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _alpha_of(photo: Image.Image) -> np.ndarray | None:
    if photo.mode in ("RGBA", "LA") or (photo.mode == "P" and "transparency" in photo.info):
        return np.asarray(photo.convert("RGBA").getchannel("A"))
    return None


def _useful_alpha(alpha: np.ndarray | None) -> bool:
    if alpha is None:
        return False
    transparent = float((alpha < 128).mean())
    return 0.02 < transparent < 0.98


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed background pockets (a white label inside a product stays product)."""
    h, w = mask.shape
    flood = np.zeros((h + 2, w + 2), np.uint8)
    flood[1:-1, 1:-1] = mask
    canvas = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(flood, canvas, (0, 0), 255)
    return mask | cv2.bitwise_not(flood[1:-1, 1:-1])


def _main_region(mask: np.ndarray, min_ratio: float = 0.15, weight: np.ndarray | None = None) -> np.ndarray:
    """The largest connected region (by area, or by summed `weight`, e.g. a centre prior)
    plus regions that clearly belong to it (large and close)."""
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    if weight is None:
        main = int(np.argmax(areas)) + 1
    else:
        main = int(np.argmax(np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n)[1:])) + 1
    keep = [main]
    x, y, w, h = stats[main, :4]
    diag = float(np.hypot(w, h))
    main_mask = (labels == main).astype(np.uint8)
    dist = cv2.distanceTransform(1 - main_mask, cv2.DIST_L2, 3)
    for i in range(1, n):
        if i == main or stats[i, cv2.CC_STAT_AREA] < areas.max() * min_ratio:
            continue
        if float(dist[labels == i].min()) <= 0.15 * diag:
            keep.append(i)
    return np.isin(labels, keep).astype(np.uint8) * 255


def _normalise(x: np.ndarray, lo_pct: float = 2, hi_pct: float = 99.5) -> np.ndarray:
    lo, hi = np.percentile(x, [lo_pct, hi_pct])
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _border_pixels(lab: np.ndarray, band: int) -> np.ndarray:
    return np.concatenate(
        [lab[:band].reshape(-1, 3), lab[-band:].reshape(-1, 3), lab[:, :band].reshape(-1, 3),
         lab[:, -band:].reshape(-1, 3)]
    )


# --------------------------------------------------------------------------- evidence maps


def _border_colour_distance(lab: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Distance of each pixel to the nearest border colour cluster, scaled to ~0..1, the
    border's colour spread (small on a studio backdrop, large on a busy scene), and the
    product parts found in the backdrop's own hue (see `_step_edged_parts`)."""
    band = max(2, round(min(lab.shape[:2]) * 0.02))
    border = _border_pixels(lab, band) * _LAB_WEIGHTS
    k = 10
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 0.5)
    cv2.setRNGSeed(7)  # k-means++ seeding: the same photo always gives the same mask
    _, labels, centres = cv2.kmeans(border.astype(np.float32), k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k)
    centres = centres[counts >= max(3, 0.004 * len(border))]
    own = np.linalg.norm(border - centres[np.argmin(((border[:, None] - centres[None]) ** 2).sum(2), axis=1)], axis=1)
    spread = float(np.percentile(own, 90))
    flat = (lab * _LAB_WEIGHTS).reshape(-1, 3)
    centres = centres.astype(np.float32)
    d2 = (flat * flat).sum(1, keepdims=True) - 2.0 * flat @ centres.T + (centres * centres).sum(1)[None]
    nearest = d2.argmin(1)
    dist = np.sqrt(np.maximum(d2[np.arange(len(d2)), nearest], 0)).reshape(lab.shape[:2])
    scale = max(12.0, 2.5 * spread)
    out = np.clip(dist / scale, 0, 1).astype(np.float32)
    c = centres[nearest].reshape(lab.shape[:2] + (3,)) / _LAB_WEIGHTS
    # Parts in the backdrop's hue, a step lighter or darker than it (a black cap on charcoal,
    # a white cap on light grey): on a plain backdrop a small distance is foreground too.
    hard, hard_rim = _step_edged_parts(lab, c, (out > 0.5), spread)
    # Cast shadows on the backdrop: the backdrop's hue, darker, smooth. Not product.
    d_ab = np.hypot(lab[..., 1] - c[..., 1], lab[..., 2] - c[..., 2])
    d_l = lab[..., 0] - c[..., 0]
    mean = cv2.blur(lab[..., 0], (5, 5))
    std = np.sqrt(np.maximum(cv2.blur(lab[..., 0] ** 2, (5, 5)) - mean**2, 0))
    shadow = (d_ab < max(5.0, 1.5 * spread)) & (d_l < 0) & (d_l > -130) & (std < 10.0) & ~hard_rim
    out[shadow] = np.minimum(out[shadow], 0.2)
    out[hard] = 1.0
    return out, spread, hard


def _step_edged_parts(lab: np.ndarray, c: np.ndarray, fg: np.ndarray, spread: float) -> tuple[np.ndarray, np.ndarray]:
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


def _saliency(small_bgr: np.ndarray) -> np.ndarray:
    sr = cv2.saliency.StaticSaliencySpectralResidual_create()  # type: ignore[attr-defined]  # contrib, no stubs
    ok1, s1 = sr.computeSaliency(small_bgr)
    fg = cv2.saliency.StaticSaliencyFineGrained_create()  # type: ignore[attr-defined]
    ok2, s2 = fg.computeSaliency(small_bgr)
    side = max(small_bgr.shape[:2])
    s1 = cv2.GaussianBlur(s1.astype(np.float32), (0, 0), side * 0.02)
    s2 = cv2.GaussianBlur(s2.astype(np.float32), (0, 0), side * 0.015)
    return _normalise(0.5 * _normalise(s1) + 0.5 * _normalise(s2))


def _centre_prior(h: int, w: int, sigma: float = 0.32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.exp(-(((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / (2 * sigma**2))).astype(np.float32)


def _clean(mask: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = _main_region(mask, weight=weight)
    return _fill_enclosed(mask)


def _fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """Fill holes that the product's body encloses (a white label on a white backdrop), not
    gaps that only thin parts close off (between two cherry stems, inside a trumpet's loop)."""
    k = max(3, round(max(mask.shape) * 0.025)) | 1
    body = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    enclosed = fill_holes(body) & ~body
    return mask | enclosed


def _grabcut(small_bgr: np.ndarray, prob: np.ndarray, lo: float, hi: float, iters: int = 3) -> np.ndarray:
    gc = np.full(prob.shape, cv2.GC_PR_BGD, np.uint8)
    gc[prob > lo] = cv2.GC_PR_FGD
    strong = cv2.erode((prob > hi).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    gc[strong] = cv2.GC_FGD
    gc[prob < lo * 0.4] = cv2.GC_BGD
    gc[[0, -1], :] = cv2.GC_BGD
    gc[:, [0, -1]] = cv2.GC_BGD
    if not ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).any():
        return np.zeros(prob.shape, np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    with contextlib.suppress(cv2.error):  # degenerate colour models: keep the seeds
        cv2.grabCut(small_bgr, gc, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    return np.where((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)


# --------------------------------------------------------------------------- confidence


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max(1, (a | b).sum()))


def _confidence(
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
    comps["agreement"] = max(_iou(mask, cue_a), _iou(mask, cue_b))
    comps["cue_iou"] = _iou(cue_a, cue_b)
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


def _combine(c: dict[str, float]) -> float:
    # On a clean backdrop (boundary edges far stronger than anything around them) a
    # sprawling shape is the product's own (cherries on stems, a trumpet): shape is no cue.
    clean = float(np.clip((c.get("boundary_ratio", 0.0) - 12.0) / 8.0, 0, 1))
    conf = 1.0
    for k, w in _CONFIDENCE_WEIGHTS.items():
        if k == "solidity":
            w *= 1.0 - clean
        conf *= max(c.get(k, 0.0), 1e-3) ** w
    return float(np.clip(conf, 0.0, 1.0))


# --------------------------------------------------------------------------- classical


def _lab_codes(lab: np.ndarray) -> np.ndarray:
    q_l = np.clip(lab[..., 0] / 256 * 12, 0, 11).astype(np.int32)
    q_a = np.clip(lab[..., 1] / 256 * 20, 0, 19).astype(np.int32)
    q_b = np.clip(lab[..., 2] / 256 * 20, 0, 19).astype(np.int32)
    return q_l * 400 + q_a * 20 + q_b


def _refine(
    small_bgr: np.ndarray,
    codes: np.ndarray,
    prior: np.ndarray,
    init: np.ndarray,
    iters: int = 2,
    band: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Colour-model iterations (GrabCut's idea without the graph): re-learn product and
    background colour histograms from the current mask, combine with the spatial prior,
    smooth edge-aware, threshold, keep one coherent region."""
    m = init > 0
    side = max(codes.shape)
    radius = max(2, round(side / 64))
    for _ in range(iters):
        if m.sum() < 20 or (~m).sum() < 20:
            break
        hf = np.bincount(codes[m], minlength=12 * 400).astype(np.float32) + 0.5
        hb = np.bincount(codes[~m], minlength=12 * 400).astype(np.float32) + 0.5
        pf = (hf / hf.sum())[codes]
        pb = (hb / hb.sum())[codes]
        like = pf / (pf + pb)
        post = like * prior / (like * prior + (1 - like) * (1 - prior) + 1e-6)
        post = cv2.ximgproc.guidedFilter(small_bgr, post.astype(np.float32), radius, 1e-2 * 255 * 255)
        m = post > 0.5
        if band is not None:
            m &= band
        m = _clean(m.astype(np.uint8) * 255, weight) > 0
    return m.astype(np.uint8) * 255


def _otsu(x: np.ndarray, lo: float, hi: float) -> float:
    t, _ = cv2.threshold((x * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(np.clip(t / 255, lo, hi))


def _hypotheses(small_bgr: np.ndarray, lab: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    h, w = lab.shape[:2]
    border_d, spread, hard = _border_colour_distance(lab)
    sal = _saliency(small_bgr)
    centre = _centre_prior(h, w)
    codes = _lab_codes(lab)
    cues = {"border": border_d, "saliency": sal, "hard": hard.astype(np.float32)}
    r = max(3, round(max(h, w) * 0.04)) | 1
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    hyps: dict[str, np.ndarray] = {}
    # border colour: what differs from every colour seen along the frame (plain backdrops)
    init = _clean((border_d > 0.5).astype(np.uint8) * 255, centre)
    hyps["border"] = _refine(small_bgr, codes, np.clip(0.15 + 0.7 * border_d, 0.05, 0.95), init, weight=centre)
    # the border-colour core, grown only a little (busy scenes: do not spill into look-alikes)
    core = _clean((border_d > _otsu(border_d, 0.35, 0.85)).astype(np.uint8) * 255, centre)
    hyps["core"] = _refine(
        small_bgr, codes, np.clip(0.15 + 0.7 * border_d, 0.05, 0.95), core,
        band=cv2.dilate(core, grow) > 0, weight=centre,
    )
    # saliency, weighted towards the centre
    sc = _normalise(sal * (0.3 + 0.7 * centre))
    core = _clean((sc > _otsu(sc, 0.2, 0.8)).astype(np.uint8) * 255, centre)
    prior = np.clip(0.15 + 0.35 * sc + 0.35 * border_d, 0.05, 0.95)
    hyps["saliency"] = _refine(small_bgr, codes, prior, core, band=cv2.dilate(core, grow) > 0, weight=centre)
    return hyps, cues, spread


def _classical(
    rgb: np.ndarray, debug: dict | None = None
) -> tuple[np.ndarray, float, dict[str, float], list[str], str]:
    h, w = rgb.shape[:2]
    scale = WORK_SIDE / max(h, w)
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    small_bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    hyps, cues, spread = _hypotheses(small_bgr, lab)
    scored = {}
    for name, m in hyps.items():
        others = [o for k, o in hyps.items() if k != name]
        comps = _confidence(lab, m, others[0], others[-1], cues["border"])
        scored[name] = (_combine(comps), comps)
    if debug is not None:
        debug.update(hyps=hyps, scored=scored, small=small)
    best = max(scored, key=lambda k: scored[k][0])
    hyp = hyps[best]
    refined = _clean(_grabcut_band(small_bgr, hyp), _centre_prior(sh, sw))
    refined = _attach_step_edged(refined, cues["hard"] > 0)
    if debug is not None:
        debug.update(best=best, refined=refined)
    others = [o for k, o in hyps.items() if k != best]
    comps = _confidence(lab, refined, hyp, others[0], cues["border"])
    comps["grabcut_agreement"] = _iou(refined, hyp)
    conf = _combine(comps)
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


def _attach_step_edged(mask: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """Add the step-edged parts in the backdrop's hue that touch the product (a black cap on
    a charcoal backdrop): the colour models can lose them, as their colour is the tail of
    the backdrop's noise, yet their outline says they are solid."""
    if not hard.any() or not mask.any():
        return mask
    # the hue comparison is smoothed, so a part may stop a few pixels short of the product
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    n, labels = cv2.connectedComponents(hard.astype(np.uint8), connectivity=8)
    touching = np.unique(labels[(cv2.dilate(mask, k) > 0) & hard])
    touching = touching[touching > 0]
    if len(touching) == 0:
        return mask
    parts = np.isin(labels, touching).astype(np.uint8) * 255
    joined = mask | parts
    bridge = cv2.morphologyEx(joined, cv2.MORPH_CLOSE, k) & cv2.dilate(parts, k)
    return _fill_enclosed(joined | bridge)


def _grabcut_band(small_bgr: np.ndarray, hyp: np.ndarray, iters: int = 1) -> np.ndarray:
    """GrabCut on a band around a hypothesis: sure product inside, sure background outside."""
    h, w = hyp.shape
    r = max(2, round(max(h, w) * 0.03))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    inner = cv2.erode(hyp, k) > 0
    outer = cv2.dilate(hyp, k) > 0
    gc = np.full((h, w), cv2.GC_BGD, np.uint8)
    gc[outer] = cv2.GC_PR_BGD
    gc[hyp > 0] = cv2.GC_PR_FGD
    gc[inner] = cv2.GC_FGD
    if not inner.any():
        return hyp
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small_bgr, gc, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return hyp
    return np.where((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)


def _upscale(small_mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The working-size mask at the photo's resolution with a soft, edge-aware border.

    A guided filter (the photo as guide, at <= 640 px) moves the boundary onto the photo's
    own edges and takes their transition as the alpha ramp; a contrast stretch keeps that
    ramp to the rim (inside and outside stay solid), and a half-pixel blur at the photo's
    resolution keeps a 1-2 px anti-aliased ring even where the photo's edge is a
    pixel-exact step: a hard-edged cut-out looks pasted wherever it is composited."""
    h, w = rgb.shape[:2]
    s = min(1.0, 640 / max(h, w))
    gw, gh = max(1, round(w * s)), max(1, round(h * s))
    guide = cv2.cvtColor(cv2.resize(rgb, (gw, gh), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    soft = cv2.resize(small_mask, (gw, gh), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    soft = cv2.ximgproc.guidedFilter(guide, soft, max(2, round(max(gw, gh) / 160)), 1e-3 * 255 * 255)
    if (gw, gh) != (w, h):
        soft = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
    soft = np.clip((soft - 0.5) * 2.0 + 0.5, 0, 1)
    soft = cv2.GaussianBlur(soft, (0, 0), 0.5)
    soft = np.clip((soft - 0.02) / 0.96, 0, 1)  # the filter's faint tails: solid inside, clear outside
    return np.round(soft * 255).astype(np.uint8)


# --------------------------------------------------------------------------- alpha


def _alpha_mask(
    photo: Image.Image, alpha: np.ndarray, detect_shadow: bool
) -> tuple[np.ndarray, list[str], dict[str, float]]:
    if not detect_shadow:
        return alpha.copy(), [], {}
    a = alpha.astype(np.float32) / 255
    rgb = np.asarray(photo.convert("RGB")).astype(np.float32)
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    solid = (a >= 0.8).astype(np.uint8)
    if solid.sum() == 0:
        return alpha.copy(), [], {}
    h, w = alpha.shape
    band = max(2.0, 0.006 * max(h, w))  # the anti-aliased rim of a real edge
    dist = cv2.distanceTransform(1 - solid, cv2.DIST_L2, 3)
    soft = (a > 0.02) & (a < 0.8)
    wide = soft & (dist > band)
    shadowish = wide & (lum < 110)
    share = float(shadowish.sum() / max(1, solid.sum()))
    comps = {"shadow_share": share}
    if share < 0.02:
        return alpha.copy(), [], comps
    # Next to the product the shadow lies under its anti-aliased rim: estimate the shadow's
    # own (smooth) alpha there from the shadow around it and take it back out, a = p + s(1-p).
    sigma = 3.0 * band
    weight = cv2.GaussianBlur(shadowish.astype(np.float32), (0, 0), sigma)
    level = cv2.GaussianBlur(np.where(shadowish, a, 0).astype(np.float32), (0, 0), sigma)
    s_a = np.where(weight > 0.02, level / np.maximum(weight, 1e-6), 0.0)
    rim = np.clip((a - s_a) / np.maximum(1.0 - s_a, 1e-3), 0, 1)
    keep = (solid > 0) | (soft & (dist <= band))
    keep = fill_holes(keep.astype(np.uint8) * 255) > 0
    out = np.where(solid > 0, a, np.where(keep, rim, 0.0))
    out[out < 8 / 255] = 0
    mask = np.round(out * 255).astype(np.uint8)
    return mask, ["The photo's transparency held a soft drop shadow; it was removed and only the product kept."], comps


# --------------------------------------------------------------------------- public API


def cut_out(
    photo: Image.Image,
    mode: Literal["auto", "alpha", "none"] = "auto",
    product_mask: Image.Image | None = None,
) -> CutoutResult:
    w, h = photo.size
    if mode == "none":
        return CutoutResult(np.full((h, w), 255, np.uint8), 1.0, "none")
    if product_mask is not None:
        m = product_mask.convert("L")
        if m.size != (w, h):
            m = m.resize((w, h), Image.Resampling.BILINEAR)
        return CutoutResult(np.asarray(m).copy(), 1.0, "given-mask")
    alpha = _alpha_of(photo)
    warnings: list[str] = []
    if mode == "alpha":
        if alpha is not None and (alpha < 250).any():
            mask, _, comps = _alpha_mask(photo, alpha, detect_shadow=False)
            return CutoutResult(mask, 1.0, "alpha", (), comps)
        warnings.append("The photo has no transparency to cut along; the product was cut out automatically.")
    elif _useful_alpha(alpha):
        assert alpha is not None
        mask, warn, comps = _alpha_mask(photo, alpha, detect_shadow=True)
        return CutoutResult(mask, 1.0, "alpha", tuple(warn), comps)

    rgb = np.asarray(photo.convert("RGB"))
    small_mask, conf, comps, warn, method = _classical(rgb)
    warnings.extend(warn)
    if small_mask.max() == 0:
        warnings.append("No product stood out from the background; the whole photo is used.")
        return CutoutResult(np.full((h, w), 255, np.uint8), 0.0, "none", tuple(warnings), comps)
    mask = _upscale(small_mask, rgb)
    if conf < CONFIDENCE_THRESHOLD:
        warnings.insert(0, "The product could not be told apart from its background with confidence.")
    return CutoutResult(mask, round(conf, 4), method, tuple(warnings), comps)


def has_useful_alpha(photo: Image.Image) -> bool:
    """Whether the photo's own transparency outlines a product (a PNG cut-out, say)."""
    return _useful_alpha(_alpha_of(photo))


def apply_mask(photo: Image.Image, mask: np.ndarray) -> Image.Image:
    """RGBA cut-out cropped to the mask's box, at the photo's resolution, edge colours taken
    from the nearest solid product pixel (no halo of the old backdrop)."""
    rgba = photo.convert("RGBA")
    arr = np.asarray(rgba).copy()
    if mask.shape != arr.shape[:2]:
        mask = cv2.resize(mask, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_LINEAR)
    arr[..., 3] = np.minimum(arr[..., 3], mask)
    _decontaminate(arr)
    ys, xs = np.nonzero(arr[..., 3] > 8)
    if len(xs) == 0:
        return Image.fromarray(arr, "RGBA")
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Image.fromarray(arr, "RGBA").crop(box)


def _decontaminate(arr: np.ndarray) -> None:
    alpha = arr[..., 3]
    solid = alpha >= 243
    edge = (alpha > 0) & ~solid
    if not solid.any() or not edge.any():
        return
    _, labels = cv2.distanceTransformWithLabels(
        (~solid).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    sources = np.argwhere(solid)
    ys, xs = np.nonzero(edge)
    nearest = sources[labels[ys, xs] - 1]
    arr[ys, xs, :3] = arr[nearest[:, 0], nearest[:, 1], :3]
