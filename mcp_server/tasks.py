"""MCP tasks (SEP-2663, ``io.modelcontextprotocol/tasks``): generate_ad and edit_ad as call-now, fetch-later.

A client that opts in for a request (protocol 2026-07-28) gets a task handle at once instead of
a result after up to a minute of streamed progress; it polls ``tasks/get`` (status, progress and
ETA in ``statusMessage``, and once completed the same result the tool would have returned) and
may ``tasks/cancel``. The task id is the job id, so a task lives as long as its job (the job
store survives restarts) and ``get_status``/REST see the same job. Clients that do not opt in,
and every legacy-protocol client, get today's answers unchanged.

A tasked job never asks for input (``tasks/update`` is refused): it does not borrow the client's
model for its copy. Sampling is deprecated in protocol 2026-07-28 and the tasks client answers only
elicitation in-task, so the copy is designed by the server's own designer (Anthropic key, local
model or template), as for a REST job.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolRequestParams, RequestParams, Result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field

from mcp_server.delivery import Delivery, Transport, status_result
from mcp_server.tools import start_job
from pipeline.jobs import JobManager, JobNotFound
from pipeline.schemas import StatusResponse

TASKS_EXTENSION_ID = "io.modelcontextprotocol/tasks"
TASK_TOOLS = frozenset({"generate_ad", "edit_ad"})
TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]
_STATUS: dict[str, TaskStatus] = {
    "pending": "working", "running": "working", "completed": "completed", "failed": "failed", "stopped": "cancelled",
}
MIN_POLL_MS, MAX_POLL_MS = 500, 5000


class _TaskFields(Result):
    """The flat task shape of SEP-2663 (camelCase on the wire; no ``_meta`` on task results)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    task_id: str = Field(serialization_alias="taskId")
    status: TaskStatus
    created_at: str = Field(serialization_alias="createdAt")
    last_updated_at: str = Field(serialization_alias="lastUpdatedAt")
    ttl_ms: int | None = Field(serialization_alias="ttlMs")
    status_message: str | None = Field(None, serialization_alias="statusMessage")
    poll_interval_ms: int | None = Field(None, serialization_alias="pollIntervalMs")


class CreateTaskResult(_TaskFields):
    """The answer to a tasked tools/call: the task to poll."""

    result_type: Literal["task"] = Field("task", serialization_alias="resultType")


class GetTaskResult(_TaskFields):
    """tasks/get: the task, and its outcome once it has one (the tool's result, or the error)."""

    result_type: Literal["complete"] = Field("complete", serialization_alias="resultType")
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class AckResult(Result):
    result_type: Literal["complete"] = Field("complete", serialization_alias="resultType")


class TaskParams(RequestParams):
    model_config = ConfigDict(populate_by_name=True)
    task_id: str = Field(alias="taskId", max_length=64)


class UpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _message(st: StatusResponse) -> str:
    if st.status == "pending":
        return st.message
    if st.status == "running":
        eta = f", about {max(0, round(st.eta_seconds))} s left" if st.eta_seconds is not None else ""
        return f"{st.progress_percent}% {st.sub_step or st.message}{eta}"
    return st.error or st.message


class AdTasks(Extension):
    """The tasks extension over the job manager: one job, one task."""

    identifier = TASKS_EXTENSION_ID

    def __init__(self, manager: JobManager, transport: Transport) -> None:
        self.manager = manager
        self.transport = transport

    def methods(self) -> tuple[MethodBinding, ...]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return (
            MethodBinding("tasks/get", TaskParams, self._get, modern),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, modern),
            MethodBinding("tasks/update", UpdateParams, self._update, modern),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name not in TASK_TOOLS or not self._opted_in(ctx):
            return await call_next(ctx)
        try:
            # No sampler: the call returns now, so the client's model cannot be asked later in this request.
            accepted = await start_job(self.manager, params.name, dict(params.arguments or {}), None)
        except ToolError:
            return await call_next(ctx)  # the tool itself answers bad arguments, in its own one-line style
        return CreateTaskResult(**self._task_fields(self.manager.status(accepted.job_id, with_metrics=False)))

    @staticmethod
    def _opted_in(ctx: ServerRequestContext[Any, Any]) -> bool:
        """Only a modern-protocol client that declared the extension gets a task (legacy results cannot be tasks)."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return False
        caps = ctx.session.client_capabilities
        extensions = caps.extensions if caps is not None else None
        return bool(extensions) and TASKS_EXTENSION_ID in extensions  # type: ignore[operator]

    def _task_fields(self, st: StatusResponse) -> dict[str, Any]:
        job = self.manager.jobs[st.job_id]
        remaining = st.eta_seconds if st.eta_seconds is not None else 2.0
        poll = int(min(MAX_POLL_MS, max(MIN_POLL_MS, remaining * 250)))  # ~4 polls over what is left
        terminal = _STATUS[st.status] != "working"
        return {
            "task_id": st.job_id, "status": _STATUS[st.status], "created_at": _iso(job.created_at),
            "last_updated_at": _iso(time.time()), "status_message": _message(st),
            "ttl_ms": int(self.manager.settings.keep_days * 86_400_000),
            "poll_interval_ms": None if terminal else poll,
        }

    def _status(self, task_id: str) -> StatusResponse:
        try:
            return self.manager.status(task_id)
        except JobNotFound:
            raise MCPError(code=INVALID_PARAMS, message=f"no task with id {task_id!r}") from None

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> GetTaskResult:
        st = self._status(params.task_id)
        fields = self._task_fields(st)
        if st.status == "completed":
            base = str(getattr(ctx.request, "base_url", "") or "").rstrip("/") or None
            result = status_result(self.manager, st, with_preview=True, where=Delivery(self.transport, base))
            return GetTaskResult(**fields, result=result.model_dump(mode="json", by_alias=True, exclude_none=True))
        if st.status == "failed":
            return GetTaskResult(**fields, error={"code": INTERNAL_ERROR, "message": st.error or "the job failed"})
        return GetTaskResult(**fields)

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> AckResult:
        self._status(params.task_id)
        await self.manager.stop(params.task_id)
        return AckResult(result_type="complete")

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateParams) -> AckResult:
        self._status(params.task_id)
        raise MCPError(code=INVALID_PARAMS, message="adgen tasks never ask for input; nothing to update")
