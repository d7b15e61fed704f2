"""Status assembly: a job's record turned into the design doc's StatusResponse, changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pipeline import registry
from pipeline.jobs.job import Job
from pipeline.jobs.progress import Estimate, estimate, queued_eta
from pipeline.schemas import TERMINAL_STATES, ResultItem, StatusResponse, SystemMetrics
from pipeline.units import CUSTOM, base_key

ResultFormat = Literal["uri", "url"]
RESULT_FILES = {"step1_result": "step1.png", "step2_result": "text.png", "final_result": "final.png"}


def job_estimate(job: Job, now: float) -> Estimate | None:
    """Where a running job stands; None for any other state."""
    if job.status != "running":
        return None
    return estimate(job.expected, job.done, job.stage, job.stage_fraction, now - job.stage_started)


def queue_eta(jobs: dict[str, Job], ahead: list[str], running: str | None, job: Job | None, now: float) -> float:
    """Seconds until ``job`` is done behind the ``ahead`` ids and the running job (None: until they all are)."""
    current = jobs.get(running) if running else None
    est = job_estimate(current, now) if current else None
    own = sum(job.expected.values()) if job else 0.0
    return queued_eta([sum(jobs[j].expected.values()) for j in ahead], own, est.eta_s if est else None)


def result_links(job_id: str, has: Callable[[str], bool], results: ResultFormat) -> dict[str, str]:
    out = {}
    for key, name in RESULT_FILES.items():
        if has(name):
            out[key] = f"adgen://jobs/{job_id}/{name}" if results == "uri" else f"/jobs/{job_id}/{name}"
    return out


def result_items(job: Job, final_link: str | None) -> list[ResultItem]:
    """Every image of the job, linked like its final_result (resource URI or server path); a one-ad job's
    only result is final.png itself."""
    if final_link is None:
        return []
    base = final_link.rsplit("/", 1)[0]
    if not job.report.results:
        return [ResultItem(placement=CUSTOM, variant=1, width=job.width, height=job.height, seed=job.seed,
                           uri=final_link, path=job.report.output_file, contrast_ratio=job.report.contrast_ratio)]
    return [ResultItem(placement=r["placement"], variant=r["variant"], width=r["width"], height=r["height"],
                       seed=r["seed"], uri=f"{base}/{r['artifact']}", path=r.get("path"),
                       contrast_ratio=r.get("contrast_ratio"))
            for r in job.report.results]


def build_status(
    job: Job, now: float, *, queue_position: int | None, queued_eta: float | None, links: dict[str, str],
    metrics: SystemMetrics | None,
) -> StatusResponse:
    est = job_estimate(job, now)
    eta: float | None = est.eta_s if est else None
    step_eta = est.step_eta_s if est else None
    progress = max(job.progress, est.percent) if est else job.progress
    if job.status == "pending":
        eta = queued_eta
        message = f"Queued: {queue_position} job(s) ahead" if queue_position else "Queued: next in line"
    else:
        message = job.message
    if job.status == "completed":
        eta, step_eta = 0.0, 0.0
    if job.status in TERMINAL_STATES and "final_result" not in links:
        links = {k: v for k, v in links.items() if k != "step2_result"}
    running = job.status == "running"
    return StatusResponse(
        job_id=job.id, status=job.status, progress_percent=progress,
        current_step=registry.STAGES[base_key(job.stage)].step
        if running and job.stage and base_key(job.stage) in registry.STAGES else None,
        sub_step=job.sub_step if running else None, message=message, elapsed_sec=round(job.elapsed(now), 2),
        eta_seconds=None if eta is None else round(eta, 1),
        step_eta_seconds=None if step_eta is None else round(step_eta, 1),
        queue_position=queue_position, error=job.error, backend=job.backend,
        designer=job.report.designer, design_note=job.report.design_note or None,
        warnings=[*job.warnings, *job.report.warnings], cutout_confidence=job.report.cutout_confidence,
        output_file=job.report.output_file,
        product_fidelity=job.report.product_fidelity, provenance=job.report.provenance,
        contrast_ratio=job.report.contrast_ratio,
        download_url=f"/jobs/{job.id}/download" if job.report.output_file else None,
        parent_job_id=job.parent_job_id, edit_note=job.edit_note,
        system_metrics=metrics, parameters=job.params, results=result_items(job, links.get("final_result")), **links,
    )
