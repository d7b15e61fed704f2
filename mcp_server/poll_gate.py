"""Status polls take turns, and give way to the requests that do something.

One event loop answers every MCP client. A request hops between the SDK's tasks five or six times (HTTP
parsing, the transport, the session's dispatcher, the tool, serialising, the reply), and at each hop it waits
behind every callback already in the loop's ready queue. Under 20 agents polling `get_status` at 10 Hz with
the worker busy, polls were slow enough (~2.5 ms of CPU each, on cores shared with the worker) that a dozen
were in flight at any moment, so a `generate_ad` accept waited behind a dozen polls at each of its hops.

``PollGate`` sits in front of the MCP endpoint, before the SDK has done any work for a request:
- polls (a `get_status` that does not wait, `tasks/get`) go in ``POLL_SLOTS`` at a time, in arrival order;
  the loop is one thread, so polls in flight together are not answered sooner, only interleaved;
- while any other request is being answered (a submit, a stop, a listing, a session opening), no poll goes
  in: that request's hops wait behind at most the polls already in.
A request stops counting once its reply has started, or after ``HOLD_S`` (then it waits for something, such
as its job: holding polls would only delay them), and no poll waits longer than ``HOLD_S`` at the gate, so a
stuck request or a flood of polls cannot starve anything: the gate then only stops ordering.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field

import anyio
import pydantic_core
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Reading a job's state without waiting: the tool (its wait_seconds absent or 0) and the tasks extension.
POLL_TOOLS = frozenset({"get_status"})
POLL_METHODS = frozenset({"tasks/get"})
POLL_SLOTS = 1
# Far longer than a plain request takes under load (p99 ~30 ms); short enough not to matter to a poll.
HOLD_S = 0.1
# A poll's body is a few hundred bytes; a larger one is never parsed to classify it.
POLL_MAX_BYTES = 4096


def is_poll(body: bytes) -> bool:
    """Whether this JSON-RPC body only reads a job's state, without waiting for it to change."""
    if len(body) > POLL_MAX_BYTES:
        return False
    try:
        message = pydantic_core.from_json(body)
    except ValueError:
        return False
    if not isinstance(message, dict):  # a batch, or not JSON-RPC at all: the SDK answers it
        return False
    method, params = message.get("method"), message.get("params")
    if method in POLL_METHODS:
        return True
    if method != "tools/call" or not isinstance(params, dict) or params.get("name") not in POLL_TOOLS:
        return False
    arguments = params.get("arguments")
    return not (isinstance(arguments, dict) and arguments.get("wait_seconds"))


@dataclass
class GateCounts:
    """What the gate has done since the server started (GET /debug/accepts reports it)."""

    polls: int = 0  # polls through the gate
    held: int = 0  # of them, polls that waited at it
    held_s: float = 0.0  # their waits, in all

    @property
    def mean_held_ms(self) -> float:
        return round(self.held_s * 1000 / self.held, 2) if self.held else 0.0


COUNTS = GateCounts()


@dataclass
class _Waiter:
    key: int
    admitted: anyio.Event = field(default_factory=anyio.Event)


class PollGate:
    """ASGI middleware: polls in turn, behind any other request in flight (module docstring)."""

    def __init__(self, app: ASGIApp, path: str = "/mcp", slots: int = POLL_SLOTS, hold_s: float = HOLD_S,
                 counts: GateCounts = COUNTS) -> None:
        self.app = app
        self.counts = counts
        self.path = path
        self.slots = slots
        self.hold_s = hold_s
        self._keys = itertools.count()
        self._polls: dict[int, float] = {}  # polls in flight -> when each went in
        self._others: dict[int, float] = {}  # other requests in flight -> when each arrived
        self._waiting: deque[_Waiter] = deque()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        # Enough of the body to see what the request is (a poll is small), handed on unchanged.
        messages: list[Message] = []
        size, complete = 0, False
        while not complete and size <= POLL_MAX_BYTES:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            complete = message["type"] != "http.request" or not message.get("more_body", False)
        body = b"".join(m.get("body", b"") for m in messages) if complete else b""

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        key = next(self._keys)
        if complete and is_poll(body):
            await self._enter_poll(key)
            pool = self._polls
        else:
            self._others[key] = time.monotonic()
            pool = self._others

        async def releasing_send(message: Message) -> None:
            if message["type"] == "http.response.start":  # its work is done; only bytes are left to write
                self._leave(pool, key)
            await send(message)

        try:
            await self.app(scope, replay, releasing_send)
        finally:
            self._leave(pool, key)

    def _open(self) -> bool:
        """Whether a poll may go in now (requests past ``hold_s`` no longer count)."""
        stale = time.monotonic() - self.hold_s
        return (not any(since > stale for since in self._others.values())
                and sum(since > stale for since in self._polls.values()) < self.slots)

    async def _enter_poll(self, key: int) -> None:
        self.counts.polls += 1
        arrived = time.monotonic()
        if not self._waiting and self._open():
            self._polls[key] = arrived
            return
        self.counts.held += 1
        waiter = _Waiter(key)
        self._waiting.append(waiter)
        try:
            with anyio.move_on_after(self.hold_s):
                await waiter.admitted.wait()
        except BaseException:  # cancelled while waiting (the client went away): leave no trace
            if waiter.admitted.is_set():
                self._leave(self._polls, key)
            else:
                self._waiting.remove(waiter)
            raise
        finally:
            self.counts.held_s += time.monotonic() - arrived
        if not waiter.admitted.is_set():  # waited long enough: in anyway, out of turn
            self._waiting.remove(waiter)
            self._polls[key] = time.monotonic()

    def _leave(self, pool: dict[int, float], key: int) -> None:
        if pool.pop(key, None) is None:
            return
        while self._waiting and self._open():  # the next polls in arrival order, as many as may go in
            waiter = self._waiting.popleft()
            self._polls[waiter.key] = time.monotonic()
            waiter.admitted.set()
        # Old entries drop out of the dicts when their requests end; nothing else needs sweeping.
