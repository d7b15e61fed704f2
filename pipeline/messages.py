"""Typed, picklable messages across the server <-> worker process boundary, one way each.

Commands go down a queue to the worker; events come back up another. Images never travel
here: stages write files into the job folder and events name them. Every decision the
server can make (seed, backend, plan) is made at submit and carried in ``RunJob``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.schemas import GenerateRequest

MAX_ANSWER_CHARS = 300_000  # an LLM designer's answer larger than this is refused unread


@dataclass(frozen=True)
class DesignPrompt:
    """What an LLM designer is asked (built in the worker, answered on the server side)."""

    system: str
    user: str
    max_tokens: int = 2048


# ---- commands (server -> worker) -------------------------------------------------------
@dataclass(frozen=True)
class RunJob:
    job_id: str
    job_dir: str
    request: GenerateRequest  # images already saved as files in job_dir
    backend: str  # "draft" or "diffusion", decided at submit
    seed: int  # decided at submit (the request's, or a random one)
    plan: tuple[str, ...]  # stage keys, decided at submit


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
class WorkerState:
    """What the worker holds: backends, models, browser. Sent at start and after every job."""

    default_backend: str
    backend_reason: str
    backend_info: dict[str, Any] = field(default_factory=dict)  # device, precision, cache contents
    renderer_launches: int = 0
    local_llm: dict[str, Any] | None = None
    warming: bool = False  # loading the configured models after start (ADGEN_WARMUP); a job arriving meanwhile runs


@dataclass(frozen=True)
class WorkerReady:
    pid: int
    state: WorkerState


@dataclass(frozen=True)
class StageStarted:
    job_id: str
    stage: str
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
    prompt: DesignPrompt


@dataclass(frozen=True)
class JobReport:
    """What a finished job tells about itself beyond its status (persisted with the job)."""

    designer: str | None = None
    design_note: str | None = None
    design_removed: tuple[str, ...] = ()
    text_region: str | None = None
    font_px: int | None = None
    warnings: tuple[str, ...] = ()  # one sentence each, for the person
    cutout_confidence: float | None = None
    output_file: str | None = None  # the delivered ad in the output folder (absolute path)
    product_fidelity: dict[str, float] | None = None  # delta_e_mean, ssim in the product's core (refine stage)
    provenance: dict[str, Any] | None = None  # what the delivered files' metadata says made them
    contrast_ratio: float | None = None  # the copy's lowest WCAG contrast on the rendered ad
    # Every image of a placements/variants job (pipeline/units.py), first = final.png: placement, variant, width,
    # height, seed, artifact (the name it is served under) and path (its copy in the output folder, or None).
    results: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class JobFinished:
    job_id: str
    status: Literal["completed", "failed", "stopped"]
    error: str | None = None
    report: JobReport = field(default_factory=JobReport)


@dataclass(frozen=True)
class WorkerExiting:
    """The worker is about to exit on its own (e.g. a poisoned CUDA context); start a fresh one."""

    reason: str


Event = (
    WorkerReady | WorkerState | StageStarted | StageProgress | StageFinished | DesignNeeded | JobFinished
    | WorkerExiting
)
