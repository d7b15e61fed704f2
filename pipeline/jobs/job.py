"""The server's record of one job: what was asked, where it stands, what it reported."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from pipeline import registry
from pipeline.messages import JobReport, StageFinished, StageProgress, StageStarted
from pipeline.schemas import GenerateRequest, JobState
from pipeline.units import base_key, with_tag


@dataclass
class Job:
    id: str
    params: dict[str, Any]  # the request without image payloads, seed filled in
    width: int
    height: int
    backend: str
    seed: int
    created_at: float
    plan: tuple[str, ...]
    expected: dict[str, float]  # seconds per stage, fixed at submit so progress never runs backwards
    request: GenerateRequest | None = None  # None for jobs loaded from disk after a restart
    parent_job_id: str | None = None
    edit_note: str | None = None  # edit_ad: what was redone and why
    warnings: list[str] = field(default_factory=list)  # found at intake (the worker's come in the report)
    status: JobState = "pending"
    stage: str | None = None
    stage_started: float = 0.0
    stage_fraction: float = 0.0
    sub_step: str | None = None
    message: str = "Queued"
    done: dict[str, float] = field(default_factory=dict)
    started_at: float | None = None  # wall clock, persisted (the order jobs really started in)
    started_mono: float | None = None
    elapsed_final: float | None = None
    error: str | None = None
    report: JobReport = field(default_factory=JobReport)
    progress: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def touch(self) -> None:
        """Wake everyone waiting on this job (tool calls streaming progress)."""
        self.changed.set()
        self.changed = anyio.Event()

    def apply_stage_event(self, ev: StageStarted | StageProgress | StageFinished, now: float) -> float | None:
        """Follow the worker's stage events; the seconds a stage took once it finishes (for the statistics)."""
        if isinstance(ev, StageStarted):
            self.stage, self.stage_started, self.stage_fraction = ev.stage, now, 0.0
            self.sub_step, self.message = with_tag(registry.STAGES[base_key(ev.stage)].label, ev.stage), ev.message
        elif isinstance(ev, StageProgress):
            if ev.stage == self.stage:
                self.stage_fraction = max(self.stage_fraction, ev.fraction)
                self.sub_step = ev.sub_step
        else:
            self.done[ev.stage] = ev.seconds
            self.stage_fraction = 1.0
            return ev.seconds
        return None

    def elapsed(self, now: float) -> float:
        if self.elapsed_final is not None:
            return self.elapsed_final
        return 0.0 if self.started_mono is None else now - self.started_mono

    def record(self) -> dict[str, Any]:
        return {
            "job_id": self.id, "status": self.status, "created_at": self.created_at, "started_at": self.started_at,
            "params": self.params, "width": self.width, "height": self.height, "backend": self.backend,
            "seed": self.seed, "parent_job_id": self.parent_job_id, "edit_note": self.edit_note,
            "warnings": self.warnings, "plan": list(self.plan),
            "expected": self.expected, "done": self.done,
            "error": self.error, "report": asdict(self.report), "progress": self.progress, "message": self.message,
            "elapsed": self.elapsed(time.monotonic()),
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Job:
        job = cls(
            id=r["job_id"], params=r.get("params", {}), width=r.get("width", 1024), height=r.get("height", 1024),
            backend=r.get("backend", "draft"), seed=int(r.get("seed") or r.get("params", {}).get("seed") or 0),
            created_at=r.get("created_at", 0.0), plan=tuple(r.get("plan", ())), expected=dict(r.get("expected", {})),
            status=r.get("status", "failed"), done=dict(r.get("done", {})), error=r.get("error"),
            started_at=r.get("started_at"), parent_job_id=r.get("parent_job_id"), edit_note=r.get("edit_note"),
            warnings=list(r.get("warnings", [])),
            report=_report(r.get("report") or {}),
            progress=int(r.get("progress", 0)), message=r.get("message", ""),
        )
        job.elapsed_final = float(r.get("elapsed") or 0.0)
        return job


def _report(data: dict[str, Any]) -> JobReport:
    """A persisted report (JSON turned tuples into lists; fields added later default)."""
    known: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                             for k, v in data.items() if k in JobReport.__dataclass_fields__}
    return JobReport(**known)
