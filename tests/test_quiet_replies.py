"""Streamable HTTP answers a request that streams nothing as one JSON body (mcp_server/quiet_replies.py).

A real uvicorn server on loopback with the SDK's MCPServer, spoken to with raw HTTP (to see the content
types on the wire) and with the SDK's own client (to see that a real client follows both kinds of reply,
progress and sampling included). The adgen server's own wiring is checked in test_transports.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CreateMessageResult, SamplingMessage, TextContent

from mcp_server import quiet_replies
from tests.helpers import serving

pytestmark = pytest.mark.anyio

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _server() -> MCPServer:
    server = MCPServer("quiet")

    @server.tool()
    async def quick() -> str:
        return "ok"

    @server.tool()
    async def silent(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "late"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "half")
        await ctx.report_progress(2, 2, "all")
        return "done"

    @server.tool()
    async def ask(ctx: Context) -> str:
        result = await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(text="a word?"))], max_tokens=5,
            related_request_id=ctx.request_id)
        content = result.content
        return f"client said {content.text}" if isinstance(content, TextContent) else "?"

    return server


@asynccontextmanager
async def serving_quietly() -> AsyncIterator[str]:
    server = _server()
    app = server.streamable_http_app(host="127.0.0.1")
    quiet_replies.quiet_replies(server)
    async with serving(app) as base:
        yield f"{base}/mcp"


async def open_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """initialize + initialized over raw HTTP, as a 2025 client does; the headers for the session's calls."""
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    r = await http.post(url, json=init, headers=HEADERS)
    assert r.status_code == 200, r.text
    headers = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    r = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert r.status_code == 202
    return headers


def call(rid: int, tool: str, args: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": args or {}}
    if token:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def sse_messages(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:") and line[5:].strip()]


async def test_quiet_requests_get_json_and_streaming_ones_sse() -> None:
    async with serving_quietly() as url, httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, url)

        r = await http.post(url, json=call(1, "quick"), headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.headers
        assert r.headers["mcp-session-id"] == headers["mcp-session-id"]
        body = r.json()
        assert body["id"] == 1 and body["result"]["content"][0]["text"] == "ok", body
        r = await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
        assert r.headers["content-type"] == "application/json" and len(r.json()["result"]["tools"]) == 4

        # Progress asked for and sent: the SDK's SSE stream, the notifications first, the result last.
        r = await http.post(url, json=call(3, "chatty", token="t3"), headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.headers
        messages = sse_messages(r.text)
        assert [m.get("method") for m in messages] == ["notifications/progress"] * 2 + [None], messages
        assert [m["params"]["progress"] for m in messages[:2]] == [1, 2]
        assert messages[2]["id"] == 3 and messages[2]["result"]["content"][0]["text"] == "done"

        # A progress token with nothing sent for it is still a quiet request.
        r = await http.post(url, json=call(4, "quick", token="t4"), headers=headers)
        assert r.headers["content-type"] == "application/json" and r.json()["id"] == 4

        # Malformed or unknown-session requests get the SDK's own answers.
        r = await http.post(url, content=b"{not json", headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == -32700
        r = await http.post(url, json=call(5, "quick"), headers={**headers, "mcp-session-id": "f" * 32})
        assert r.status_code == 404


async def test_a_silent_request_turns_into_a_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long call that sends nothing switches to SSE after SSE_AFTER_S: the headers (and keep-alive pings
    behind proxies) flow long before the result does."""
    monkeypatch.setattr(quiet_replies, "SSE_AFTER_S", 0.3)
    async with serving_quietly() as url, httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, url)
        started = time.perf_counter()
        async with http.stream("POST", url, json=call(1, "silent", {"seconds": 2.0}), headers=headers) as r:
            headers_after = time.perf_counter() - started
            assert r.headers["content-type"].startswith("text/event-stream"), r.headers
            body = (await r.aread()).decode()
        done_after = time.perf_counter() - started
        assert headers_after < 1.5 < done_after, (headers_after, done_after)  # headers long before the result
        messages = sse_messages(body)
        assert messages[-1]["id"] == 1 and messages[-1]["result"]["content"][0]["text"] == "late", messages


async def test_the_sdk_client_follows_both_kinds_of_reply() -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, message))

    async def sampling(context: Any, params: Any) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", content=TextContent(text="hello"), model="client-model")

    async with serving_quietly() as url, Client(url, mode="legacy", sampling_callback=sampling) as client:
        quick = await client.call_tool("quick", {})
        assert quick.content[0].text == "ok"
        chatty = await client.call_tool("chatty", {}, progress_callback=on_progress)
        assert chatty.content[0].text == "done" and progress == [(1, "half"), (2, "all")]
        # The server's request to the client leads the reply, which becomes a stream; the client's answer
        # comes back in its own POST and the tool's result ends the stream.
        asked = await client.call_tool("ask", {})
        assert asked.content[0].text == "client said hello", asked
        many = [None] * 20

        async def one(i: int) -> None:
            many[i] = (await client.call_tool("quick", {})).content[0].text

        async with anyio.create_task_group() as tg:  # concurrent quiet requests on one session
            for i in range(20):
                tg.start_soon(one, i)
        assert many == ["ok"] * 20
