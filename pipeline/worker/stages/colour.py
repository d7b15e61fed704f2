"""Colour maths for product fidelity: sRGB <-> CIE L*a*b* (D65), CIEDE2000, and limiting a change to it.

One job: per-pixel colour, vectorised. Images are float32 (half the memory traffic of float64, far
below 0.01 ΔE). The 3x3 colour matrices go through OpenCV's ``transform``: numpy sends an
(N, 3) @ (3, 3) product to BLAS, which on a shared 2-core machine costs 20-40x more.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# sRGB (D65) -> CIE XYZ, and the D65 white point.
_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                     [0.2126729, 0.7151522, 0.0721750],
                     [0.0193339, 0.1191920, 0.9503041]])
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27
_C = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_C <= 0.04045, _C / 12.92, ((_C + 0.055) / 1.055) ** 2.4).astype(np.float32)
# Linear RGB -> XYZ relative to the white point; f(XYZ) -> Lab (plus _LAB_OFFSET); Lab -> f(XYZ); XYZ -> RGB.
_TO_XYZN = (_RGB2XYZ / _WHITE[:, None]).astype(np.float32)
_F_TO_LAB = np.array([[0, 116, 0], [500, -500, 0], [0, 200, -200]], np.float32)
_LAB_OFFSET = np.array([-16, 0, 0], np.float32)
_LAB_TO_F = np.array([[1 / 116, 1 / 500, 0], [1 / 116, 0, 0], [1 / 116, 0, -1 / 200]], np.float32)
_F_OFFSET = np.full(3, 16 / 116, np.float32)
_XYZN_TO_RGB = (_XYZ2RGB * _WHITE[None, :]).astype(np.float32)
_RAD = math.pi / 180  # a Python float: it takes the array's precision


def _pow(x: np.ndarray, p: float) -> np.ndarray:
    """x ** p for x >= 0 in float32 (OpenCV's vectorised pow: several times numpy's on large images)."""
    x = np.ascontiguousarray(x, np.float32)
    if x.size == 0:  # OpenCV returns None for an empty array
        return x.copy()
    return cv2.pow(x.reshape(-1, 1), p).reshape(x.shape)


def _mat3(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m.T`` over the last axis (3 values per pixel), float32."""
    x = np.ascontiguousarray(x, np.float32)
    if x.size == 0:
        return np.empty(x.shape, np.float32)
    return cv2.transform(x.reshape(-1, 1, 3), m).reshape(x.shape)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB values (any shape ending in 3, 0..255) to CIE L*a*b* (D65), float32."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        lin = _LINEAR[rgb]  # a table: the power function is most of the cost
    else:
        c = rgb.astype(np.float32) / 255.0
        lin = np.where(c <= 0.04045, c / 12.92, _pow((c + 0.055) / 1.055, 2.4))
    xyz = np.maximum(_mat3(lin, _TO_XYZN), 0)
    f = np.where(xyz > _EPS, _pow(xyz, 1 / 3), (_KAPPA * xyz + 16) / 116)
    return _mat3(f, _F_TO_LAB) + _LAB_OFFSET


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) to sRGB 0..255, float32, clipped to the gamut."""
    f = _mat3(lab, _LAB_TO_F) + _F_OFFSET
    f3 = f * f * f
    xyz = np.where(f3 > _EPS, f3, (116 * f - 16) / _KAPPA)
    lin = np.clip(_mat3(xyz, _XYZN_TO_RGB), 0, 1)
    c = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * _pow(lin, 1 / 2.4) - 0.055)
    return np.clip(c * 255.0, 0, 255)


def _hue_deg(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """atan2(b, a) in degrees, 0..360."""
    h = np.arctan2(b, a) * (180 / math.pi)
    return np.where(h < 0, h + 360, h)


def _pow7(x: np.ndarray) -> np.ndarray:
    x2 = x * x
    return x2 * x2 * x2 * x


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1), element-wise over arrays ending in L, a, b.

    Computed in the inputs' precision (float32 for images: half the memory traffic, far below 0.01 dE)."""
    dtype = np.result_type(np.asarray(lab1).dtype, np.asarray(lab2).dtype, np.float32)
    lab1, lab2 = np.asarray(lab1, dtype), np.asarray(lab2, dtype)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar7 = _pow7((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2)
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = _hue_deg(b1, a1p), _hue_deg(b2, a2p)
    chroma_zero = c1p * c2p == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    d_lp, d_cp = L2 - L1, c2p - c1p
    d_hp = 2 * np.sqrt(c1p * c2p) * np.sin(dh * (_RAD / 2))
    l_bar, c_bar = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum, h_far = h1p + h2p, np.abs(h1p - h2p) > 180
    h_bar = np.where(h_far, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2), h_sum / 2)
    h_bar = np.where(chroma_zero, h_sum, h_bar)
    hr = h_bar * _RAD
    t = (1 - 0.17 * np.cos(hr - 30 * _RAD) + 0.24 * np.cos(2 * hr)
         + 0.32 * np.cos(3 * hr + 6 * _RAD) - 0.20 * np.cos(4 * hr - 63 * _RAD))
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    cb7 = _pow7(c_bar)
    r_c = 2 * np.sqrt(cb7 / (cb7 + 25.0**7))
    l50 = (l_bar - 50) ** 2
    s_l = 1 + 0.015 * l50 / np.sqrt(20 + l50)
    s_c, s_h = 1 + 0.045 * c_bar, 1 + 0.015 * c_bar * t
    r_t = -np.sin(2 * d_theta * _RAD) * r_c
    dl, dc, dhh = d_lp / s_l, d_cp / s_c, d_hp / s_h
    out = np.sqrt(np.maximum(dl**2 + dc**2 + dhh**2 + r_t * dc * dhh, 0.0))
    return out.reshape(np.shape(L1)).astype(dtype, copy=False)


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
