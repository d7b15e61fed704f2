"""Batch work yields the cores: the worker (and a distributed worker host) runs below the API's CPU priority.

Shared by both sides of the process boundary (pipeline/worker/main.py, pipeline/distributed/host.py)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

PR_CAPBSET_DROP, CAP_SYS_NICE = 24, 23  # <linux/prctl.h>, <linux/capability.h>


def yield_the_cores(nice: int) -> None:
    """Run ``nice`` below the process that started this one, with every process this one starts
    (Settings.worker_nice says why).

    Chromium raises some of its own threads' priority (nice -8 for the browser's display-critical ones) when
    it may, that is when it runs as root: that would put the browser ahead of the server again. The right to
    raise a priority (CAP_SYS_NICE) is dropped from what this process's children can ever hold, so they keep
    its priority. Neither step is allowed everywhere; where not, the process runs as it is."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0)  # fails harmlessly without CAP_SETPCAP
