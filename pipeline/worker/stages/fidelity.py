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

import cv2
import numpy as np
from PIL import Image

from pipeline.schemas import Relight

MAX_DELTA_E = 3.0  # the rule for relight none/subtle: mean CIEDE2000 in the product's core
SUBTLE_BUDGET = 2.0  # per-pixel limit used by the draft's subtle relight and the last resort (margin under the rule)
_MIN_CORE_PX = 16
_MAX_MEASURED_PX = 1 << 20

# sRGB (D65) -> CIE XYZ, and the D65 white point.
_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                     [0.2126729, 0.7151522, 0.0721750],
                     [0.0193339, 0.1191920, 0.9503041]])
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27
_C = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_C <= 0.04045, _C / 12.92, ((_C + 0.055) / 1.055) ** 2.4).astype(np.float32)


# ---- colour ------------------------------------------------------------------------------
def _pow(x: np.ndarray, p: float) -> np.ndarray:
    """x ** p for x >= 0 in float32 (OpenCV's vectorised pow: several times numpy's on large images)."""
    x = np.ascontiguousarray(x, np.float32)
    return cv2.pow(x.reshape(-1, 1), p).reshape(x.shape)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB values (any shape ending in 3, 0..255) to CIE L*a*b* (D65), float32."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        lin = _LINEAR[rgb]  # a table: the power function is most of the cost
    else:
        c = rgb.astype(np.float32) / 255.0
        lin = np.where(c <= 0.04045, c / 12.92, _pow((c + 0.055) / 1.055, 2.4))
    xyz = np.maximum(lin @ (_RGB2XYZ / _WHITE[:, None]).T.astype(np.float32), 0)
    f = np.where(xyz > _EPS, _pow(xyz, 1 / 3), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) to sRGB 0..255, float32, clipped to the gamut."""
    lab = np.asarray(lab, np.float32)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE.astype(np.float32)
    lin = np.clip(xyz @ _XYZ2RGB.T.astype(np.float32), 0, 1)
    c = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * _pow(lin, 1 / 2.4) - 0.055)
    return np.clip(c * 255.0, 0, 255)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1), element-wise over arrays ending in L, a, b.

    Computed in the inputs' precision (float32 for images: half the memory traffic, far below 0.01 dE)."""
    dtype = np.result_type(np.asarray(lab1).dtype, np.asarray(lab2).dtype, np.float32)
    lab1, lab2 = np.asarray(lab1, dtype), np.asarray(lab2, dtype)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    chroma_zero = c1p * c2p == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    d_lp, d_cp = L2 - L1, c2p - c1p
    d_hp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    l_bar, c_bar = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum, h_far = h1p + h2p, np.abs(h1p - h2p) > 180
    h_bar = np.where(h_far, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2), h_sum / 2)
    h_bar = np.where(chroma_zero, h_sum, h_bar)
    t = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_bar, 1 + 0.015 * c_bar * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    dl, dc, dhh = d_lp / s_l, d_cp / s_c, d_hp / s_h
    return np.sqrt(np.maximum(dl**2 + dc**2 + dhh**2 + r_t * dc * dhh, 0.0))


def limit_change(ref_lab: np.ndarray, new_lab: np.ndarray, max_de: float) -> np.ndarray:
    """``new_lab`` moved back towards ``ref_lab`` wherever it differs by more than ``max_de`` (CIEDE2000).

    Each pixel keeps the direction of its change, scaled down; later passes correct the few pixels
    that the small non-linearity of CIEDE2000 left over the limit."""
    out = np.asarray(new_lab, np.float32).reshape(-1, 3).copy()
    ref = np.asarray(ref_lab, np.float32).reshape(-1, 3)
    de = ciede2000(ref, out)
    over = np.flatnonzero(de > max_de)
    for _ in range(3):  # after the first pass only the few pixels still over the limit are looked at
        if not len(over):
            break
        # Aim 0.5% under the limit: CIEDE2000 is nearly linear along a short change, so one pass mostly does.
        out[over] = ref[over] + (out[over] - ref[over]) * (0.995 * max_de / de[over])[:, None]
        de_over = ciede2000(ref[over], out[over])
        still = de_over > max_de
        over = over[still]
        de[over] = de_over[still]
    return out.reshape(np.shape(new_lab))


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
def erosion_radius(mask: np.ndarray) -> int:
    """How far inside the mask's edge the product's own pixels are trusted (2..16 px, ~2% of its size)."""
    area = float((np.asarray(mask) > 127).sum())
    return int(np.clip(round(0.02 * np.sqrt(area)), 2, 16))


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
    ys, xs = np.nonzero(np.asarray(mask) > 0)
    if not len(ys):
        return None
    h, w = mask.shape[:2]
    return (slice(max(0, ys.min() - pad), min(h, ys.max() + pad + 1)),
            slice(max(0, xs.min() - pad), min(w, xs.max() + pad + 1)))


def _rgb(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    img = image.convert("RGB")
    if img.size != size:  # a backend's output on another grid: compare on the canvas
        img = img.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img)


# ---- measure and restore ---------------------------------------------------------------------
@dataclass(frozen=True)
class Fidelity:
    delta_e_mean: float  # mean CIEDE2000 in the eroded core
    ssim: float  # mean SSIM (luma) over the same core

    def as_dict(self) -> dict[str, float]:
        return {"delta_e_mean": round(self.delta_e_mean, 3), "ssim": round(self.ssim, 4)}


def measure(reference: Image.Image, image: Image.Image, mask: np.ndarray) -> Fidelity | None:
    """How far ``image`` moved the product placed in ``reference``; None when the product has no core."""
    box = _box(mask, 8)
    if box is None:
        return None
    ref, img = _rgb(reference, reference.size)[box], _rgb(image, reference.size)[box]
    core, _ = product_core(np.asarray(mask)[box])
    if core.sum() < _MIN_CORE_PX:
        return None
    # The mean over at most ~1M evenly spread core pixels: exact for ordinary canvases, and a 4096 px
    # canvas's product measures in a second instead of ten, to far better than 0.01.
    idx = np.flatnonzero(core)[:: max(1, int(core.sum()) // _MAX_MEASURED_PX)]
    de = ciede2000(srgb_to_lab(ref.reshape(-1, 3)[idx]), srgb_to_lab(img.reshape(-1, 3)[idx]))
    ss = ssim_map(_luma(ref), _luma(img)).reshape(-1)[idx]
    return Fidelity(float(de.mean(dtype=np.float64)), float(ss.mean()))


def restore(
    refined: Image.Image, reference: Image.Image, mask: np.ndarray, relight: Relight, limit: float | None = None,
) -> Image.Image:
    """The refined image with the product's own pixels back in its core (see the module's docstring).

    ``limit`` caps the kept relighting per pixel (CIEDE2000) for the last resort of ``subtle``."""
    size = reference.size
    out = _rgb(refined, size).copy()
    r = erosion_radius(mask)
    area = float((np.asarray(mask) > 127).sum())
    sigma = max(2.0, 0.04 * np.sqrt(area))  # relighting lives at lower frequencies than the product's detail
    box = _box(mask, r + int(3 * sigma) + 2)
    if box is None:
        return Image.fromarray(out, "RGB")
    ref8, new8 = _rgb(reference, size)[box], out[box]
    m = np.asarray(mask)[box]
    core, weight = product_core(m)
    if not core.any():
        return Image.fromarray(out, "RGB")
    touched = weight > 0  # the product and its ring: the only pixels restore writes (and converts)
    if relight == "none":
        product = ref8[touched].astype(np.float32)
    else:
        change = np.zeros(core.shape + (3,), np.float32)
        change[core] = srgb_to_lab(new8[core]) - srgb_to_lab(ref8[core])
        # Normalised convolution over the core: neither the scene nor the edge ring (where a model blends
        # the product's outline into the scene) may bleed into the product's light.
        inside = core.astype(np.float32)
        change = smooth(change, sigma) / np.maximum(smooth(inside, sigma), 1e-4)[..., None]
        ref_lab = srgb_to_lab(ref8[touched])
        lit = ref_lab + change[touched]
        if limit is not None:
            lit = limit_change(ref_lab, lit, limit)
        product = lab_to_srgb(lit)
    w = weight[touched][:, None]
    blended = new8[touched] * (1 - w) + product * w
    out[box][touched] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
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
    tried: list[tuple[Image.Image, Fidelity | None, int]] = []
    for attempt_seed in (seed, seed + 1):
        image = restore(run(attempt_seed), reference, mask, relight)
        fid = measure(reference, image, mask)
        tried.append((image, fid, attempt_seed))
        if relight == "full" or fid is None or fid.delta_e_mean <= MAX_DELTA_E:
            return Refined(image, fid, attempt_seed, len(tried))
        if on_retry is not None and len(tried) == 1:
            on_retry(f"product colours moved by {fid.delta_e_mean:.1f} ΔE00: retry with seed {seed + 1}")
    # Both attempts moved the product too far: keep the closer one, its relighting limited.
    image, fid, kept_seed = min(tried, key=lambda t: t[1].delta_e_mean if t[1] else 0.0)
    limited = restore(image, reference, mask, relight, limit=SUBTLE_BUDGET)
    final = measure(reference, limited, mask)
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
