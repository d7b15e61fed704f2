"""Concurrent MCP clients polling over streamable HTTP, with latency percentiles (used by a test
and by bench/run.py). Loopback only, bounded in calls and time."""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio
from mcp import Client


async def poll(url: str, tool: str, args: dict[str, Any], clients: int = 20, hz: float = 10.0,
               seconds: float = 4.0) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []

    async def one_client() -> None:
        async with Client(url, mode="legacy") as client:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    res = await client.call_tool(tool, args)
                    if res.is_error:
                        errors.append(res.content[0].text[:200])
                    sizes.append(len(res.model_dump_json(by_alias=True)))
                except Exception as exc:  # any transport error counts
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                took = time.perf_counter() - started
                latencies.append(took)
                await anyio.sleep(max(0.0, 1 / hz - took))

    with anyio.fail_after(seconds + 60):
        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(one_client)
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [latencies[0]] * 99
    return {
        "calls": len(latencies), "errors": len(errors), "first_errors": errors[:3],
        "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
        "mean_bytes": int(statistics.mean(sizes)) if sizes else 0,
    }
