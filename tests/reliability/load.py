"""Concurrent MCP clients polling over streamable HTTP, with latency percentiles (used by a test
and by bench/run.py). Loopback only, bounded in calls and time.

Every client connects and makes one untimed call before the first timed window, and all clients
start each window together: a client's first call lists the tools and compiles a validator for
the tool's output schema, a once-per-session cost that would otherwise land in the window as the
slowest calls of every run and say nothing about polling. The same applies to every server
measured, the do-nothing one included. Windows of the server under test and of the do-nothing
server alternate, so both see the same machine (this one is shared and its load drifts).

The clients run in processes of their own (``python -m tests.reliability.load``): each set of 20
pollers in one, the accept probe in another, so that a set can run at a lower priority than the
server, as clients on other machines would (``Pollers(nice=...)``), and no client waits for
another's event loop.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import anyio
import anyio.abc
import httpx
from mcp import Client

from bench.timing import gc_paused

REPO = Path(__file__).resolve().parents[2]
# The priority of the yielding pollers: the worker's own (Settings.worker_nice), so that on this one machine
# the server comes first and the 20 clients and the worker share what it leaves, as they would if the clients
# ran on their own machines.
YIELDING_NICE = 10


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50 / p99 / max in milliseconds (inclusive quantiles, so a short series still has a p99)."""
    xs = sorted(latencies)
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) >= 2 else [xs[0]] * 99
    return {"p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1), "max_ms": round(xs[-1] * 1000, 1)}


def _latency_summary(latencies: list[float]) -> dict[str, Any]:
    """How many calls, and their p50 / p99 / max when there were any."""
    return {"calls": len(latencies), **(percentiles(latencies) if latencies else {})}


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of one process (not its children), from /proc."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_s(pid: int | None) -> float:
    """Seconds the main thread of one process (the server's event loop) has spent ready to run but waiting for
    a core (Linux schedstat); 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _ClientProcess:
    """A set of clients in a process of its own (``_child_main``): a JSON config line on its stdin, "ready"
    once its clients are connected and warmed up, then one JSON line back for each command line."""

    def __init__(self, config: dict[str, Any], nice: int = 0) -> None:
        self._config, self._url = json.dumps(config), config["url"]
        self.nice = nice
        self._proc: anyio.abc.Process | None = None
        self._buffer = b""

    async def _line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        while b"\n" not in self._buffer:
            self._buffer += await self._proc.stdout.receive()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        await self._proc.stdin.send(json.dumps(command).encode() + b"\n")
        result: dict[str, Any] = json.loads(await self._line())
        return result

    async def __aenter__(self) -> Self:
        self._proc = await anyio.open_process(
            [sys.executable, "-m", "tests.reliability.load", "--nice", str(self.nice)], cwd=REPO,
            stderr=subprocess.DEVNULL)
        assert self._proc.stdin is not None
        try:
            await self._proc.stdin.send(self._config.encode() + b"\n")
            with anyio.fail_after(120):
                if (ready := await self._line()) != "ready":
                    raise RuntimeError(f"client process did not start: {ready[:200]}")
        except BaseException as exc:  # no __aexit__ follows a failed __aenter__: the process is ended here
            await self.__aexit__(None, None, None)
            if isinstance(exc, anyio.EndOfStream):
                raise RuntimeError(f"client process ended before it was ready (is {self._url} serving?)") from None
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            with anyio.CancelScope(shield=True):
                if self._proc.returncode is None:
                    self._proc.terminate()
                await self._proc.wait()
                await self._proc.aclose()


class Pollers(_ClientProcess):
    """``clients`` MCP clients of one server in a process of their own (at ``nice``), connected and warmed up
    once, polling ``tool`` in timed windows.

    With ``server_pid``, a window also reports the server process's CPU time per call (its children, the
    worker, not included) and its event loop's wait for a core per call; every window reports the clients'
    process's own CPU per call, the clients' share."""

    def __init__(self, url: str, tool: str, args: dict[str, Any], clients: int = 20, hz: float = 10.0,
                 server_pid: int | None = None, nice: int = 0) -> None:
        super().__init__({"role": "pollers", "url": url, "tool": tool, "args": args, "clients": clients, "hz": hz},
                         nice)
        self.server_pid = server_pid

    async def window(self, seconds: float,
                     during: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> dict[str, Any]:
        """Every client calls at ``hz`` for ``seconds``; ``during`` (if given) runs alongside, its result under
        "during"."""
        result: dict[str, Any] = {}
        extra: dict[str, Any] = {}

        async def polling() -> None:
            result.update(await self._ask({"seconds": seconds}))

        async def side() -> None:
            assert during is not None
            extra["during"] = await during()

        server_cpu, server_wait = _cpu_s(self.server_pid), _wait_s(self.server_pid)
        with anyio.fail_after(seconds + 120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(polling)
                if during is not None:
                    tg.start_soon(side)
        if self.server_pid is not None:
            calls = max(1, result["calls"])
            extra["server_cpu_ms"] = round((_cpu_s(self.server_pid) - server_cpu) * 1000 / calls, 2)
            # How long the event loop was ready to run but had no core, per call: what the rest of the machine
            # costs the server.
            extra["server_wait_ms"] = round((_wait_s(self.server_pid) - server_wait) * 1000 / calls, 2)
        return {**result, **extra}


class AcceptProbe(_ClientProcess):
    """``accepts`` in a process of its own, as another agent's client would be: its latency is the server's
    answer under the pollers' load, not a wait for the pollers' event loop. ``async with`` starts it and waits
    for its warm-up (one untimed accept); each ``run`` makes ``count`` timed accepts."""

    def __init__(self, url: str, args: dict[str, Any], count: int, interval: float,
                 floor_url: str | None = None) -> None:
        super().__init__({"role": "accepts", "url": url, "args": args, "count": count, "interval": interval,
                          "floor_url": floor_url})

    async def run(self) -> dict[str, Any]:
        return await self._ask({})


async def _poll_window(clients: list[Client], tool: str, args: dict[str, Any], hz: float,
                       seconds: float) -> dict[str, Any]:
    """The pollers' side of a window: every client calls ``tool`` at ``hz`` for ``seconds``, each waiting for
    its reply before the next call (latencies, errors, a sample of result sizes, this process's CPU per call)."""
    latencies: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []

    async def one(client: Client) -> None:
        deadline = time.monotonic() + seconds
        # Independent agents are not in step: each starts at its own point of the polling period.
        await anyio.sleep(random.uniform(0, 1 / hz))
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                res = await client.call_tool(tool, args)
                if res.is_error:
                    errors.append(getattr(res.content[0], "text", "?")[:200])
                if n % 10 == 0:  # the size of a sample of results (serialising each one is work too)
                    sizes.append(len(res.model_dump_json(by_alias=True)))
            except Exception as exc:  # any transport error counts
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            took = time.perf_counter() - started
            latencies.append(took)
            n += 1
            await anyio.sleep(max(0.0, 1 / hz - took))

    cpu = time.process_time()
    with gc_paused():
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(one, client)
    return {
        "calls": len(latencies), "errors": len(errors), "first_errors": errors[:3], **percentiles(latencies),
        "mean_bytes": int(statistics.mean(sizes)) if sizes else 0,
        "client_cpu_ms": round((time.process_time() - cpu) * 1000 / max(1, len(latencies)), 2),
        "nice": os.getpriority(os.PRIO_PROCESS, 0), "latencies": latencies,
    }


async def accepts(client: Client, args: dict[str, Any], count: int, interval: float,
                  floor: Client | None = None) -> dict[str, Any]:
    """``count`` generate_ad submissions with wait_seconds=0, one every ``interval`` s: how long an accept takes.

    With ``floor`` (a client of the do-nothing server), each accept is followed by the same arguments sent to
    its ``accept`` tool, which does nothing: what this client, the machine and the SDK add to any such call."""
    latencies: list[float] = []
    floor_latencies: list[float] = []
    errors: list[str] = []
    job_ids: list[str] = []
    call = {**args, "wait_seconds": 0}
    for _ in range(count):
        started = time.perf_counter()
        try:
            res = await client.call_tool("generate_ad", call)
            if res.is_error:
                errors.append(getattr(res.content[0], "text", "?")[:200])
            else:
                job_ids.append(res.structured_content["job_id"])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        took = time.perf_counter() - started
        latencies.append(took)
        if floor is not None:
            floor_started = time.perf_counter()
            try:
                await floor.call_tool("accept", call)
                floor_latencies.append(time.perf_counter() - floor_started)
            except Exception as exc:
                errors.append(f"floor {type(exc).__name__}: {exc}"[:200])
            took = time.perf_counter() - started
        await anyio.sleep(max(0.0, interval - took))
    return {"calls": len(latencies), "errors": len(errors), "first_errors": errors[:3],
            "latencies": latencies, "floor_latencies": floor_latencies, "job_ids": job_ids}


async def _child_main() -> None:
    """A client process (``_ClientProcess``): its config on stdin, "ready" after the warm-up, then one JSON line
    per command: a polling window (``{"seconds": s}``) or a run of accepts."""
    stdin = anyio.wrap_file(sys.stdin)
    config = json.loads(await stdin.readline())
    run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    async with AsyncExitStack() as stack:
        if config["role"] == "pollers":
            clients = [await stack.enter_async_context(Client(config["url"], mode="legacy"))
                       for _ in range(config["clients"])]
            async with anyio.create_task_group() as tg:  # untimed warm-up (tool listing, output-schema validator)
                for c in clients:
                    tg.start_soon(c.call_tool, config["tool"], config["args"])

            async def run(command: dict[str, Any]) -> dict[str, Any]:
                return await _poll_window(clients, config["tool"], config["args"], config["hz"], command["seconds"])
        else:
            client = await stack.enter_async_context(Client(config["url"], mode="legacy"))
            await client.call_tool("generate_ad", {**config["args"], "wait_seconds": 0})
            floor = None
            if config.get("floor_url"):
                floor = await stack.enter_async_context(Client(config["floor_url"], mode="legacy"))
                await floor.call_tool("accept", {**config["args"], "wait_seconds": 0})

            async def run(command: dict[str, Any]) -> dict[str, Any]:
                with gc_paused():
                    return await accepts(client, config["args"], config["count"], config["interval"], floor)
        print("ready", flush=True)
        while line := (await stdin.readline()).strip():
            print(json.dumps(await run(json.loads(line))), flush=True)


@contextmanager
def noop_server() -> Iterator[tuple[str, int]]:
    """The do-nothing MCP server (noop_server.py) in its own process; yields its MCP URL and pid."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.noop_server", "--port", str(port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the do-nothing server did not start") from None
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def _settle(http: httpx.AsyncClient, job_ids: list[str], within_s: float) -> list[str]:
    with anyio.move_on_after(within_s):
        for job_id in job_ids:
            while True:
                if (await http.get(f"/status/{job_id}")).json()["status"] not in ("pending", "running"):
                    break
                await anyio.sleep(0.1)
    return [(await http.get(f"/status/{j}")).json()["status"] for j in job_ids]


async def _server_accepts(http: httpx.AsyncClient, since: int = 0) -> list[dict[str, Any]]:
    """The server's own timings of accepts filed after ``since`` ([] from a server without the clock)."""
    r = await http.get("/debug/accepts", params={"since": since})
    return list(r.json()["accepts"]) if r.status_code == 200 else []


def _server_summary(timings: list[dict[str, Any]]) -> dict[str, Any]:
    """p50 / p99 / max of each segment (and the total) of the server's accept timings."""
    if not timings:
        return {"calls": 0}
    keys = [k for k in timings[0] if k != "seq"]
    return {"calls": len(timings), **{k: percentiles([t[k] / 1000 for t in timings]) for k in keys}}


def _phase(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """A phase's windows summed up: percentiles over all its calls (each window keeps its own), totals."""
    pooled = [x for w in windows for x in w.pop("latencies")]
    return {
        **percentiles(pooled),
        "calls": sum(w["calls"] for w in windows), "errors": sum(w["errors"] for w in windows),
        "mean_bytes": int(statistics.mean(w["mean_bytes"] for w in windows)),
        "client_cpu_ms": round(statistics.median(w["client_cpu_ms"] for w in windows), 2),
        **({k: round(statistics.median(w[k] for w in windows), 2) for k in ("server_cpu_ms", "server_wait_ms")}
           if all("server_cpu_ms" in w for w in windows) else {}),
        "windows": windows,
    }


@dataclass
class _BusyTally:
    """The busy phase as seen with the pollers at one priority: adgen's windows and the do-nothing server's
    alternating with them, and the accepts timed in each."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    floor_windows: list[dict[str, Any]] = field(default_factory=list)
    accept: list[float] = field(default_factory=list)  # adgen's accepts while adgen is polled
    accept_floor: list[float] = field(default_factory=list)  # the do-nothing accept right after each (idle)
    polled_floor: list[float] = field(default_factory=list)  # the do-nothing accept while it is polled
    server: list[dict[str, Any]] = field(default_factory=list)  # adgen's own timings of its accepts
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def summary(self, suffix: str) -> dict[str, Any]:
        b, fb = _phase(self.windows), _phase(self.floor_windows)
        return {
            f"busy{suffix}": b, f"floor_busy{suffix}": fb,
            f"busy{suffix}_p99_ratio": round(b["p99_ms"] / fb["p99_ms"], 2),
            f"worker_busy_windows{suffix}": sum(w["worker_busy_at_end"] for w in self.windows),
            f"accept{suffix}": {**_latency_summary(self.accept), "errors": self.error_count,
                                "first_errors": self.errors[:3]},
            # The same arguments to the do-nothing server's accept tool, from the same process, right after each
            # accept: what the client, the machine and the SDK add to such a call whatever the server does.
            f"accept_floor{suffix}": _latency_summary(self.accept_floor),
            # The do-nothing server's accept while the 20 clients poll it: the SDK's floor under the same load.
            f"accept_floor_polled{suffix}": _latency_summary(self.polled_floor),
            # The same accepts as the server spent them (GET /debug/accepts), by segment.
            f"accept_server{suffix}": _server_summary(self.server),
        }


async def status_under_load(base: str, product_b64: str, *, jobs: int = 6, seconds: float = 5.0, rounds: int = 3,
                            accept_count: int = 40, clients: int = 20, hz: float = 10.0,
                            server_pid: int | None = None, yielding: bool = True) -> dict[str, Any]:
    """The load figures of the architecture issue, on a running adgen HTTP server at ``base``.

    ``clients`` MCP clients poll get_status at ``hz`` in windows of ``seconds``, alternating with the same
    polling of the do-nothing server (noop_server.py), ``rounds`` times in each phase:

    * busy: while the worker runs ``jobs`` 1024 px jobs, and ``accept_count`` generate_ad accepts
      (wait_seconds=0, 256 px) from another process are spread over each window (the do-nothing windows
      too: the accepts still go to adgen, so the machine carries the same work in both; the accept
      latencies reported are those measured while adgen itself was being polled). Each accept is followed
      by the same call to the do-nothing server's ``accept`` tool: the floor of such a call, measured while
      that server is idle (adgen's windows) and while it is the one the 20 clients poll (its own windows,
      the same load as adgen's accepts see). There are enough accepts that their p99 is not just the slowest
      one. With ``yielding``, each round runs twice: with the pollers' process at the server's priority (the
      keys as named), then at ``YIELDING_NICE`` (the same keys with ``_yielding``): the same requests, but
      the clients' own CPU, which on a real deployment is not the server's machine's, gives way to the server;
    * idle: once the worker is idle again, get_status with its preview (the default) and without
      (include_preview=false), each alternating with the do-nothing server (pollers at the server's priority).

    ``poll_gate_busy`` is what the server's poll gate did up to the end of the busy phase (GET /debug/accepts).
    Ratios are a phase's p99 over the p99 of the do-nothing windows alternating with it (percentiles over
    all the calls of a phase's windows). The accepted jobs are stopped after the busy phase (they exist to be
    accepted); the server needs room for them in its queue and its job list (ADGEN_QUEUE_MAX, ADGEN_KEEP_JOBS).
    """
    mcp = base + "/mcp"
    args = {"job_id": ""}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        job_ids = []
        for i in range(jobs):
            r = await http.post("/generate", json={"product_image": product_b64, "text_content": f"load {i}",
                                                   "seed": i})
            job_ids.append(r.json()["job_id"])
        args["job_id"] = job_ids[0]
        accept_args = {"product_image": product_b64, "text_content": "accept", "width": 256, "height": 256}
        priorities = {"": 0, "_yielding": YIELDING_NICE} if yielding else {"": 0}
        tallies = {suffix: _BusyTally() for suffix in priorities}
        idle: list[dict[str, Any]] = []
        idle_lean: list[dict[str, Any]] = []
        floor_idle: list[dict[str, Any]] = []
        accepted: list[str] = []
        with noop_server() as (noop_url, noop_pid):
            floor_pid = noop_pid if server_pid is not None else None
            lean_args = {**args, "include_preview": False}
            async with AsyncExitStack() as stack:
                pollers = {suffix: (await stack.enter_async_context(
                                        Pollers(mcp, "get_status", args, clients, hz, server_pid, nice)),
                                    await stack.enter_async_context(
                                        Pollers(noop_url, "noop", args, clients, hz, floor_pid, nice)))
                           for suffix, nice in priorities.items()}
                lean = await stack.enter_async_context(Pollers(mcp, "get_status", lean_args, clients, hz, server_pid))
                probe = await stack.enter_async_context(
                    AcceptProbe(mcp, accept_args, accept_count, seconds / (accept_count + 1), floor_url=noop_url))
                for _ in range(rounds):
                    for suffix, (adgen, floor) in pollers.items():
                        tally = tallies[suffix]
                        seen = await _server_accepts(http)
                        w = await adgen.window(seconds, during=probe.run)
                        w["worker_busy_at_end"] = (await http.get("/health")).json()["running_job"] is not None
                        tally.server += await _server_accepts(http, seen[-1]["seq"] if seen else 0)
                        acc = w.pop("during")
                        tally.accept += acc["latencies"]
                        tally.accept_floor += acc["floor_latencies"]
                        tally.errors += acc["first_errors"]
                        tally.error_count += acc["errors"]
                        accepted += acc["job_ids"]
                        tally.windows.append(w)
                        # The same accepts go to adgen while the do-nothing server is polled: both windows see
                        # the same work on the machine, only the polled server differs.
                        w = await floor.window(seconds, during=probe.run)
                        acc = w.pop("during")
                        accepted += acc["job_ids"]
                        tally.polled_floor += acc["floor_latencies"]
                        tally.floor_windows.append(w)
                # What the poll gate did up to now (since= past every accept: its counts without the accepts).
                gate = {k: v for k, v in (await http.get("/debug/accepts", params={"since": 2**62})).json().items()
                        if k.startswith("polls")}
                for job_id in accepted:  # queued ones leave at once; a running one stops at its next safe point
                    await http.post(f"/stop/{job_id}")
                statuses = await _settle(http, job_ids + accepted, 300)
                adgen, floor = pollers[""]
                for _ in range(rounds):
                    idle.append(await adgen.window(seconds))
                    floor_idle.append(await floor.window(seconds))
                    idle_lean.append(await lean.window(seconds))
                    floor_idle.append(await floor.window(seconds))
    il, fi, ln = _phase(idle), _phase(floor_idle), _phase(idle_lean)
    result: dict[str, Any] = {"idle": il, "idle_no_preview": ln, "floor_idle": fi, "yielding_nice": YIELDING_NICE}
    for suffix, tally in tallies.items():
        result |= tally.summary(suffix)
    return {
        **result, "job_statuses": statuses[:jobs], "accepted": len(accepted), "poll_gate_busy": gate,
        "idle_p99_ratio": round(il["p99_ms"] / fi["p99_ms"], 2),
        "idle_no_preview_p99_ratio": round(ln["p99_ms"] / fi["p99_ms"], 2),
    }


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="a client process of the load harness (config on stdin)")
    cli.add_argument("--nice", type=int, default=0)
    # Before the first thread starts: on Linux a thread's priority is its own, and new threads inherit it.
    os.nice(cli.parse_args().nice)
    anyio.run(_child_main)
