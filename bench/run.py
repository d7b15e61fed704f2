"""adgen benchmarks: each row measures our way and the seed design's way side by side, same run.

    .venv/bin/python -m bench.run            # prints the table, writes docs/benchmarks.md

Rows:
  1. text-layer render: warm browser reused vs a browser launched per job (the seed's way)
  2. get_status: latency and payload with result URIs + cached preview vs every image as base64
  3. two consecutive jobs on tiny local models: resident model cache vs reload every model per job
  4. draft-backend ad end to end; server and worker RSS over 100 jobs
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.config import BUNDLED_FONTS_DIR, Settings  # noqa: E402
from pipeline.jobs import JobManager  # noqa: E402
from pipeline.worker.render.browser import TextRenderer  # noqa: E402
from pipeline.schemas import GenerateRequest  # noqa: E402
from pipeline.worker.stages.design import DesignSpec, design_template  # noqa: E402

PRODUCT = base64.b64encode((REPO / "examples" / "product.jpg").read_bytes()).decode()
ROWS: list[tuple[str, str, str, str]] = []  # (benchmark, ours, seed's way, ratio)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def row(name: str, ours: float, theirs: float, unit: str, lower_is_better: bool = True) -> None:
    ratio = theirs / ours if lower_is_better else ours / theirs
    ROWS.append((name, f"{ours:.3g} {unit}", f"{theirs:.3g} {unit}", f"{ratio:.1f}x"))
    print(f"{name:<48} ours {ours:10.3g} {unit:<6} seed {theirs:10.3g} {unit:<6} -> {ratio:.1f}x", flush=True)


# ---- 1. render ---------------------------------------------------------------------------
def bench_render(n: int) -> None:
    spec = DesignSpec(text="촉촉한 하루의 시작 ✨ SALE 50%", style_prompt="3d", font_family="NanumSquare, sans-serif",
                      font_weight="bold", text_color="linear-gradient(45deg, #FFD700, #FFA500)", text_size=72,
                      position="top", width=1024, height=1024)
    html = design_template(spec, None, None, None).html
    chromium = Settings().chromium_path
    warm = TextRenderer(chromium, BUNDLED_FONTS_DIR)
    warm.render(html, 1024, 1024)  # the server warms up before its first job
    t_warm = []
    for _ in range(n):
        t = time.perf_counter()
        warm.render(html, 1024, 1024)
        t_warm.append(time.perf_counter() - t)
    warm.close()
    t_cold = []
    for _ in range(n):
        t = time.perf_counter()
        cold = TextRenderer(chromium, BUNDLED_FONTS_DIR)
        cold.render(html, 1024, 1024)
        cold.close()
        t_cold.append(time.perf_counter() - t)
    row("text layer render, median (warm vs launch per job)", med(t_warm) * 1000, med(t_cold) * 1000, "ms")


# ---- 2. status ---------------------------------------------------------------------------
async def bench_status(n: int, data: Path) -> None:
    from mcp import Client

    port = _free_port()
    env = dict(os.environ, ADGEN_DATA_DIR=str(data / "status"), ADGEN_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "mcp_server", "--transport", "streamable-http", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/health")
        async with Client(base + "/mcp", mode="legacy") as client:
            res = await client.call_tool("generate_ad", {"product_image": PRODUCT, "text_content": "벤치마크"})
            job_id = res.structured_content["job_id"]
            t_mcp, size_mcp = [], []
            for _ in range(n):
                t = time.perf_counter()
                r = await client.call_tool("get_status", {"job_id": job_id})
                t_mcp.append(time.perf_counter() - t)
                size_mcp.append(len(r.model_dump_json(by_alias=True)))
        async with httpx.AsyncClient(base_url=base) as http:
            t_url, t_b64, size_url, size_b64 = [], [], [], []
            for _ in range(n):
                t = time.perf_counter()
                r = await http.get(f"/status/{job_id}")
                t_url.append(time.perf_counter() - t)
                size_url.append(len(r.content))
                t = time.perf_counter()
                r = await http.get(f"/status/{job_id}", params={"images": "base64"})
                t_b64.append(time.perf_counter() - t)
                size_b64.append(len(r.content))
    finally:
        proc.terminate()
        proc.wait(20)
    row("REST status latency, median (URLs vs all base64)", med(t_url) * 1000, med(t_b64) * 1000, "ms")
    row("REST status payload (URLs vs all base64)", med(size_url) / 1024, med(size_b64) / 1024, "KiB")
    row("MCP get_status + preview payload vs all base64", med(size_mcp) / 1024, med(size_b64) / 1024, "KiB")
    print(f"  (MCP get_status with the cached preview: median {med(t_mcp) * 1000:.1f} ms)")


# ---- 3. model cache ----------------------------------------------------------------------
async def bench_models(data: Path) -> None:
    try:
        from tests.tiny_models.flux import build_flux
        from tests.tiny_models.qwen2vl import build_qwen2vl
        from tests.tiny_models.segmentation import build_segmenter
    except ImportError as exc:
        print(f"model cache benchmark skipped: {exc} (pip install 'adgen[models]')")
        return
    models = data / "tiny"
    flux, seg, vlm = build_flux(models / "flux"), build_segmenter(models / "seg"), build_qwen2vl(models / "vlm")
    results = {}
    for name, budget in (("resident", 4.0), ("reload", 0.0001)):
        settings = Settings(data_dir=data / name, backend="diffusion", device="cpu", offline=True,
                            flux_model=str(flux), seg_model=str(seg), vlm_model=str(vlm), flux_steps=2,
                            seg_input_size=256, vlm_max_new_tokens=6, vlm_max_pixels=224 * 224, vram_budget_gb=budget)
        async with JobManager(settings) as m:
            await m.wait_ready()
            started = time.perf_counter()
            for i in range(2):
                job = await m.submit(GenerateRequest(product_image=PRODUCT, text_content=f"job {i}", width=256,
                                                     height=256, seed=i))
                while m.status(job.job_id, with_metrics=False).status not in ("completed", "failed"):
                    await m.wait_for_change(job.job_id, 0.2)
            cache = m.resources().models["backend"]["cache"]
            results[name] = (time.perf_counter() - started, cache["loads"])
    row("tiny-model loads over 2 jobs (cache vs reload)", results["resident"][1], results["reload"][1], "loads")
    row("tiny-model wall time, 2 jobs (cache vs reload)", results["resident"][0], results["reload"][0], "s")


# ---- 4. end to end and memory ------------------------------------------------------------
async def bench_draft(jobs: int, data: Path) -> dict:
    """A real server process over REST: end-to-end time, then its RSS (and the worker's) over many jobs."""
    port = _free_port()
    env = dict(os.environ, ADGEN_DATA_DIR=str(data / "draft"), ADGEN_LOG_LEVEL="WARNING", ADGEN_KEEP_JOBS="1000")
    proc = subprocess.Popen([sys.executable, "-m", "mcp_server", "--transport", "streamable-http", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    server = psutil.Process(proc.pid)
    times: list[float] = []
    rss: list[tuple[int, float, float]] = []
    try:
        _wait_http(base + "/health")
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            for i in range(jobs):
                size = 1024 if i < 5 else 512
                t = time.perf_counter()
                r = await http.post("/generate", json={"product_image": PRODUCT, "text_content": f"광고 {i}",
                                                       "width": size, "height": size, "seed": i})
                job_id = r.json()["job_id"]
                while (await http.get(f"/status/{job_id}")).json()["status"] not in ("completed", "failed"):
                    await anyio.sleep(0.02)
                if i < 5:
                    times.append(time.perf_counter() - t)
                if i in (0, jobs // 2, jobs - 1):
                    tree = server.children(recursive=True)
                    rss.append((i + 1, server.memory_info().rss / 2**20,
                                sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20))
    finally:
        proc.terminate()
        proc.wait(20)
    print(f"draft ad end to end at 1024 px over REST, median of 5: {med(times):.2f} s")
    for n, srv, wrk in rss:
        print(f"  after job {n:>3}: server RSS {srv:7.1f} MiB, worker+browser RSS {wrk:7.1f} MiB")
    return {"e2e_median_s": med(times), "rss": rss}


# ---- helpers -----------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {psutil.cpu_count()} logical cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"no GPU, Python {platform.python_version()}, {platform.system()} {platform.release()}")


def write_report(path: Path, draft: dict) -> None:
    lines = [
        "# Benchmarks", "",
        f"Machine: {machine()}.", f"Run: `python -m bench.run` on {time.strftime('%Y-%m-%d')}.", "",
        "Each row measures adgen's way and the seed design's way in the same run; ratio = how many times",
        "better ours is (time, bytes or loads).", "",
        "| benchmark | adgen | seed's way | ratio |", "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in ROWS], "",
        f"Draft-backend ad end to end at 1024x1024 (median of 5): {draft['e2e_median_s']:.2f} s.", "",
        "Memory over consecutive draft jobs (the first five at 1024 px, then 512 px):", "",
        "| after job | server RSS (MiB) | worker + Chromium RSS (MiB) |", "| --- | --- | --- |",
        *[f"| {n} | {s:.0f} | {w:.0f} |" for n, s, w in draft["rss"]], "",
    ]
    path.write_text("\n".join(lines))


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        await bench_status(args.polls, data)
        await bench_models(data)
        draft = await bench_draft(args.jobs, data)
    print()
    print(f"{'benchmark':<52} {'adgen':>14} {'seed':>14} {'ratio':>7}")
    for a, b, c, d in ROWS:
        print(f"{a:<52} {b:>14} {c:>14} {d:>7}")
    if args.write:
        write_report(REPO / "docs" / "benchmarks.md", draft)
        print("\nwrote docs/benchmarks.md")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--renders", type=int, default=10)
    p.add_argument("--polls", type=int, default=50)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--no-write", dest="write", action="store_false")
    args = p.parse_args()
    bench_render(args.renders)  # sync Playwright: outside any event loop
    anyio.run(main_async, args)


if __name__ == "__main__":
    main()
