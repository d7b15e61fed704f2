"""Runs one job inside the worker: a loop over its plan, emitting events as stages go.

The plan, seed and backend arrive decided in ``RunJob``; the runner only executes them.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import registry
from pipeline.images import PHOTO_UPLOAD, load_image, save_png
from pipeline.messages import (
    Command,
    DesignAnswer,
    DesignNeeded,
    DesignPrompt,
    Event,
    JobFinished,
    RunJob,
    StageFinished,
    StageProgress,
    StageStarted,
)
from pipeline.units import base_key, is_multi, with_tag
from pipeline.worker.backends.base import Backend
from pipeline.worker.context import JobContext, JobStopped
from pipeline.worker.design.local_llm import LocalDesigner
from pipeline.worker.errors import FatalDeviceError, UserFacingError
from pipeline.worker.render.browser import TextRenderer
from pipeline.worker.steps import IMPLEMENTATIONS, Services, deliver_final
from pipeline.worker.unit_runner import Ran, run_units

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(
        self,
        backends: Callable[[str], Backend],
        renderer: TextRenderer,
        emit: Callable[[Event], None],
        stop_requested: Callable[[str], bool],
        receive: Callable[[float], Command | None],
        answer_timeout: float,
        fonts_dir: Path,
        output_dir: Path,
        local_designer: LocalDesigner | None = None,
    ) -> None:
        self._backends = backends
        self._emit = emit
        self._stop_requested = stop_requested
        self._receive = receive
        self._answer_timeout = answer_timeout
        self._services = Services(renderer, fonts_dir, self._ask_llm, output_dir, local_designer)
        self.fatal: str | None = None  # set when the device is poisoned: the worker must exit

    def run(self, cmd: RunJob) -> JobFinished:
        backend = self._backends(cmd.backend)
        # A one-pass profile paints the scene around the product: its scene stage replaces background,
        # composite and refine of a plan made without knowing the profile.
        plan = registry.one_pass_plan(cmd.plan) if getattr(backend, "one_pass", False) else cmd.plan
        ctx = JobContext(
            job_id=cmd.job_id, job_dir=Path(cmd.job_dir), request=cmd.request, seed=cmd.seed,
            backend=backend, plan=plan, on_step=lambda f, s: None,
            stop_requested=lambda: self._stop_requested(cmd.job_id),
        )
        try:
            self._load_inputs(ctx)
            if is_multi(ctx.request):  # placements and/or variants: the plan's stages per unit
                run_units(ctx, self, self._services)
            else:
                for key in ctx.plan:
                    self.run_stage(ctx, key)
                deliver_final(ctx, self._services)
            return JobFinished(cmd.job_id, "completed", report=ctx.report())
        except JobStopped:
            return JobFinished(cmd.job_id, "stopped", "stopped on request", report=ctx.report())
        except Exception as exc:  # the worker must survive any job
            log.error("job %s failed:\n%s", cmd.job_id, traceback.format_exc())
            reason = str(exc) if isinstance(exc, UserFacingError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, FatalDeviceError):
                self.fatal = reason
            return JobFinished(cmd.job_id, "failed", reason[:500], report=ctx.report())

    @staticmethod
    def _load_inputs(ctx: JobContext) -> None:
        if ctx.request.start_step == 2:
            ctx.step1 = Image.open(ctx.job_dir / "step1.png").convert("RGB")
            mask = ctx.job_dir / "mask.png"  # the parent's product mask (edit_ad, resume): copy is planned around it
            if mask.is_file():
                with Image.open(mask) as m:
                    ctx.mask = np.asarray(m.convert("L"))
        elif (upload := ctx.job_dir / PHOTO_UPLOAD).is_file():
            # The server checked these bytes with the same function; here they are decoded for the job, and
            # product.png (the photo as received) is encoded beside the first stages rather than before them.
            ctx.photo = load_image(upload.read_bytes(), "product_image", max_pixels=2**40)
            threading.Thread(target=save_png, args=(ctx.photo.copy(), ctx.job_dir / "product.png"),
                             name="product.png", daemon=True).start()
        else:
            ctx.photo = Image.open(ctx.job_dir / "product.png")
            ctx.photo.load()

    def run_stage(self, ctx: JobContext, key: str) -> None:
        """Run one stage of the plan, reporting it as it goes."""
        spec = registry.STAGES[base_key(key)]  # composite#story-v2 runs composite (pipeline/units.py)
        ctx.check_stop()
        self._emit(StageStarted(ctx.job_id, key, spec.message))
        started = time.monotonic()

        def on_step(fraction: float, sub: str) -> None:
            ctx.check_stop()
            self._emit(StageProgress(ctx.job_id, key, max(0.0, min(1.0, fraction)), with_tag(sub, key)))

        ctx.on_step = on_step
        ctx.artifacts = []
        IMPLEMENTATIONS[spec.key](ctx, self._services)
        self._emit(StageFinished(ctx.job_id, key, time.monotonic() - started, tuple(ctx.artifacts)))

    def run_ahead(self, ctx: JobContext, key: str, cancelled: Callable[[], bool]) -> Ran:
        """Run a stage before its turn, on another thread and silently (a later placement's step 1 while this
        thread works through the copy stages); ``report`` tells the server when the plan reaches it."""
        spec = registry.STAGES[base_key(key)]

        def on_step(fraction: float, sub: str) -> None:
            if cancelled():
                raise JobStopped()
            ctx.check_stop()

        ctx.on_step = on_step
        ctx.artifacts = []
        started = time.monotonic()
        IMPLEMENTATIONS[spec.key](ctx, self._services)
        return Ran(time.monotonic() - started, tuple(ctx.artifacts))

    def report(self, ctx: JobContext, key: str, ran: Ran) -> None:
        """A stage that ran ahead, reported in its turn with the time it took."""
        ctx.check_stop()
        self._emit(StageStarted(ctx.job_id, key, registry.STAGES[base_key(key)].message))
        self._emit(StageFinished(ctx.job_id, key, ran.seconds, ran.artifacts))

    def _ask_llm(self, job_id: str, prompt: DesignPrompt) -> DesignAnswer | None:
        """Ask the server's designers and wait (stoppably) for their answer."""
        self._emit(DesignNeeded(job_id, prompt))
        deadline = time.monotonic() + self._answer_timeout
        while time.monotonic() < deadline:
            if self._stop_requested(job_id):
                raise JobStopped()
            cmd = self._receive(0.25)
            if isinstance(cmd, DesignAnswer) and cmd.job_id == job_id:
                return cmd
        return None
