"""The product stays the product: restore its pixels after refinement and measure how far they moved.

Every backend's refinement (the draft's tone harmonisation, img2img, a one-pass scene model)
goes through ``keep_product``: the original product pixels come back inside an eroded core of
its mask, the edge ring is feathered into the refined scene, and the request's ``relight``
decides what of the backend's relighting survives in the core:

- ``none``: nothing; the core is the product as placed, bit for bit.
- ``subtle``: the backend's low-frequency change (shading, colour cast) over the original detail,
  as long as the mean CIEDE2000 in the core stays <= ``MAX_DELTA_E``; above it the refinement is
  retried once with seed + 1, then the better attempt's relighting is limited to ``SUBTLE_BUDGET``
  per pixel and the job says so.
- ``full``: the backend's low-frequency change, unbounded, over the original detail.

``measure`` gives the figure the status reports: mean CIEDE2000 (Sharma, Wu & Dalal 2005) and SSIM
(Wang et al. 2004, 11x11 Gaussian window, sigma 1.5, on luma) in the eroded core, between the
product as placed on the canvas (the composite) and the refined image.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from PIL import Image

from pipeline.schemas import Relight
from pipeline.worker.stages.colour import ciede2000, lab_to_srgb, limit_change, srgb_to_lab

__all__ = [  # the colour maths lives in stages/colour.py; re-exported for the callers of this module
    "MAX_DELTA_E", "SUBTLE_BUDGET", "Fidelity", "Refined", "ciede2000", "erosion_radius", "keep_product",
    "lab_to_srgb", "limit_change", "measure", "product_core", "relight_kwargs", "restore", "smooth",
    "srgb_to_lab", "ssim_map",
]

MAX_DELTA_E = 3.0  # the rule for relight none/subtle: mean CIEDE2000 in the product's core
SUBTLE_BUDGET = 2.0  # per-pixel limit used by the draft's subtle relight and the last resort (margin under the rule)
_MIN_CORE_PX = 16
_MAX_MEASURED_PX = 1 << 20


# ---- structure -----------------------------------------------------------------------------
def _luma(rgb: np.ndarray) -> np.ndarray:
    c = np.asarray(rgb, np.float32)
    return c[..., 0] * 0.299 + c[..., 1] * 0.587 + c[..., 2] * 0.114


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones on a reduced copy (a 60 px sigma costs seconds at full size, not here)."""
    if sigma <= 6:
        return cv2.GaussianBlur(x, (0, 0), sigma)
    f = sigma / 3.0
    h, w = x.shape[:2]
    small = cv2.resize(x, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), 3.0), (w, h), interpolation=cv2.INTER_LINEAR)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM per pixel of two single-channel images on the 0..255 scale (Wang et al. 2004 constants)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


# ---- the product's core --------------------------------------------------------------------
def _radius(area: float) -> int:
    return int(np.clip(round(0.02 * np.sqrt(area)), 2, 16))


def erosion_radius(mask: np.ndarray) -> int:
    """How far inside the mask's edge the product's own pixels are trusted (2..16 px, ~2% of its size)."""
    return _radius(float(np.count_nonzero(np.asarray(mask) > 127)))


def product_core(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eroded core (bool) and the restore weight: 1 in the core, feathered to 0 across the edge ring."""
    m = np.asarray(mask)
    r = erosion_radius(m)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    core = cv2.erode((m > 127).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if not core.any():
        return core, np.zeros(m.shape, np.float32)
    dist = cv2.distanceTransform((~core).astype(np.uint8), cv2.DIST_L2, 5)
    weight = np.clip(1.0 - dist / (r + 1), 0, 1) * (m.astype(np.float32) / 255.0)
    weight[core] = 1.0
    return core, weight.astype(np.float32)


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    on = np.asarray(mask) > 0
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    if not len(rows):
        return None
    h, w = on.shape[:2]
    return (slice(max(0, rows[0] - pad), min(h, rows[-1] + pad + 1)),
            slice(max(0, cols[0] - pad), min(w, cols[-1] + pad + 1)))


def _rgb(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    img = image.convert("RGB") if image.mode != "RGB" else image
    if img.size != size:  # a backend's output on another grid: compare on the canvas
        img = img.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img)


class Placed:
    """The product as placed on the canvas (the composite and the mask), as restore and measure see it:
    its box (grown by the relight blur's reach), eroded core, feather weights, and the reference's Lab
    and luma statistics. Built once per refine, shared by every attempt and by the measurement.

    Measuring in this box rather than a tighter one changes nothing: every core pixel's SSIM window
    (5 px) and erosion stay inside both boxes, and the core pixels are taken in the same order."""

    def __init__(self, reference: Image.Image, mask: np.ndarray) -> None:
        self.reference, self.mask, self.size = reference, np.asarray(mask), reference.size
        area = float(np.count_nonzero(self.mask > 127))
        self.sigma = max(2.0, 0.04 * np.sqrt(area))  # relighting lives at lower frequencies than the detail
        self.box = _box(self.mask, _radius(area) + int(3 * self.sigma) + 2)
        self.core: np.ndarray = np.zeros((0, 0), bool)
        self.weight: np.ndarray | None = None
        if self.box is not None:
            self.core, self.weight = product_core(self.mask[self.box])
        self.touched = self.weight > 0 if self.weight is not None else self.core  # the product and its ring

    @cached_property
    def ref8(self) -> np.ndarray:
        assert self.box is not None
        return _rgb(self.reference, self.size)[self.box]

    @cached_property
    def ref_lab(self) -> np.ndarray:
        """Lab of the reference over ``touched`` (the pixels restore writes)."""
        return srgb_to_lab(self.ref8[self.touched])

    @cached_property
    def ref_lab_core(self) -> np.ndarray:
        """Lab of the reference at the core's pixels, in row-major order."""
        return self.ref_lab[self.core[self.touched]]

    @cached_property
    def core_norm(self) -> np.ndarray:
        """The blurred core: the normalisation of the change's normalised convolution."""
        return np.maximum(smooth(self.core.astype(np.float32), self.sigma), 1e-4)[..., None]


# ---- measure and restore ---------------------------------------------------------------------
@dataclass(frozen=True)
class Fidelity:
    delta_e_mean: float  # mean CIEDE2000 in the eroded core
    ssim: float  # mean SSIM (luma) over the same core

    def as_dict(self) -> dict[str, float]:
        return {"delta_e_mean": round(self.delta_e_mean, 3), "ssim": round(self.ssim, 4)}


def measure(reference: Image.Image, image: Image.Image, mask: np.ndarray) -> Fidelity | None:
    """How far ``image`` moved the product placed in ``reference``; None when the product has no core."""
    return _measure(Placed(reference, mask), image)


def _measure(p: Placed, image: Image.Image) -> Fidelity | None:
    n = int(np.count_nonzero(p.core))
    if p.box is None or n < _MIN_CORE_PX:
        return None
    img = _rgb(image, p.size)[p.box]
    # The mean over at most ~1M evenly spread core pixels: exact for ordinary canvases, and a 4096 px
    # canvas's product measures in a second instead of ten, to far better than 0.01.
    step = max(1, n // _MAX_MEASURED_PX)
    idx = np.flatnonzero(p.core)[::step]
    de = ciede2000(p.ref_lab_core[::step], srgb_to_lab(img.reshape(-1, 3)[idx]))
    ss = ssim_map(_luma(p.ref8), _luma(img)).reshape(-1)[idx]
    return Fidelity(float(de.mean(dtype=np.float64)), float(ss.mean()))


def restore(
    refined: Image.Image, reference: Image.Image, mask: np.ndarray, relight: Relight, limit: float | None = None,
) -> Image.Image:
    """The refined image with the product's own pixels back in its core (see the module's docstring).

    ``limit`` caps the kept relighting per pixel (CIEDE2000) for the last resort of ``subtle``."""
    return _restore(Placed(reference, mask), refined, relight, limit)


def _restore(p: Placed, refined: Image.Image, relight: Relight, limit: float | None = None) -> Image.Image:
    out = _rgb(refined, p.size).copy()
    if p.box is None or p.weight is None or not p.core.any():
        return Image.fromarray(out, "RGB")
    core, touched, new8 = p.core, p.touched, out[p.box]
    if relight == "none":
        product = p.ref8[touched].astype(np.float32)
    else:
        change = np.zeros(core.shape + (3,), np.float32)
        change[core] = srgb_to_lab(new8[core]) - p.ref_lab_core
        # Normalised convolution over the core: neither the scene nor the edge ring (where a model blends
        # the product's outline into the scene) may bleed into the product's light.
        change = smooth(change, p.sigma) / p.core_norm
        lit = p.ref_lab + change[touched]
        if limit is not None:
            lit = limit_change(p.ref_lab, lit, limit)
        product = lab_to_srgb(lit)
    w = p.weight[touched][:, None]
    blended = new8[touched] * (1 - w) + product * w
    out[p.box][touched] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


@dataclass(frozen=True)
class Refined:
    image: Image.Image
    fidelity: Fidelity | None
    seed: int  # the seed of the attempt that was kept
    attempts: int
    warnings: tuple[str, ...] = ()


def keep_product(
    run: Callable[[int], Image.Image], reference: Image.Image, mask: np.ndarray, relight: Relight, seed: int,
    on_retry: Callable[[str], None] | None = None,
) -> Refined:
    """Refine (``run(seed)``), restore the product, measure; retry once with seed + 1 when the rule fails."""
    placed = Placed(reference, mask)  # box, core and the reference's Lab: once for every attempt
    tried: list[tuple[Image.Image, Fidelity | None, int]] = []
    for attempt_seed in (seed, seed + 1):
        image = _restore(placed, run(attempt_seed), relight)
        fid = _measure(placed, image)
        tried.append((image, fid, attempt_seed))
        if relight == "full" or fid is None or fid.delta_e_mean <= MAX_DELTA_E:
            return Refined(image, fid, attempt_seed, len(tried))
        if on_retry is not None and len(tried) == 1:
            on_retry(f"product colours moved by {fid.delta_e_mean:.1f} ΔE00: retry with seed {seed + 1}")
    # Both attempts moved the product too far: keep the closer one, its relighting limited.
    image, fid, kept_seed = min(tried, key=lambda t: t[1].delta_e_mean if t[1] else 0.0)
    limited = _restore(placed, image, relight, limit=SUBTLE_BUDGET)
    final = _measure(placed, limited)
    moved = " and ".join(f"{t[1].delta_e_mean:.1f}" for t in tried if t[1] is not None)
    warning = (
        f"The refinement changed the product's colours too much with relight {relight!r} (mean CIEDE2000 {moved}, "
        f"allowed {MAX_DELTA_E:g}, seeds {seed} and {seed + 1}); its relighting was reduced to keep the product's "
        f"own colours{f' (now {final.delta_e_mean:.1f})' if final else ''}. Use relight 'full' to allow more."
    )
    return Refined(limited, final, kept_seed, len(tried), (warning,))


def relight_kwargs(refine: Callable[..., Image.Image], relight: Relight) -> dict[str, Relight]:
    """``{"relight": ...}`` for a backend whose ``refine`` relights the product itself (it declares the
    keyword; see ``backends.base.Backend.refine``), else nothing: restore() enforces the rule either way."""
    try:
        accepts = "relight" in inspect.signature(refine).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        accepts = False
    return {"relight": relight} if accepts else {}
