"""Imported once by the forkserver that forks each worker (``pipeline/jobs/supervisor.py``).

A worker forked from there starts with the worker side already imported (cv2, the stages, the
renderer; with ``pipeline.worker.models.preload`` also torch, diffusers and transformers), so a
worker restarted after a crash is ready in about a second instead of paying every import again.
"""

from __future__ import annotations

import os

# The server's stdout may be the MCP stdio channel, and the forkserver and every worker forked from it
# inherit it: nothing on this side may ever write there.
os.dup2(2, 1)

import pipeline.worker.main  # noqa: E402, F401  (the import is the point)
