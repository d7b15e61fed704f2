"""Runs a placements/variants job: the plan's repeated stages, each on the context of its unit.

Step 1 for several placements: the scene is generated once per variant, on a canvas wide and tall
enough to hold every placement (pipeline/units.py ``master_canvas``), and each placement takes the
largest centred crop of it. Generating a scene per aspect would give each placement a composition
of its own, but it costs a full denoise per placement (the dominant cost: 260 s of the seed's 463 s
on an L4) and the placements of one campaign would show different scenes; a crop keeps them the
same scene, as a marketer expects, and most of the scene survives every crop. The product is then
placed, refined and the copy laid out again for each placement with its safe zones (the layout
planner places product and copy together), so nothing the product or the copy needs is cropped.
One-pass profiles paint the scene around the product, so their scene stage runs per placement.

The first unit (first placement, variant 1) works in the job folder itself, exactly like a
one-ad job (final.png, step1.png, text.png, preview.jpg); the others keep their text.png in units/<name>/. Every
result is written to results/<placement>-v<n>.png and delivered to the output folder; with more
than one, contact.jpg shows them all and becomes the preview.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from pipeline import registry
from pipeline.units import (
    SHARED_STAGES,
    VARIANT_STAGES,
    Unit,
    base_key,
    expand_plan,
    master_canvas,
    tag_of,
    units_of,
)
from pipeline.worker.branding import with_logo
from pipeline.worker.contact_sheet import Tile, save_contact_sheet
from pipeline.worker.context import JobContext
from pipeline.worker.deliver import deliver, result_name
from pipeline.worker.provenance import job_provenance, write_png
from pipeline.worker.reframe import cover, product_window, take

if TYPE_CHECKING:
    from pipeline.worker.steps import Services



@dataclass(frozen=True)
class Ran:
    """A stage that ran ahead of its turn: how long it took and what it wrote."""

    seconds: float
    artifacts: tuple[str, ...]


class StageRunner(Protocol):
    def run_stage(self, ctx: JobContext, key: str) -> None: ...
    def run_ahead(self, ctx: JobContext, key: str, cancelled: Callable[[], bool]) -> Ran: ...
    def report(self, ctx: JobContext, key: str, ran: Ran) -> None: ...

THUMB_H = 480  # px: the copies kept for the contact sheet
UNIT_FILES = frozenset({"text.png", "final.png"})  # what a later unit writes (its final.png becomes its result)
# Where the copy goes in later variants when the request says "auto": each variant of a placement tries a
# position its earlier variants did not use (the layout planner's own best choice comes first).
POSITIONS = ("top", "bottom", "center")
_REGION_POSITION = {"top": "top", "bottom": "bottom", "center": "center", "left": "center", "right": "center"}


def unit_plan(ctx: JobContext) -> tuple[str, ...]:
    """The plan to run: the server's, or on a one-pass backend the same with its scene stage per unit."""
    if not getattr(ctx.backend, "one_pass", False):
        return ctx.plan
    bases = tuple(dict.fromkeys(base_key(k) for k in ctx.plan))
    return expand_plan(ctx.request, registry.one_pass_plan(bases))


@dataclass
class _Units:
    root: JobContext
    units: list[Unit]
    step1: Image.Image | None  # start_step 2: the given picture, cropped for every placement
    mask: np.ndarray | None  # start_step 2: the product's mask on it (edit_ad, resume), cropped the same way
    masters: dict[int, JobContext] = field(default_factory=dict)  # variant -> its scene's context
    open: dict[str, JobContext] = field(default_factory=dict)  # unit name -> its context while it runs
    regions: dict[str, list[str]] = field(default_factory=dict)  # placement -> copy regions of earlier variants
    tiles: dict[str, Tile] = field(default_factory=dict)

    def position(self, unit: Unit) -> str:
        asked = self.root.request.text_position
        used = [_REGION_POSITION.get(r, "center") for r in self.regions.get(unit.placement, [])]
        if asked != "auto" or not used:
            return asked
        fresh = [p for p in POSITIONS if p not in used]
        return fresh[0] if fresh else POSITIONS[(unit.variant - 2) % len(POSITIONS)]

    def context(self, unit: Unit, job_dir: Path, seed: int, size: tuple[int, int], position: str) -> JobContext:
        r = self.root
        request = r.request.model_copy(update={"width": size[0], "height": size[1], "text_position": position})
        job_dir.mkdir(parents=True, exist_ok=True)
        return JobContext(
            job_id=r.job_id, job_dir=job_dir, request=request, seed=seed, backend=r.backend, plan=r.plan,
            on_step=r.on_step, stop_requested=r.stop_requested, photo=r.photo, cutout=r.cutout,
            cutout_confidence=r.cutout_confidence, warnings=r.warnings, safe=unit.safe,
            writes=r.writes,  # one writer per job: the report waits for every unit's files
            keep=UNIT_FILES,  # no preview either: the job's is the first unit's, then the contact sheet
        )

    def master(self, variant: int) -> JobContext:
        if variant not in self.masters:
            self.masters.clear()  # one variant's scene at a time: earlier variants are finished
            first = self.units[0]
            unit = next(u for u in self.units if u.variant == variant)
            job_dir = self.root.job_dir if variant == 1 else self.root.job_dir / "units" / f"v{variant}"
            self.masters[variant] = self.context(unit, job_dir, unit.seed(self.root.seed),
                                                 master_canvas(self.root.request), first.placement)
        return self.masters[variant]

    def unit(self, unit: Unit) -> JobContext:
        if unit.name in self.open:
            return self.open[unit.name]
        size = (unit.width, unit.height)
        if unit == self.units[0]:  # the job folder's own context becomes the first unit's
            ctx = self.root
            ctx.request = ctx.request.model_copy(
                update={"width": unit.width, "height": unit.height, "text_position": self.position(unit)})
            ctx.safe = unit.safe
        else:
            ctx = self.context(unit, self.root.job_dir / "units" / unit.name, unit.seed(self.root.seed), size,
                               self.position(unit))
            ctx.cutout, ctx.cutout_confidence = self.root.cutout, self.root.cutout_confidence
        master = self.masters.get(unit.variant)
        if master is not None and master.background is not None:
            ctx.background, ctx.hints = cover(master.background, size), dict(master.hints)
        if self.step1 is not None:  # a given picture (step 2): framed around its product when the mask shows it
            window = product_window(self.step1.size, size, _box(self.mask))
            ctx.step1 = take(self.step1, window, size)
            if self.mask is not None:
                ctx.mask = np.asarray(take(Image.fromarray(self.mask).convert("L"), window, size, extend=False))
        self.open[unit.name] = ctx
        return ctx


def _box(mask: np.ndarray | None) -> tuple[int, int, int, int] | None:
    """The product's box (x, y, w, h) on a given picture, from its mask; None without one."""
    if mask is None or not (mask > 127).any():
        return None
    ys, xs = np.nonzero(mask > 127)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


AHEAD_THREADS = 2  # units' step 1 two at a time: numpy and OpenCV release the GIL, and the main thread often waits


class _Ahead:
    """Stages run ahead of their turn on extra threads (one unit's stages in order on one thread), reported
    when the plan reaches them."""

    def __init__(self, runner: StageRunner, plan: tuple[str, ...], state: _Units, by_name: dict[str, Unit]) -> None:
        self.runner, self.plan, self.state, self.by_name = runner, plan, state, by_name
        self.enabled = bool(getattr(state.root.backend, "overlap", False))
        self.pool = ThreadPoolExecutor(AHEAD_THREADS, thread_name_prefix="ahead")
        self.futures: dict[str, Future[Ran]] = {}
        self.cancelled = threading.Event()

    def run(self, ctx: JobContext, key: str) -> None:
        if key in self.futures:
            self.runner.report(ctx, key, self.futures.pop(key).result())
        else:
            self.runner.run_stage(ctx, key)

    def after(self, at: int) -> None:
        """Plan item ``at`` just ran: once a variant's scene exists (and again at the end of a unit's step 1),
        every unit of that variant still to come queues its step 1 (a chain: composite, then refine) for the
        ahead threads, while this thread works through the copy stages as their step 1 arrives."""
        here, after = base_key(self.plan[at]), self.plan[at + 1] if at + 1 < len(self.plan) else None
        step1_done = _is_step1(here) and (after is None or not _is_step1(base_key(after)))
        if self.enabled and (here in VARIANT_STAGES or step1_done):
            chains: dict[int, list[tuple[str, JobContext]]] = {}  # one chain per unit: its stages depend in turn
            for key, ctx in _later_step1(self.state, self.plan, at + 1, self.by_name):
                if key not in self.futures:
                    chains.setdefault(id(ctx), []).append((key, ctx))
            for chain in chains.values():
                futures = [Future[Ran]() for _ in chain]
                self.futures.update({key: f for (key, _), f in zip(chain, futures, strict=True)})
                self.pool.submit(self._run_chain, chain, futures)

    def _run_chain(self, chain: list[tuple[str, JobContext]], futures: list[Future[Ran]]) -> None:
        for i, ((key, ctx), future) in enumerate(zip(chain, futures, strict=True)):
            try:
                future.set_result(self.runner.run_ahead(ctx, key, self.cancelled.is_set))
            except BaseException as exc:  # this stage failed: the unit's later ones cannot run
                for rest in futures[i:]:
                    rest.set_exception(exc)
                return

    def close(self) -> None:
        self.cancelled.set()  # a failed or stopped job: a stage running ahead stops at its next step
        self.pool.shutdown(wait=True)


def run_units(root: JobContext, runner: StageRunner, svc: Services) -> None:
    """Run the whole plan of a placements/variants job; results are added to ``root.results``.

    On a backend that allows it (``overlap``), every placement's step 1 (composite, refine) and analysis run on
    two more threads from the moment its variant's scene exists, while this thread designs, renders and
    finishes each placement's copy as they arrive: Chromium's work and the products' numpy work then share the
    cores instead of taking turns. Each stage is still reported in plan order, with the time it took."""
    units = units_of(root.request)
    by_name = {u.name: u for u in units}
    plan = unit_plan(root)
    state = _Units(root, units, root.step1, root.mask)
    last: dict[str, int] = {}
    for i, key in enumerate(plan):
        if base_key(key) not in SHARED_STAGES and base_key(key) not in VARIANT_STAGES:
            last[tag_of(key) or units[0].name] = i
    ahead = _Ahead(runner, plan, state, by_name)
    try:
        for i, key in enumerate(plan):
            base, tag = base_key(key), tag_of(key)
            if base in SHARED_STAGES:
                runner.run_stage(root, key)
                continue
            if base in VARIANT_STAGES:
                runner.run_stage(state.master(int(tag[1:]) if tag else 1), key)
                ahead.after(i)  # the scene is there: every unit of this variant may start its step 1
                continue
            unit = by_name[tag] if tag else units[0]
            ctx = state.unit(unit)
            ahead.run(ctx, key)
            ahead.after(i)
            if last.get(unit.name) == i:
                _finish(state, unit, ctx, svc)
                del state.open[unit.name]
    finally:
        ahead.close()
    if len(root.results) > 1:
        rows = [[state.tiles[u.name] for u in units if u.variant == v and u.name in state.tiles]
                for v in sorted({u.variant for u in units})]
        save_contact_sheet([row for row in rows if row], root.job_dir, svc.fonts_dir)


def _is_step1(base: str) -> bool:
    """A unit's own step 1 stage (composite, refine, a one-pass scene)."""
    return registry.STAGES[base].step == "step1_background" and base not in SHARED_STAGES | VARIANT_STAGES


def _later_step1(state: _Units, plan: tuple[str, ...], at: int, by_name: dict[str, Unit]
                 ) -> list[tuple[str, JobContext]]:
    """The step 1 keys of every later unit of this variant (from plan item ``at`` on), and the analysis of its
    step 1 that follows them, if they may run now: their scene must exist (the next variant's units wait for its
    scene, which runs in turn). The copy stages after them stay on the main thread (one browser page)."""
    found: list[tuple[str, JobContext]] = []
    for key in plan[at:]:
        base = base_key(key)
        if base in SHARED_STAGES or base in VARIANT_STAGES:
            break  # the next variant's scene: its units go ahead once it has run
        tag = tag_of(key)
        if not (_is_step1(base) or base == registry.ANALYZE.key) or tag is None \
                or by_name[tag].variant not in state.masters:
            continue
        found.append((key, state.unit(by_name[tag])))
    return found


def _finish(state: _Units, unit: Unit, ctx: JobContext, svc: Services) -> None:
    """A unit's image into results/, the output folder and (for the first) final.png."""
    root = state.root
    image = ctx.final or (with_logo(ctx, ctx.step1) if ctx.step1 is not None else None)  # no copy: logo only
    assert image is not None
    result = root.job_dir / "results" / f"{unit.name}.png"
    result.parent.mkdir(exist_ok=True)
    first = unit == state.units[0]
    written = ctx.job_dir / "final.png"
    ctx.writes.flush()  # the unit's final.png (written in the background) is on disk
    if ctx.final is not None and written.is_file():
        # The final stage wrote it with its provenance (its seed included): reused, not encoded again. The
        # first unit's stays final.png (one-ad clients read it), byte for byte the first result.
        tmp = result.with_name(f".{result.name}.tmp")
        if first:
            shutil.copyfile(written, tmp)
        else:
            written.replace(tmp)
        tmp.replace(result)
    else:  # no copy stage: the step 1 image is the result
        ctx.provenance = job_provenance(ctx)
        write_png(image, result, ctx.provenance)
        if first:
            shutil.copyfile(result, root.job_dir / "final.png.tmp")
            (root.job_dir / "final.png.tmp").replace(root.job_dir / "final.png")
    r = root.request
    path: str | None = None
    try:
        delivered = deliver(image, svc.output_dir, result_name(root.job_id, r.text_content, unit.name, r.output_format),
                            r.output_format, r.quality, ctx.provenance, encoded=result)
        path = str(delivered)
    except OSError as exc:  # a full or read-only output folder must not lose the finished job
        root.warnings.append(f"The {unit.name} ad could not be written to the output folder "
                             f"({exc.strerror or exc}); it is still available from the job's results.")
    if first:
        root.output_file = path
    if ctx.layout is not None and ctx.layout.copy_box is not None:
        state.regions.setdefault(unit.placement, []).append(ctx.layout.region)
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMB_H * 4, THUMB_H), Image.Resampling.LANCZOS)
    seed = unit.seed(root.seed)
    note = f"{unit.width}x{unit.height} · seed {seed}"
    state.tiles[unit.name] = Tile(thumb, f"{unit.placement} v{unit.variant}", note)
    root.results.append({"placement": unit.placement, "variant": unit.variant, "width": unit.width,
                         "height": unit.height, "seed": seed, "artifact": unit.artifact, "path": path,
                         "contrast_ratio": ctx.contrast_ratio})
