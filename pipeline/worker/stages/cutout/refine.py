"""Turning a rough hypothesis into the final mask: colour models, GrabCut, guided upscale.

One job: refinement. ``refine_colour_model`` iterates product/background colour histograms
with a spatial prior (GrabCut's idea without the graph); ``grabcut_band`` runs GrabCut on a
band around the chosen hypothesis; ``attach_step_edged`` adds back step-edged parts in the
backdrop's hue; ``upscale`` brings the working-size mask to the photo's resolution with a soft,
edge-aware border (never thresholded back to binary).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.worker.stages.cutout.masks import clean, fill_enclosed


def refine_colour_model(
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
        m = clean(m.astype(np.uint8) * 255, weight) > 0
    return m.astype(np.uint8) * 255



def grabcut_band(small_bgr: np.ndarray, hyp: np.ndarray, iters: int = 1) -> np.ndarray:
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


def attach_step_edged(mask: np.ndarray, hard: np.ndarray) -> np.ndarray:
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
    return fill_enclosed(joined | bridge)


def upscale(small_mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
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
