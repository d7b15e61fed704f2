"""Status polls take turns and give way to other requests (mcp_server/poll_gate.py).

A real uvicorn server on loopback with the SDK's MCPServer behind the gate, spoken to with the SDK's own
client; the tools stand in for adgen's (a submit that the test holds open, a poll that can be held too), so
which request the gate lets in when is decided by the test, not by timing. The figures this buys under load
are in docs/benchmarks.md; the load test checks that the adgen server's gate holds polls there.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from starlette.types import Message, Receive, Scope, Send

from mcp_server import quiet_replies
from mcp_server.poll_gate import GateCounts, PollGate, is_poll
from tests.helpers import serving, wait_until

pytestmark = pytest.mark.anyio


@dataclass
class Tools:
    """The tools' side of the server: what ran, in order, and events the test sets to let a call finish."""

    entered: list[str] = field(default_factory=list)
    release: dict[str, anyio.Event] = field(default_factory=dict)

    def gate(self, name: str) -> anyio.Event:
        return self.release.setdefault(name, anyio.Event())

    async def seen(self, name: str) -> None:
        await wait_until(lambda: name in self.entered, 10, f"the tool call {name!r}", interval=0.005)


def _server(tools: Tools) -> MCPServer:
    server = MCPServer("gated")

    @server.tool()
    async def generate_ad(name: str) -> str:
        tools.entered.append(name)
        await tools.gate(name).wait()
        return name

    @server.tool()
    async def get_status(job_id: str, wait_seconds: float = 0.0) -> str:
        tools.entered.append(job_id)
        if job_id.startswith("held"):
            await tools.gate(job_id).wait()
        return job_id

    return server


@asynccontextmanager
async def gated(tools: Tools, hold_s: float, counts: GateCounts) -> AsyncIterator[Client]:
    server = _server(tools)
    app = server.streamable_http_app(host="127.0.0.1")
    quiet_replies.quiet_replies(server)
    async with serving(PollGate(app, hold_s=hold_s, counts=counts)) as base, \
            Client(f"{base}/mcp", mode="legacy") as client:
        yield client


async def test_polls_wait_while_a_submit_is_answered() -> None:
    tools, counts = Tools(), GateCounts()
    async with gated(tools, hold_s=30, counts=counts) as client, anyio.create_task_group() as tg:
        done: list[str] = []

        async def call(tool: str, **args: object) -> None:
            result = await client.call_tool(tool, args)
            done.append(result.content[0].text)

        tg.start_soon(lambda: call("generate_ad", name="submit"))
        await tools.seen("submit")
        tg.start_soon(lambda: call("get_status", job_id="poll"))
        await anyio.sleep(0.3)
        assert tools.entered == ["submit"]  # the poll is at the gate, the SDK has not seen it
        assert counts.polls == 1 and counts.held == 1
        tools.gate("submit").set()
        await tools.seen("poll")
    assert done == ["submit", "poll"]
    assert counts.held_s >= 0.2  # it waited about as long as the submit was held


async def test_polls_take_turns_and_a_waiting_status_is_no_poll() -> None:
    tools, counts = Tools(), GateCounts()
    async with gated(tools, hold_s=30, counts=counts) as client, anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.call_tool("get_status", {"job_id": "held-1"}))
        await tools.seen("held-1")
        tg.start_soon(lambda: client.call_tool("get_status", {"job_id": "poll-2"}))
        await anyio.sleep(0.2)
        # One poll in at a time; a get_status that waits for its job is not a poll and goes straight in.
        await client.call_tool("get_status", {"job_id": "waiting", "wait_seconds": 5})
        assert tools.entered == ["held-1", "waiting"]
        tools.gate("held-1").set()
        await tools.seen("poll-2")
    assert tools.entered == ["held-1", "waiting", "poll-2"] and counts.polls == 2 and counts.held == 1


async def test_nothing_holds_polls_longer_than_the_hold() -> None:
    """A submit that waits for its job (or is stuck) stops holding polls after hold_s, and a poll stuck in
    the SDK stops taking the one slot: the gate never stops traffic, it only orders it."""
    tools, counts = Tools(), GateCounts()
    async with gated(tools, hold_s=0.3, counts=counts) as client, anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.call_tool("generate_ad", {"name": "waits for its job"}))
        await tools.seen("waits for its job")
        with anyio.fail_after(5):
            assert (await client.call_tool("get_status", {"job_id": "poll"})).content[0].text == "poll"
        tg.start_soon(lambda: client.call_tool("get_status", {"job_id": "held-stuck"}))
        await tools.seen("held-stuck")
        with anyio.fail_after(5):
            assert (await client.call_tool("get_status", {"job_id": "poll-2"})).content[0].text == "poll-2"
        tools.gate("waits for its job").set()
        tools.gate("held-stuck").set()
    assert counts.held == 2  # both polls waited, and both got through while the others were still in


async def test_a_poll_cancelled_at_the_gate_leaves_nothing_behind() -> None:
    """Driven as a bare ASGI app: a poll waiting for its turn is cancelled (its client went away)."""
    finish = anyio.Event()
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((await receive())["body"])
        await finish.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    gate = PollGate(app, hold_s=30, counts=GateCounts())

    async def request(body: bytes, scope: anyio.CancelScope | None = None) -> None:
        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            pass

        with scope or anyio.CancelScope():
            await gate({"type": "http", "method": "POST", "path": "/mcp"}, receive, send)

    waiting = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(request, rpc("tools/call", {"name": "generate_ad", "arguments": {}}))
        await wait_until(lambda: seen, 5, "the submit to reach the app", interval=0.005)
        tg.start_soon(request, rpc("tools/call", {"name": "get_status", "arguments": {}}), waiting)
        await wait_until(lambda: gate._waiting, 5, "the poll to wait at the gate", interval=0.005)
        waiting.cancel()
        # The poll leaves no waiter behind and takes no slot.
        await wait_until(lambda: not gate._waiting and not gate._polls, 5, "the cancelled poll to leave no trace")
        finish.set()
    assert len(seen) == 1 and not gate._others


def rpc(method: str, params: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


@pytest.mark.parametrize(("body", "poll"), [
    (rpc("tools/call", {"name": "get_status", "arguments": {"job_id": "a"}}), True),
    (rpc("tools/call", {"name": "get_status", "arguments": {"job_id": "a", "wait_seconds": 0}}), True),
    (rpc("tools/call", {"name": "get_status", "arguments": {"job_id": "a", "wait_seconds": 9}}), False),
    (rpc("tasks/get", {"taskId": "t"}), True),
    (rpc("tools/call", {"name": "generate_ad", "arguments": {}}), False),
    (rpc("initialize", {}), False),
    (b"[" + rpc("tasks/get", {}) + b"]", False),  # a batch: not a lone poll
    (rpc("tools/call", "get_status"), False),
    (b"{not json", False),
    (rpc("tasks/get", {"pad": "x" * 5000}), False),  # too big for a poll: never parsed
])
def test_what_counts_as_a_poll(body: bytes, poll: bool) -> None:
    assert is_poll(body) is poll
