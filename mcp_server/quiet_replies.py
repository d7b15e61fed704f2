"""Streamable HTTP: a request that streams nothing is answered with one JSON body, not an SSE stream.

The MCP spec lets the server answer each POSTed request either way, and the SDK's own transport for the
2026-07-28 protocol already decides per request: JSON unless the handler emits something before it returns.
For the 2025 protocols every client still speaks, the SDK picks one way per server: SSE for every request
(so progress and sampling can stream), at a price paid by every poll: an sse-starlette response with its
own task group (sender, ping, disconnect listener), and three more hand-offs between tasks before the
result's bytes leave. Under 20 clients polling `get_status` at 10 Hz that machinery was most of the
server's loop work, and every other call (a `generate_ad` accept) queued behind it (docs/benchmarks.md).

``QuietReplyTransport`` makes the 2025 transport choose per request too. It hands the request to the
session as the SDK does, then waits for the first message the session routes to it:
- the request's own response (a poll, an accept with ``wait_seconds=0``, a listing): sent as JSON;
- anything else first (a progress notification, a sampling request to the client): the reply becomes the
  SDK's own SSE stream, led by that message, exactly as it would have been;
- nothing within ``SSE_AFTER_S`` (a long wait with no progress asked for): SSE as well, so the stream's
  keep-alive pings hold the connection open behind proxies with idle timeouts.
Only plain requests take this path; initialisation, notifications, resumable sessions (an event store)
and anything malformed go to the SDK's own code, which also writes their errors.
"""

from __future__ import annotations

from functools import partial
from http import HTTPStatus
from typing import Any

import anyio
import pydantic_core
from mcp.server.streamable_http import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_SSE,
    MCP_PROTOCOL_VERSION_HEADER,
    MCP_SESSION_ID_HEADER,
    REQUEST_STREAM_BUFFER_SIZE,
    EventMessage,
    StreamableHTTPServerTransport,
    check_accept_headers,
)
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

# A request silent this long switches to SSE (keep-alive pings); the SDK's 2026 transport waits as long.
SSE_AFTER_S = 15.0


class QuietReplyTransport(StreamableHTTPServerTransport):
    """The SDK's stateful transport, answering requests that stream nothing as plain JSON (module docstring)."""

    async def _handle_post_request(self, scope: Scope, request: Request, receive: Receive, send: Send) -> None:
        message = await self._plain_request(request)
        if message is None:
            await super()._handle_post_request(scope, request, receive, send)
            return
        if not await self._validate_request_headers(request, send):  # session and protocol version (SDK's check)
            return
        request_id = str(message.id)
        writer = self._read_stream_writer
        assert writer is not None  # a session's requests come after connect()
        self._request_streams[request_id] = anyio.create_memory_object_stream[EventMessage](REQUEST_STREAM_BUFFER_SIZE)
        reader = self._request_streams[request_id][1]
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER, DEFAULT_NEGOTIATED_VERSION)
        try:
            await writer.send(self._create_session_message(message, request, request_id, version))
            first: EventMessage | None = None
            with anyio.move_on_after(SSE_AFTER_S):
                first = await reader.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            # The session ended with the request in flight (the SDK's JSON mode answers the same way).
            await self._clean_up_memory_streams(request_id)
            await self._create_error_response("Session terminated before the request completed",
                                              HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR)(scope, receive, send)
            return
        if first is not None and isinstance(first.message, JSONRPCResponse | JSONRPCError):
            await self._clean_up_memory_streams(request_id)
            await self._create_json_response(first.message)(scope, receive, send)
            return
        await self._stream(request_id, reader, first, scope, receive, send)

    async def _plain_request(self, request: Request) -> JSONRPCRequest | None:
        """The POST's request when it may be answered quietly; None sends it down the SDK's own path."""
        if self.is_json_response_enabled or self._event_store is not None:
            return None  # JSON already, or resumable streams that must start with a priming event
        accepts_json, accepts_sse = check_accept_headers(request)
        if not (accepts_json and accepts_sse) or not request.headers.get("content-type", "").lower().startswith(
                CONTENT_TYPE_JSON):
            return None
        body = await request.body()  # Starlette keeps it: the SDK's path reads the same bytes again
        try:
            message = jsonrpc_message_adapter.validate_python(pydantic_core.from_json(body), by_name=False)
        except (ValueError, ValidationError):
            return None
        if not isinstance(message, JSONRPCRequest) or message.method == "initialize":
            return None
        return message

    async def _stream(self, request_id: str, reader: Any, first: EventMessage | None,
                      scope: Scope, receive: Receive, send: Send) -> None:
        """Reply as the SDK would have from the start: its SSE writer, led by the message already taken."""
        sse_writer, sse_reader = anyio.create_memory_object_stream[dict[str, Any]](0)
        self._sse_stream_writers[request_id] = sse_writer
        lead = self._create_event_data(first) if first is not None else None
        headers = {"Cache-Control": "no-cache, no-transform", "Connection": "keep-alive",
                   "Content-Type": CONTENT_TYPE_SSE,
                   **({MCP_SESSION_ID_HEADER: self.mcp_session_id} if self.mcp_session_id else {})}
        response = EventSourceResponse(
            content=sse_reader, headers=headers,
            data_sender_callable=partial(self._run_sse_writer, request_id, sse_writer, reader, lead),
        )
        try:
            await response(scope, receive, send)
        finally:
            await sse_reader.aclose()


class QuietReplySessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, opening each session on a ``QuietReplyTransport``."""

    def _admit_session(self, requestor: Any) -> StreamableHTTPServerTransport | None:
        transport = super()._admit_session(requestor)
        if transport is not None and type(transport) is StreamableHTTPServerTransport:
            transport.__class__ = QuietReplyTransport  # same state, one method differs
        return transport


def quiet_replies(server: Any) -> None:
    """Make the streamable HTTP app just built by ``server`` (an MCPServer) answer quiet requests as JSON."""
    manager = server._lowlevel_server._session_manager
    if type(manager) is not StreamableHTTPSessionManager:
        raise RuntimeError(f"unexpected session manager {type(manager).__name__}: update mcp_server/quiet_replies.py")
    manager.__class__ = QuietReplySessionManager

