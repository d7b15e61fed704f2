"""Light and ground read from the scene's pixels (not constants), for the shadow and the relight.

``estimate_light`` looks at a luminance thumbnail of the background: the brightest pixels' centre
of mass, against the middle of the frame, says which side the key light comes from (a scene lit
from the left is brighter on the left), and how uneven the brightness is across the frame says
how directional it is. The ground line is the strongest horizontal luminance edge in the lower
part of the frame (where a floor or a table top meets the wall). The composite throws the cast
shadow away from the light with a length that grows with the directionality; the draft relight
shades the product brighter on the side facing the light.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

DEFAULT_STAND = 0.86  # where a product stands when the scene shows no ground line
_THUMB = 160  # px on the long side: light and horizon are low-frequency facts
_HORIZON_BAND = (0.45, 0.9)  # where a ground line is looked for (fraction of the height; above it the
# strongest edges are mostly scenery, and a product standing that high would float)
_HORIZON_CONTRAST = 2.5  # the edge row must stand this far above the median row edge


@dataclass(frozen=True)
class Light:
    x: float  # where the key light is across the frame: 0 left edge, 0.5 frontal/overhead, 1 right edge
    strength: float  # 0 diffuse .. 1 strongly directional
    horizon: float | None  # fraction of the height where the ground meets the wall; None = none found
    stand: float  # fraction of the height where a product should stand
    source: str = "pixels"

    @property
    def side(self) -> str:
        return "left" if self.x < 0.45 else "right" if self.x > 0.55 else "front"

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()} | {
            "side": self.side}


def _luma_thumb(image: Image.Image) -> np.ndarray:
    img = image.convert("RGB")
    scale = _THUMB / max(img.size)
    if scale < 1:
        img = img.resize((max(8, round(img.width * scale)), max(8, round(img.height * scale))),
                         Image.Resampling.BOX)
    rgb = np.asarray(img, np.float32) / 255.0
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _light_x(lum: np.ndarray) -> tuple[float, float]:
    """(light x, directionality) from the brightest pixels' centre of mass and the left/right balance."""
    h, w = lum.shape
    smooth = cv2.GaussianBlur(lum, (0, 0), max(1.0, w / 40))
    threshold = float(np.quantile(smooth, 0.85))
    weight = np.clip(smooth - threshold, 0, None)
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w
    if weight.sum() <= 1e-6:
        return 0.5, 0.0
    centroid = float((weight.sum(axis=0) * xs).sum() / weight.sum())
    columns = smooth.mean(axis=0)
    # Left/right balance: the mean luminance slope across the frame, relative to the mean brightness.
    slope = float(np.polyfit(xs - 0.5, columns, 1)[0]) / max(1e-3, float(columns.mean()))
    offset = 0.5 * (centroid - 0.5) * 1.8 + 0.5 * float(np.clip(slope, -1, 1)) * 0.45
    x = float(np.clip(0.5 + offset, 0.05, 0.95))
    strength = float(np.clip(abs(x - 0.5) * 2.0 + float(columns.std()) / max(1e-3, float(columns.mean())), 0, 1))
    return x, strength


def _horizon(lum: np.ndarray) -> float | None:
    """The row of the strongest horizontal edge in the lower part of the frame, or None when no row stands out."""
    h, _ = lum.shape
    if h < 16:
        return None
    rows = cv2.GaussianBlur(lum, (0, 0), 1.0).mean(axis=1)
    edge = np.abs(np.diff(rows))
    edge = np.convolve(edge, np.ones(3, np.float32) / 3, mode="same")
    lo, hi = int(h * _HORIZON_BAND[0]), int(h * _HORIZON_BAND[1])
    band = edge[lo:hi]
    if not len(band):
        return None
    i = int(np.argmax(band))
    if band[i] < _HORIZON_CONTRAST * max(1e-4, float(np.median(edge))) or band[i] < 0.004:
        return None
    return (lo + i + 1) / h


def estimate_light(image: Image.Image) -> Light:
    """The scene's key-light side and strength, its ground line and where a product should stand."""
    lum = _luma_thumb(image)
    x, strength = _light_x(lum)
    horizon = _horizon(lum)
    # Stand the product a little below the ground line so it reads as resting on the floor, not on the wall.
    stand = DEFAULT_STAND if horizon is None else float(np.clip(horizon + (1 - horizon) * 0.62, 0.6, 0.93))
    return Light(x, strength, horizon, stand)


def cast_geometry(light: Light | None, light_x: float = 0.5) -> tuple[float, float]:
    """(shear, squash) of the cast shadow: it falls away from the light (light on the left throws it right)
    and grows longer the more directional the light is."""
    if light is None:
        return (0.5 - light_x) * 1.6, 0.28
    return (0.5 - light.x) * 2.0, 0.2 + 0.16 * light.strength


def directional_shade(mask: np.ndarray, light_x: float, strength: float, amount: float = 6.0) -> np.ndarray:
    """An L* offset over a product's mask: brighter on the side facing the light, darker on the far side.

    Zero outside the mask and for a frontal light; at most ``amount`` L* units at the product's edges."""
    m = np.asarray(mask, np.float32)
    m = m / 255.0 if m.max() > 1.0 else m
    cols = np.flatnonzero(m.max(axis=0) > 0.5)
    if not len(cols):
        return np.zeros(m.shape, np.float32)
    left, right = float(cols.min()), float(cols.max())
    half = max(1.0, (right - left) / 2)
    across = (np.arange(m.shape[1], dtype=np.float32) - (left + right) / 2) / half  # -1 left edge .. +1 right
    toward = float(np.clip((light_x - 0.5) * 2.0, -1, 1))  # -1 light on the left .. +1 on the right
    shade = np.clip(across, -1, 1)[None, :] * toward * amount * float(np.clip(strength, 0, 1))
    return (shade * m).astype(np.float32)


def light_kwargs(refine: Callable[..., Image.Image], light: Light | None) -> dict[str, Light]:
    """``{"light": ...}`` for a backend whose ``refine`` takes the scene's light (it declares the keyword)."""
    if light is None:
        return {}
    try:
        accepts = "light" in inspect.signature(refine).parameters
    except (TypeError, ValueError):
        accepts = False
    return {"light": light} if accepts else {}
