"""Progress and ETA as pure functions of a job's plan, measured stage times and the clock.

Progress is weighted by each stage's expected duration (fixed at submit), so a 4-minute
FLUX stage counts for more than a 50 ms composite. Inside a stage, time keeps the bar
moving (capped at 95 % of the stage) and reported steps move it faster. ETAs go negative
when a stage overruns its estimate, which is more honest than freezing at zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    percent: int  # 0..99 while running
    eta_s: float  # whole job; negative = over the estimate
    step_eta_s: float | None  # current stage


def estimate(
    expected: dict[str, float], done: set[str] | dict[str, float], stage: str | None, stage_fraction: float,
    stage_elapsed: float,
) -> Estimate:
    total = sum(expected.values()) or 1.0
    finished = sum(v for s, v in expected.items() if s in done)
    eta = sum(v for s, v in expected.items() if s not in done and s != stage)
    step_eta = None
    if stage is not None and stage not in done:
        exp = expected.get(stage, 1.0)
        frac = max(stage_fraction, min(0.95, stage_elapsed / exp if exp > 0 else 0.95))
        finished += exp * frac
        step_eta = exp - stage_elapsed
        eta += step_eta
    return Estimate(min(99, int(100 * finished / total)), eta, step_eta)


def queued_eta(ahead_totals: list[float], own_total: float, running_eta: float | None) -> float:
    """Seconds until a pending job finishes: the running job's rest, the jobs ahead, itself."""
    return max(0.0, running_eta or 0.0) + sum(ahead_totals) + own_total
