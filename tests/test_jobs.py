"""The job manager with real worker processes: crashes, forced stops, restarts, queue bounds, ETA."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import time
from pathlib import Path

import anyio
import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.images import InputError
from pipeline.jobs import Job, JobManager, QueueFull
from pipeline.schemas import GenerateRequest
from tests.conftest import png_b64
from tests.helpers import READY_S, wait_for_job, wait_until

pytestmark = pytest.mark.anyio


def _req(product_b64: str, copy: str = "copy", **kw) -> GenerateRequest:
    return GenerateRequest(product_image=product_b64, text_content=copy, **kw)




def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_sigkill_worker_mid_job_fails_it_fast_and_next_job_runs(settings: Settings, product_b64: str) -> None:
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        old_pid = m.worker.handle.pid
        job = await m.submit(_req(product_b64))
        await wait_until(lambda: m.jobs[job.job_id].stage, 20, "the job's first stage")
        os.kill(old_pid, signal.SIGKILL)
        # Noticed without waiting for a timeout (bench/run.py measures how fast; here a deadline only).
        assert await wait_for_job(m, job.job_id, {"failed", "completed"}, timeout=10) == "failed"
        st = m.status(job.job_id)
        assert "worker process died" in st.error and "SIGKILL" in st.error
        # The browser that worker owned went with it; a fresh worker runs the next job.
        await wait_until(lambda: _group_gone(old_pid), 5, "the dead worker's process group to go")
        nxt = await m.submit(_req(product_b64, "after the crash"))
        assert await wait_for_job(m, nxt.job_id, {"completed", "failed"}) == "completed"
        assert m.worker.handle.pid != old_pid and m.worker.restarts == 1


def _descendants(pid: int) -> list[int]:
    """A process and all its live descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(p := todo.pop())
        todo += children.get(p, [])
    return found


def _thread_field(pids: list[int], index: int) -> dict[str, int]:
    """One numeric field of every thread of these processes, by thread id (from /proc/<pid>/task/<tid>/stat,
    counted from the state field)."""
    values = {}
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                values[stat.parent.name] = int(stat.read_text().rsplit(")", 1)[1].split()[index])
    return values


NICE, POLICY = 16, 38  # proc(5): fields 19 and 41


def _autogroups(pids: list[int]) -> dict[int, tuple[str, int]] | None:
    """Each process's scheduling group (its session's autogroup) and that group's nice, from /proc; None where
    the kernel does not group by session."""
    if not Path("/proc/self/autogroup").exists():
        return None
    groups = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            # Empty for a process in no autogroup but the root group: one whose session is older than the
            # grouping, as under a container's init (CI's machines). There the server and the worker share the
            # root group and only the browser's new session gets a group of its own.
            if fields := Path(f"/proc/{pid}/autogroup").read_text().split():
                groups[pid] = (fields[0], int(fields[2]))
    return groups or None  # none in a group: a kernel that does not say


async def test_worker_and_its_browser_yield_the_cores_to_the_server(settings: Settings, product_b64: str) -> None:
    """The worker and the Chromium it starts run ``worker_nice`` below the server, so polls and accepts go first
    while a job runs (docs/benchmarks.md, get_status under load)."""
    assert settings.worker_nice == 10
    own = os.getpriority(os.PRIO_PROCESS, 0)
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        job = await m.submit(_req(product_b64))
        assert await wait_for_job(m, job.job_id, {"completed", "failed"}) == "completed"  # the browser is up
        group = _descendants(m.worker.handle.pid)
        assert len(group) > 3, group  # the worker and Chromium's processes
        nice = _thread_field(group, NICE)  # every thread's: Chromium sets some of its threads' priority itself
        assert len(nice) > len(group) and set(nice.values()) == {min(19, own + 10)}, nice
        # ...and all of them are batch work: their wake-ups do not preempt the server's (pipeline/priority.py).
        assert set(_thread_field(group, POLICY).values()) == {os.SCHED_BATCH}
        if (groups := _autogroups([os.getpid(), *group])) is not None:  # Linux schedules by session
            own_group = groups.pop(os.getpid(), ("/", 0))[0]  # the server's (here the test's): the worker's too
            others = {g for g in groups.values() if g[0] != own_group}
            assert others, groups  # Playwright starts the browser in a session of its own...
            assert {n for _, n in others} == {min(19, own + 10)}, groups  # ...put behind the server as a whole
    async with JobManager(settings.model_copy(update={"worker_nice": 0})) as m:
        assert await m.wait_ready(READY_S)
        assert os.getpriority(os.PRIO_PROCESS, m.worker.handle.pid) == own


async def test_stop_past_grace_period_terminates_worker(tmp_path, product_b64: str) -> None:
    settings = Settings(data_dir=tmp_path / "d", stop_grace_s=0.001)  # the worker cannot reach a safe point in time
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        old = m.worker.handle.process
        job = await m.submit(_req(product_b64))
        await wait_until(lambda: m.jobs[job.job_id].stage, 20, "the job's first stage")
        res = await m.stop(job.job_id)
        assert res.status == "stopped" and "grace period" in m.jobs[job.job_id].error
        assert not old.is_alive() and old.exitcode is not None  # reaped, not a zombie
        nxt = await m.submit(_req(product_b64, "next"))
        assert await wait_for_job(m, nxt.job_id, {"completed", "failed"}) == "completed"
        # Late events of the killed job never relabel it.
        assert m.status(job.job_id).status == "stopped"


async def test_restart_serves_finished_jobs_and_fails_interrupted_ones(settings: Settings, product_b64: str) -> None:
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        done = await m.submit(_req(product_b64))
        await wait_for_job(m, done.job_id, {"completed"})
        before = m.status(done.job_id)
    # Fake a job that was running when the server died.
    interrupted = Job(id="f" * 32, params={}, width=1024, height=1024, backend="draft", seed=1,
                      created_at=time.time(), plan=(), expected={}, status="running")
    m.store.create(interrupted.id)
    m.store.write_record(interrupted.id, interrupted.record())

    async with JobManager(settings) as m2:
        after = m2.status(done.job_id)
        assert after.status == "completed" and after.final_result == before.final_result
        assert after.parameters == before.parameters and after.progress_percent == 100
        assert m2.store.artifact(done.job_id, "final.png").stat().st_size > 10_000
        lost = m2.status("f" * 32)
        assert lost.status == "failed" and lost.error == "interrupted by restart"


async def test_queue_bound_keeps_order_and_refuses_clearly(tmp_path, product_b64: str) -> None:
    settings = Settings(data_dir=tmp_path / "d", queue_max=16)
    async with JobManager(settings) as m:
        accepted, refused = [], []
        for i in range(20):
            # The first job is large so that nothing finishes while the rest are submitted.
            size = 2048 if i == 0 else 256
            try:
                accepted.append((await m.submit(_req(product_b64, f"job {i}", width=size, height=size))).job_id)
            except QueueFull as exc:
                refused.append(exc)
        assert len(accepted) == 16 and len(refused) == 4
        assert "queue is full" in str(refused[0]) and refused[0].retry_after > 0
        positions = [m.status(j).queue_position for j in accepted[1:]]
        assert positions == list(range(15))
        for j in accepted:
            assert await wait_for_job(m, j, {"completed", "failed", "stopped"}, timeout=120) == "completed"
        started = sorted(accepted, key=lambda j: m.jobs[j].started_at)
        assert started == accepted  # FIFO: jobs started in the order they were accepted, none lost


async def test_eta_counts_down_between_updates_and_goes_negative(settings: Settings) -> None:
    m = JobManager(settings)  # no worker needed: progress and ETA are computed server-side
    now = time.monotonic()
    plan = ("segment", "background", "composite")
    job = Job(id="a" * 32, params={}, width=1024, height=1024, backend="diffusion", seed=1, created_at=time.time(),
              status="running", plan=plan, expected={s: m.stats.expected("diffusion", 1024, 1024, s) for s in plan},
              stage="background",
              stage_started=now - 10, started_mono=now - 18, done={"segment": 8.0})
    m.jobs[job.id] = job
    first = m.status(job.id, with_metrics=False)
    await anyio.sleep(0.3)
    second = m.status(job.id, with_metrics=False)
    assert second.eta_seconds < first.eta_seconds and second.step_eta_seconds < first.step_eta_seconds
    assert first.step_eta_seconds == pytest.approx(260 - 10, abs=0.5)
    assert second.progress_percent >= first.progress_percent > 0
    job.stage_started = now - 400  # the stage overran its estimate
    over = m.status(job.id, with_metrics=False)
    assert over.step_eta_seconds < 0 and over.progress_percent < 100
    assert over.current_step == "step1_background" and over.sub_step == job.sub_step


async def test_concurrent_submissions_respect_the_bound(tmp_path, product_b64: str) -> None:
    async with JobManager(Settings(data_dir=tmp_path / "d", queue_max=5)) as m:
        accepted: list[str] = []
        refused: list[QueueFull] = []

        async def submit(i: int) -> None:
            try:
                accepted.append((await m.submit(_req(product_b64, f"c{i}"))).job_id)  # 1024 px: slow enough
            except QueueFull as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(submit, i)
        assert len(accepted) == 5 and len(refused) == 7
        assert len([d for d in m.store.root.iterdir()]) == 5  # refused jobs leave no folder behind
        for job_id in accepted:
            assert await wait_for_job(m, job_id, {"completed", "failed"}, timeout=180) == "completed"


async def test_small_photos_are_checked_on_the_loop_and_refused_the_same(settings: Settings, product_b64: str) -> None:
    """A small base64 photo with ASCII copy is checked right on the event loop (Intake.is_light: no trip to a
    thread); anything that may read disk, ask fontconfig or decode for long keeps the thread. A broken photo is
    refused with the same one-line error on either path, and a job accepted on the loop runs as any other."""
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        await anyio.to_thread.run_sync(m.intake.warm_fonts)
        assert m.intake.is_light(_req(product_b64))
        assert not m.intake.is_light(_req(product_b64, "가나다"))  # a script fallback may ask fontconfig
        assert not m.intake.is_light(_req(product_b64, font_family="serif"))  # a font list not checked yet
        noisy = png_b64(Image.effect_noise((1024, 1024), 64).convert("RGB"))  # over the base64 size for the loop
        assert not m.intake.is_light(_req(noisy))
        flat = png_b64(Image.new("RGB", (2048, 2048), "white"))  # small file, 4 MP of PNG to decode
        assert len(flat) < 64 * 1024 and not m.intake.is_light(_req(flat))
        truncated = base64.b64encode(base64.b64decode(product_b64)[:4000]).decode()
        assert m.intake.is_light(_req(truncated))  # its header reads fine
        with pytest.raises(InputError) as on_loop:
            await m.submit(_req(truncated))
        with pytest.raises(InputError) as on_thread:
            await m.submit(_req(truncated, "가나다"))
        assert str(on_loop.value) == str(on_thread.value) == "product_image is not a readable image (OSError)"
        job = await m.submit(_req(product_b64, "checked on the loop"))
        assert await wait_for_job(m, job.job_id, {"completed", "failed"}) == "completed"


async def test_delivered_file_is_only_served_from_inside_the_output_folder(settings: Settings, tmp_path: Path,
                                                                          product_b64: str) -> None:
    """output_file (status, downloads, resources) names the delivered ad only while it is a regular file inside
    the output folder; a file swapped for a link to elsewhere is refused at the next poll, however often the
    same job was polled before."""
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not yours")
    async with JobManager(settings) as m:
        assert await m.wait_ready(READY_S)
        job = await m.submit(_req(product_b64))
        assert await wait_for_job(m, job.job_id, {"completed", "failed"}) == "completed"
        delivered = m.output_file(job.job_id)
        assert delivered is not None and delivered.is_file()
        assert delivered.resolve().is_relative_to(settings.output_dir.resolve())
        for _ in range(3):  # polls of an unchanged file
            assert m.output_file(job.job_id) == delivered
        data = delivered.read_bytes()
        delivered.unlink()
        delivered.symlink_to(outside)
        assert m.output_file(job.job_id) is None
        delivered.unlink()
        delivered.write_bytes(data)  # a regular file inside the folder again
        assert m.output_file(job.job_id) == delivered
        delivered.unlink()
        assert m.output_file(job.job_id) is None
