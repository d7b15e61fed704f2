"""Batch work yields the cores: the worker (and a distributed worker host) runs below the API's CPU priority.

Shared by both sides of the process boundary (pipeline/worker/main.py, pipeline/distributed/host.py)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from pathlib import Path

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


def yield_child_sessions(retries: int = 5) -> int:
    """Give every child process that leads a session of its own this process's priority as a group; returns how
    many sessions were set.

    Playwright starts Chromium detached, in a session of its own. Where Linux schedules by session
    (autogroups, the default on most distributions and on this project's machines), the cores are shared
    between sessions first and by nice only within one: the browser's threads at the worker's nice 10 still
    got as much CPU as the server, its worker and everything else of theirs together. Setting the browser's
    session's own nice to the worker's puts it behind the server as the worker is. Raising a nice is allowed
    without privileges, but (without CAP_SYS_ADMIN) only once per 100 ms machine-wide, hence the retries."""
    autogroup = Path("/proc/self/autogroup")
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0 or not autogroup.exists():
        return 0
    import psutil

    own, done = os.getsid(0), set[int]()
    for child in psutil.Process().children(recursive=True):
        try:
            sid = os.getsid(child.pid)
        except OSError:  # gone meanwhile
            continue
        if sid in (own, *done):
            continue
        for _ in range(retries):
            try:
                Path(f"/proc/{child.pid}/autogroup").write_text(str(nice))
                done.add(sid)
                break
            except BlockingIOError:  # EAGAIN: another change machine-wide in the last 100 ms
                time.sleep(0.11)
            except OSError:  # gone, or not allowed here
                break
    return len(done)
