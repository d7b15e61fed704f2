"""A placements job runs its placements' step 1 on ahead threads beside the copy stages (draft backend).

The worker's own JobRunner drives a real DraftBackend and a real Chromium, in this process, twice: once
with the overlap and once without. The results must be the same pixels, every stage reported in plan
order with a start before its finish, and every placement's refinement must really have run on an ahead
thread (else the overlap is not there and this test says so).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.images import PHOTO_UPLOAD
from pipeline.messages import DesignAnswer, DesignNeeded, Event, JobFinished, RunJob, StageFinished, StageStarted
from pipeline.registry import plan_stages
from pipeline.schemas import GenerateRequest
from pipeline.units import expand_plan
from pipeline.worker.backends.draft import DraftBackend
from pipeline.worker.render.browser import TextRenderer
from pipeline.worker.runner import JobRunner
from tests.conftest import EXAMPLE

PLACED = ["square", "story", "landscape"]


class RecordingDraft(DraftBackend):
    """The real draft backend, noting which thread refined each canvas size."""

    def __init__(self, overlap: bool) -> None:
        self.overlap = overlap
        self.refined_on: dict[tuple[int, int], str] = {}

    def refine(self, composite: Image.Image, *args, **kwargs) -> Image.Image:  # type: ignore[no-untyped-def]
        self.refined_on[composite.size] = threading.current_thread().name
        return super().refine(composite, *args, **kwargs)


@pytest.fixture(scope="module")
def renderer() -> TextRenderer:
    s = Settings()
    r = TextRenderer(s.chromium_path, s.fonts_dir, 30)
    yield r
    r.close()


def _run(tmp: Path, renderer: TextRenderer, overlap: bool) -> tuple[RecordingDraft, list[Event], JobFinished, Path]:
    backend, events, answers = RecordingDraft(overlap), [], []

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, DesignNeeded):  # no LLM designer here: the template designs
            answers.append(DesignAnswer(event.job_id, None, "none"))

    s = Settings()
    job_dir = tmp / ("overlap" if overlap else "in-turn")
    job_dir.mkdir()
    (job_dir / PHOTO_UPLOAD).write_bytes(EXAMPLE.read_bytes())
    runner = JobRunner(lambda name: backend, renderer, emit, lambda job_id: False,
                       lambda timeout: answers.pop() if answers else None, 5, s.fonts_dir, tmp / "out")
    req = GenerateRequest(product_image="aGk=", test_mode=True, seed=7, placements=PLACED,
                          text_content="Summer **Sale**", subline="Hydrating serum, all day", cta="Shop now")
    plan = expand_plan(req, plan_stages(req))
    done = runner.run(RunJob("j" + job_dir.name, str(job_dir), req, "draft", 7, plan))
    return backend, events, done, job_dir


def test_overlapped_units_give_the_same_ads_reported_in_plan_order(tmp_path: Path, renderer: TextRenderer) -> None:
    fast, events, done, fast_dir = _run(tmp_path, renderer, overlap=True)
    slow, _, slow_done, slow_dir = _run(tmp_path, renderer, overlap=False)
    assert done.status == slow_done.status == "completed", (done.error, slow_done.error)

    # Every placement's refinement ran ahead (from the moment the scene existed), none in turn.
    assert len(fast.refined_on) == len(PLACED), fast.refined_on
    assert all(name.startswith("ahead") for name in fast.refined_on.values()), fast.refined_on
    assert not any(name.startswith("ahead") for name in slow.refined_on.values())

    # Reported as the plan says: each stage started then finished, one at a time, in plan order.
    req = GenerateRequest(product_image="aGk=", placements=PLACED, text_content="x")
    plan = expand_plan(req, plan_stages(req))
    stage_events = [(type(e).__name__, e.stage) for e in events if isinstance(e, (StageStarted, StageFinished))]
    assert stage_events == [(kind, key) for key in plan for kind in ("StageStarted", "StageFinished")]
    assert all(e.seconds > 0 for e in events if isinstance(e, StageFinished) and e.stage.startswith("refine"))

    # The same pixels either way: running ahead changes when, not what.
    for name in (f"{p}-v1" for p in PLACED):
        a = np.asarray(Image.open(fast_dir / "results" / f"{name}.png"))
        b = np.asarray(Image.open(slow_dir / "results" / f"{name}.png"))
        assert a.shape == b.shape and np.array_equal(a, b), name
