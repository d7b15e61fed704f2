"""Named ad placements: canvas sizes with each platform's safe zone for copy.

A safe zone is the share of the canvas at the top and bottom that the platform covers with its
own interface (a story's profile bar and reply field), so copy must stay out of it; the
product may still stand there. Shared core: no heavy imports, usable by server and worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

PlacementName = Literal["square", "portrait", "story", "landscape", "wide"]


@dataclass(frozen=True)
class Placement:
    name: str
    width: int
    height: int
    safe_top: float = 0.0  # of the height, kept free of copy
    safe_bottom: float = 0.0

    def safe_px(self) -> tuple[int, int]:
        """(top, bottom) in pixels kept free of copy, rounded outwards."""
        return math.ceil(self.safe_top * self.height), math.ceil(self.safe_bottom * self.height)


PLACEMENTS: dict[str, Placement] = {
    "square": Placement("square", 1080, 1080),  # feed: nothing overlaid
    "portrait": Placement("portrait", 1080, 1350),  # feed 4:5
    # Stories and reels: the profile bar at the top (~14%) and the reply/CTA area at the bottom (~20%).
    "story": Placement("story", 1080, 1920, safe_top=0.14, safe_bottom=0.20),
    "landscape": Placement("landscape", 1200, 628),  # link ads, 1.91:1
    "wide": Placement("wide", 1920, 1080),  # video thumbnails and display, 16:9
}
