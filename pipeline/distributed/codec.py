"""RunJob commands and worker events as JSON, so Redis never holds anything that is unpickled."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from pipeline import messages as m
from pipeline.schemas import GenerateRequest


@dataclass(frozen=True)
class JobStarted:
    """A worker host took the job (again, after ``lost_hosts`` died running it)."""

    job_id: str
    host: str
    lost_hosts: tuple[str, ...] = ()


# What travels in a job's stream; the other worker events stay on the host.
STREAM_EVENTS: dict[str, type] = {
    cls.__name__: cls
    for cls in (JobStarted, m.StageStarted, m.StageProgress, m.StageFinished, m.DesignNeeded, m.JobFinished)
}


def encode_event(ev: Any) -> str:
    return json.dumps({"type": type(ev).__name__, **asdict(ev)}, default=str)


def decode_event(text: str | bytes) -> Any:
    """A stream entry back into its dataclass; ValueError for anything unknown or malformed."""
    data = json.loads(text)
    cls = STREAM_EVENTS.get(data.pop("type", None))
    if cls is None:
        raise ValueError("unknown event type")
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is m.DesignNeeded:
        kwargs["prompt"] = m.DesignPrompt(**kwargs["prompt"])
    elif cls is m.JobFinished:
        from pipeline.jobs.job import _report

        kwargs["report"] = _report(kwargs.get("report") or {})
    for k, v in kwargs.items():
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)


def encode_run(run: m.RunJob) -> dict[str, Any]:
    """A RunJob without its folder (each host has its own): the message a worker host receives."""
    return {"job_id": run.job_id, "request": run.request.model_dump(mode="json"), "backend": run.backend,
            "seed": run.seed, "plan": list(run.plan)}


def decode_run(data: dict[str, Any], job_dir: str) -> m.RunJob:
    """The request was validated by the API and its images moved into files (as in local mode, where the
    object itself travels): it is rebuilt as it was, not validated again (its photo fields are empty now)."""
    known = GenerateRequest.model_fields
    request = GenerateRequest.model_construct(**{k: v for k, v in data["request"].items() if k in known})
    return m.RunJob(data["job_id"], job_dir, request, data["backend"], int(data["seed"]), tuple(data["plan"]))
