"""Batch work yields the cores: the worker (and a distributed worker host) runs below the API's CPU priority,
and the server's event loop is served first when a request wakes it.

Shared by both sides of the process boundary (pipeline/worker/main.py, pipeline/distributed/host.py)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
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
    its priority. The process is also marked as batch work (SCHED_BATCH, inherited): its threads' wake-ups
    do not preempt a running thread, the server's event loop mid-request included. Not every step is allowed
    everywhere; where not, the process runs as it is."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: no SCHED_BATCH on this platform
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
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


# sched_setattr(2): its number per architecture, and the flag that keeps children off what a thread sets.
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
SCHED_FLAG_RESET_ON_FORK = 0x01


def answer_first(slice_ms: float = 0.5) -> bool:
    """Ask the scheduler to treat the calling thread (the server's event loop) as latency-sensitive; True if
    it could.

    Linux's scheduler (EEVDF, 6.6 and later; a thread's own slice from 6.12) serves a waking thread before the
    running one when its request is shorter: with the default slice the event loop, woken by a request, waited
    out whatever held the core (a poller, the worker, the browser) for up to its whole slice, on each of the
    several wake-ups an MCP request takes. A shorter slice changes when the loop runs, not how much CPU it
    gets (that is weight, nice). Children do not inherit it (the worker is batch work). Unprivileged; where the
    kernel or the architecture does not offer it, nothing changes."""
    number = _SYS_SCHED_SETATTR.get(os.uname().machine) if sys.platform == "linux" else None
    if number is None:
        return False
    # struct sched_attr, first version (48 bytes): size, policy (SCHED_OTHER), flags, nice, priority, runtime
    # (the slice, in ns), deadline, period.
    attr = struct.pack("=IIQiIQQQ", 48, 0, SCHED_FLAG_RESET_ON_FORK, os.getpriority(os.PRIO_PROCESS, 0), 0,
                       int(slice_ms * 1e6), 0, 0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.syscall(number, 0, ctypes.create_string_buffer(attr, len(attr)), 0) == 0)
    except (OSError, AttributeError):
        return False
