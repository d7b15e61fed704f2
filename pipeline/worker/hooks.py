"""A seam for tests to inject faults into the worker, kept out of the product's code paths.

The worker calls these no-op hooks at a few safe points. Tests name a factory with
``ADGEN_WORKER_HOOKS=package.module:argument`` (``Settings.worker_hooks``); the worker
imports ``package.module`` and calls its ``make_hooks(argument)``. Nothing else reads it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


class WorkerHooks:
    def model_call(self, stage: str) -> None:
        """Inside a backend's out-of-memory retry loop, before each model call of a stage."""

    def mid_render(self, kill_browser: Callable[[], None]) -> None:
        """Between loading the text layer's page and taking its screenshot."""


def load_hooks(spec: str | None) -> WorkerHooks:
    if not spec:
        return WorkerHooks()
    module, _, argument = spec.partition(":")
    hooks = importlib.import_module(module).make_hooks(argument)
    if not isinstance(hooks, WorkerHooks):
        raise TypeError(f"{module}.make_hooks must return a WorkerHooks")
    return hooks
