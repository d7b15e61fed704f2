"""Background (draft): a procedural studio scene whose colours and light come from the prompt.

A back wall, a floor plane meeting it at a horizon, a key light, a vignette and a surface
texture picked from the prompt's words. Deterministic for a given prompt, size and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Keyword -> (wall colour, floor colour, texture). Later matches refine earlier ones.
_SURFACES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], str]] = {
    "wood": ((214, 190, 160), (139, 94, 60), "wood"),
    "table": ((220, 205, 185), (150, 108, 72), "wood"),
    "cafe": ((196, 160, 124), (120, 82, 54), "wood"),
    "marble": ((236, 234, 230), (222, 220, 216), "marble"),
    "stone": ((190, 188, 182), (150, 148, 142), "grain"),
    "concrete": ((184, 184, 180), (150, 150, 146), "grain"),
    "beach": ((168, 214, 240), (230, 208, 164), "grain"),
    "sand": ((236, 214, 176), (218, 190, 140), "grain"),
    "forest": ((122, 160, 110), (86, 110, 64), "grain"),
    "grass": ((170, 210, 150), (90, 140, 60), "grain"),
    "snow": ((226, 234, 244), (246, 248, 252), "grain"),
    "night": ((30, 36, 64), (20, 22, 36), "plain"),
    "neon": ((40, 20, 70), (24, 14, 40), "plain"),
    "studio": ((232, 232, 234), (214, 214, 218), "plain"),
    "kitchen": ((236, 228, 214), (200, 184, 160), "marble"),
    "luxury": ((40, 36, 34), (24, 22, 20), "marble"),
    "pastel": ((248, 222, 228), (236, 214, 236), "plain"),
}
_COLOUR_WORDS: dict[str, tuple[int, int, int]] = {
    "red": (200, 60, 60), "orange": (240, 150, 70), "yellow": (240, 214, 100), "gold": (212, 175, 90),
    "green": (90, 160, 100), "mint": (170, 226, 200), "blue": (80, 130, 210), "navy": (30, 44, 90),
    "purple": (130, 90, 180), "pink": (240, 170, 196), "white": (244, 244, 244), "black": (24, 24, 26),
    "gray": (150, 150, 154), "grey": (150, 150, 154), "beige": (226, 210, 184), "brown": (130, 90, 60),
    "빨간": (200, 60, 60), "파란": (80, 130, 210), "초록": (90, 160, 100), "노란": (240, 214, 100),
    "분홍": (240, 170, 196), "검은": (24, 24, 26), "하얀": (244, 244, 244), "나무": (139, 94, 60),
}
_WARM_WORDS = ("sun", "sunlight", "warm", "cozy", "sunset", "golden", "candle", "햇살", "따뜻")
_COOL_WORDS = ("cool", "cold", "morning", "winter", "ice", "fresh", "시원", "차가")
_DARK_WORDS = ("night", "dark", "moody", "luxury", "dramatic", "밤", "어두")


@dataclass(frozen=True)
class ScenePlan:
    wall: np.ndarray
    floor: np.ndarray
    texture: str
    warmth: float  # -1 cool .. +1 warm
    darkness: float  # 0 bright .. 1 dark
    horizon: float  # fraction of height where the floor meets the wall
    light_x: float  # key light position, fraction of width


def plan_scene(prompt: str, seed: int) -> ScenePlan:
    words = prompt.lower()
    wall = np.array((226, 222, 216), np.float32)
    floor = np.array((196, 190, 182), np.float32)
    texture = "plain"
    for key, (w, f, t) in _SURFACES.items():
        if key in words:
            wall, floor, texture = np.array(w, np.float32), np.array(f, np.float32), t
    tints = [np.array(c, np.float32) for k, c in _COLOUR_WORDS.items() if k in words]
    if tints:
        tint = np.mean(tints, axis=0)
        wall = wall * 0.45 + tint * 0.55
    warmth = 0.5 * any(w in words for w in _WARM_WORDS) - 0.5 * any(w in words for w in _COOL_WORDS)
    darkness = 0.6 if any(w in words for w in _DARK_WORDS) else 0.0
    rng = np.random.default_rng(seed)
    return ScenePlan(
        wall=wall, floor=floor, texture=texture, warmth=warmth, darkness=darkness,
        horizon=float(rng.uniform(0.56, 0.64)), light_x=float(rng.uniform(0.3, 0.7)),
    )


def _texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Luminance modulation around 1.0 for the floor."""
    if kind == "wood":
        # A table top in perspective: boards run away from the viewer, so their seams converge
        # towards the horizon and the grain compresses with depth (faded there to avoid moire).
        r = (np.arange(h, dtype=np.float32)[:, None] + 1.0) / h  # 0 at the horizon .. 1 nearest
        x = np.arange(w, dtype=np.float32)[None, :] / w - 0.5
        depth = 1.0 / (r + 0.15)
        across = x * depth * 1.15 * float(rng.integers(3, 5)) + 0.5  # board coordinate
        board, frac = np.floor(across), across % 1.0
        tone = np.sin(board * 12.9898 + rng.uniform(0, 6.28)) * 0.035  # each board a shade apart
        seam = (np.abs(frac - 0.5) > 0.485) * -0.12 * r
        grain = np.sin(depth * 9.0 + np.sin(across * 4.3 + board) * 1.4) * 0.035 * r**2
        noise = rng.normal(0, 0.012, (h, w)).astype(np.float32)
        return (1.0 + tone + seam + grain + noise).astype(np.float32)
    if kind == "marble":
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        veins = np.abs(np.sin((x * 0.012 + y * 0.02 + np.sin(y * 0.01) * 3) + rng.uniform(0, 6.28)))
        return 1.0 - (veins < 0.08) * 0.08 + rng.normal(0, 0.01, (h, w)).astype(np.float32)
    if kind == "grain":
        return 1.0 + rng.normal(0, 0.035, (h, w)).astype(np.float32)
    return 1.0 + rng.normal(0, 0.006, (h, w)).astype(np.float32)


def render_scene(plan: ScenePlan, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    hz = int(height * plan.horizon)
    out = np.empty((height, width, 3), np.float32)

    # Wall: darker towards the top, lit around the key light.
    t = np.linspace(0, 1, hz, dtype=np.float32)[:, None, None]
    out[:hz] = plan.wall * (0.78 + 0.22 * t)
    # Floor: lighter near the horizon (it catches the light), darker towards the viewer.
    fh = height - hz
    ft = np.linspace(0, 1, fh, dtype=np.float32)[:, None, None]
    floor = plan.floor * (1.05 - 0.3 * ft)
    out[hz:] = floor * _texture(plan.texture, fh, width, rng)[..., None]
    # Soft line where floor meets wall.
    band = np.exp(-((np.arange(height, dtype=np.float32) - hz) / (height * 0.012)) ** 2)[:, None, None]
    out *= 1.0 - 0.12 * band

    # Key light and vignette.
    # Coordinates as a column and a row: broadcasting gives the same values as a full grid, without building one.
    yy, xx = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]
    lx, ly = plan.light_x * width, hz * 0.55
    light = np.exp(-(((xx - lx) / (width * 0.45)) ** 2 + ((yy - ly) / (height * 0.5)) ** 2))
    out *= (0.82 + 0.3 * light)[..., None]
    r = np.sqrt(((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2)
    out *= (1.0 - 0.35 * np.clip(r - 0.25, 0, 1) ** 1.2)[..., None]

    # Colour temperature and mood.
    warm = np.array([1 + 0.08 * plan.warmth, 1.0, 1 - 0.1 * plan.warmth], np.float32)
    out *= warm * (1.0 - 0.55 * plan.darkness)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def generate_draft(prompt: str, width: int, height: int, seed: int) -> tuple[Image.Image, ScenePlan]:
    plan = plan_scene(prompt, seed)
    return render_scene(plan, width, height, seed), plan
