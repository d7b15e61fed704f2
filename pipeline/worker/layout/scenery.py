"""Scenery under the copy: how busy the picture is where the copy goes, and a panel when too busy."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from PIL import Image

from pipeline.worker.layout.geometry import BUSY_EDGES, Box, LayoutPlan


def edge_density(image: Image.Image, box: Box) -> float:
    """Share of edge pixels under the box (how busy the scenery is where the copy goes), measured
    at a fixed working size so that the same scene scores the same at any resolution."""
    k = 512 / max(image.size)
    small = image.convert("L").resize((max(1, round(image.width * k)), max(1, round(image.height * k))),
                                       Image.Resampling.BOX)
    grey = np.asarray(small, np.float32)
    region = grey[max(0, int(box.y * k)): math.ceil(box.bottom * k), max(0, int(box.x * k)): math.ceil(box.right * k)]
    if region.shape[0] < 2 or region.shape[1] < 2:
        return 0.0
    # Gradient magnitude from neighbour differences (numpy only): strong local steps are edges.
    gy, gx = np.abs(np.diff(region, axis=0))[:, :-1], np.abs(np.diff(region, axis=1))[:-1, :]
    return float(((gx + gy) > 40).mean())


def with_scenery(plan: LayoutPlan, image: Image.Image | None) -> LayoutPlan:
    """The plan with ``panel`` set when the scenery under the copy box is too busy for bare copy."""
    if plan.copy_box is None or image is None or plan.panel:
        return plan
    if edge_density(image, plan.copy_box) <= BUSY_EDGES:
        return plan
    return replace(plan, panel=True)  # a design choice, visible in the picture: no warning needed
