"""Plain, picklable messages that cross the server <-> worker process boundary.

Commands go down a queue to the worker; events come back up another. Images never
travel here: stages write PNG files into the job folder and events name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


# ---- commands (server -> worker) -------------------------------------------------------
@dataclass(frozen=True)
class RunJob:
    job_id: str
    job_dir: str
    request: dict[str, Any]  # GenerateRequest.model_dump(), images already saved as files
    backend: str


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class DesignAnswer:
    job_id: str
    text: str | None  # raw LLM answer (untrusted), None = no LLM answer
    source: str
    note: str = ""


Command = RunJob | Shutdown | DesignAnswer


# ---- events (worker -> server) ---------------------------------------------------------
@dataclass(frozen=True)
class WorkerReady:
    pid: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageStarted:
    job_id: str
    stage: str
    plan: tuple[str, ...]  # every stage this job will run, in order
    message: str


@dataclass(frozen=True)
class StageProgress:
    job_id: str
    stage: str
    fraction: float  # 0..1 within the stage
    sub_step: str


@dataclass(frozen=True)
class StageFinished:
    job_id: str
    stage: str
    seconds: float
    artifacts: tuple[str, ...] = ()  # file names written into the job folder


@dataclass(frozen=True)
class DesignNeeded:
    """The worker asks the server's LLM designers (MCP sampling / Anthropic) for HTML."""

    job_id: str
    system: str
    user: str
    max_tokens: int


@dataclass(frozen=True)
class JobFinished:
    job_id: str
    status: Literal["completed", "failed", "stopped"]
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # e.g. the seed actually used


Event = WorkerReady | StageStarted | StageProgress | StageFinished | DesignNeeded | JobFinished
