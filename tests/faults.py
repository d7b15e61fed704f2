"""Fault injection for tests, installed into the worker through its hooks seam.

``Settings(worker_hooks="tests.faults:oom@background,chromium@render")``: the worker imports
this module and calls ``make_hooks`` with the text after the colon. Keys are stage keys
from the registry, so ``oom@segment`` means the segment stage.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.registry import STAGES
from pipeline.worker.hooks import WorkerHooks


class Faults(WorkerHooks):
    def __init__(self, spec: str) -> None:
        self.faults = {item.strip() for item in spec.split(",") if item.strip()}
        for item in self.faults:
            kind, _, stage = item.partition("@")
            if kind in ("oom", "poison") and stage not in STAGES:
                raise ValueError(f"unknown stage in fault {item!r}")

    def model_call(self, stage: str) -> None:
        import torch

        if f"oom@{stage}" in self.faults:
            raise torch.cuda.OutOfMemoryError(f"injected CUDA out of memory in {stage}")
        if f"poison@{stage}" in self.faults:
            raise RuntimeError(f"CUDA error: an illegal memory access was encountered (injected in {stage})")

    def mid_render(self, kill_browser: Callable[[], None]) -> None:
        if "chromium@render" in self.faults:
            self.faults.discard("chromium@render")  # once: the retry must succeed
            kill_browser()


def make_hooks(spec: str) -> WorkerHooks:
    return Faults(spec)
