"""Where a generate_ad accept's time goes inside the server: a cheap, always-on debug metric.

``ClockMiddleware`` stamps each HTTP request's arrival in its ASGI scope and, for an MCP POST, the
moment its body has been read (by the poll gate, which looks at each body first). The generate_ad tool
reaches the same scope through its Starlette request and adds marks as the accept goes (tool entered,
job accepted, status and result built). When the response's bytes are handed to the server (over SSE:
the event that carries the result, which is all the client waits for), the middleware files the marks
of that request in a ring buffer, read with GET /debug/accepts (the load benchmark reports them).
Requests the tool never marks (every get_status poll) cost two clock reads and nothing else.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ARRIVED = "adgen.arrived"  # scope key: perf_counter() when the request reached the app
READ = "adgen.read"  # scope key: when the transport finished reading the body
MARKS = "adgen.marks"  # scope key: [(segment, perf_counter(), thread_time()), ...] added by the tool

# The segments of an accept, in order; each runs from the previous mark to its own.
SEGMENTS = {
    "queued_ms": "arrival until its body has been read (waiting for the event loop)",
    "dispatch_ms": "body read until the tool runs (JSON-RPC parsing, session routing, argument validation)",
    "accept_ms": "the tool's accept: arguments checked, photo checked, job recorded and queued",
    "accept_cpu_ms": "CPU time of the event loop's thread in accept_ms (less than it: the thread waited for "
                     "a worker thread, or the OS ran other processes; a large photo is decoded in a thread)",
    "status_ms": "the job's status (and the progress notification, when the client asked for them)",
    "result_ms": "the status shaped as a tool result (text, links, structured content)",
    "reply_ms": "the result validated against the output schema, serialised and handed to the server (one JSON "
                "body: mcp_server/quiet_replies.py)",
}


class AcceptTiming(BaseModel):
    seq: int = Field(description="Increases by one per accept filed; ask for those after one with ?since=")
    total_ms: float = Field(description="From the request's arrival to the result's bytes handed to the server")
    queued_ms: float = 0.0
    dispatch_ms: float = 0.0
    accept_ms: float = 0.0
    accept_cpu_ms: float = 0.0
    status_ms: float = 0.0
    result_ms: float = 0.0
    reply_ms: float = 0.0


class AcceptTimings(BaseModel):
    """The latest generate_ad accepts over MCP (wait_seconds=0) as the server spent them, oldest first."""

    segments: dict[str, str] = Field(default_factory=lambda: dict(SEGMENTS))
    accepts: list[AcceptTiming]
    polls: int = Field(default=0, description="Status polls through the poll gate since the server started "
                                      "(mcp_server/poll_gate.py)")
    polls_held: int = Field(default=0, description="Of them, polls that waited at the gate for their turn")
    polls_held_ms: float = Field(default=0.0, description="The mean wait of a held poll")


class AcceptClock:
    """A ring buffer of the last ``keep`` accepts' timings."""

    def __init__(self, keep: int = 1000) -> None:
        self._items: deque[AcceptTiming] = deque(maxlen=keep)
        self._seq = itertools.count(1)

    def file(self, scope: Scope, ended: float) -> None:
        marks: list[tuple[str, float, float]] = scope[MARKS]
        if not any(m[0] == "result_ms" for m in marks):  # refused, or not an accept: nothing to attribute
            return
        arrived = scope[ARRIVED]
        values: dict[str, Any] = {"total_ms": round((ended - arrived) * 1000, 2)}
        read = scope.get(READ, arrived)
        values["queued_ms"] = round((read - arrived) * 1000, 2)
        previous, previous_cpu = read, 0.0
        for name, at, cpu in [*marks, ("reply_ms", ended, 0.0)]:
            values[name] = round((at - previous) * 1000, 2)
            if name == "accept_ms":
                values["accept_cpu_ms"] = round((cpu - previous_cpu) * 1000, 2)
            previous, previous_cpu = at, cpu
        self._items.append(AcceptTiming(seq=next(self._seq), **values))

    def since(self, seq: int = 0) -> AcceptTimings:
        return AcceptTimings(accepts=[t for t in self._items if t.seq > seq])


CLOCK = AcceptClock()


def mark(request: Any, segment: str) -> None:
    """End ``segment`` now for the accept carried by this Starlette request (None: stdio, nothing kept)."""
    scope = getattr(request, "scope", None)
    if scope is not None and ARRIVED in scope:
        scope.setdefault(MARKS, []).append((segment, time.perf_counter(), time.thread_time()))


class ClockMiddleware:
    """Stamps arrival and body-read times in the scope; files the tool's marks when the response ends."""

    def __init__(self, app: ASGIApp, clock: AcceptClock = CLOCK) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        scope[ARRIVED] = time.perf_counter()

        async def timed_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                scope[READ] = time.perf_counter()
            return message

        filed = False

        async def timed_send(message: Message) -> None:
            nonlocal filed
            await send(message)
            # The first bytes after the tool's last mark are the result (an SSE stream ends after it).
            if not filed and message["type"] == "http.response.body" and message.get("body") \
                    and any(m[0] == "result_ms" for m in scope.get(MARKS, ())):
                filed = True
                self.clock.file(scope, time.perf_counter())

        await self.app(scope, timed_receive, timed_send)
