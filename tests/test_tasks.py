"""MCP tasks (SEP-2663) with a real tasks client (fastmcp + fastmcp-tasks) over a real job manager and worker."""

from __future__ import annotations

import pytest
from fastmcp import Client as TasksClient
from fastmcp_tasks.client import call_tool_task
from fastmcp_tasks.client_models import (
    ClientGetTaskResult,
    GetTaskRequest,
    GetTaskRequestParams,
    UpdateTaskRequest,
    UpdateTaskRequestParams,
)
from mcp import Client
from mcp.shared.exceptions import MCPError

from pipeline.jobs import JobManager
from tests.conftest import EXAMPLE, png_b64

pytestmark = pytest.mark.anyio


def _photo() -> str:
    from PIL import Image

    img = Image.open(EXAMPLE).convert("RGB")
    img.thumbnail((512, 512))
    return png_b64(img)


async def _get(client: TasksClient, task_id: str) -> ClientGetTaskResult:
    request = GetTaskRequest(params=GetTaskRequestParams(task_id=task_id))
    return await client.session.send_request(request, ClientGetTaskResult)


async def test_generate_and_edit_run_as_tasks(server, manager: JobManager) -> None:
    args = {"product_image": _photo(), "text_content": "Task sale", "test_mode": True, "seed": 9}
    async with TasksClient(server) as client:
        task = await call_tool_task(client, "generate_ad", args)
        # The handle comes back before the job is done: the task id is the job id.
        assert task.task_id in manager.jobs
        first = await _get(client, task.task_id)
        assert first.status in ("working", "completed") and first.status_message
        if first.status == "working":
            assert first.poll_interval_ms and first.result is None
        result = await task.result()
        st = result.structured_content
        assert st["status"] == "completed" and st["job_id"] == task.task_id
        assert st["final_result"] == f"adgen://jobs/{task.task_id}/final.png"
        assert any(c.type == "image" for c in result.content)  # the preview, as the tool would attach it

        done = await _get(client, task.task_id)
        assert done.status == "completed" and done.result["structuredContent"]["job_id"] == task.task_id

        edit = await call_tool_task(client, "edit_ad", {"job_id": task.task_id, "text_content": "Edited as a task"})
        edited = (await edit.result()).structured_content
        assert edited["parent_job_id"] == task.task_id and edited["parameters"]["text_content"] == "Edited as a task"

        # The same job through the ordinary tools.
        status = await client.call_tool("get_status", {"job_id": task.task_id, "include_preview": False})
        assert status.structured_content["status"] == "completed"


async def test_cancel_a_queued_task(server, manager: JobManager) -> None:
    args = {"product_image": _photo(), "text_content": "Queue", "test_mode": True}
    async with TasksClient(server) as client:
        tasks = [await call_tool_task(client, "generate_ad", args) for _ in range(3)]
        last = tasks[-1]
        assert manager.jobs[last.task_id].status == "pending"  # two jobs ahead of it on the one worker
        await last.cancel()
        got = await _get(client, last.task_id)
        assert got.status == "cancelled" and manager.jobs[last.task_id].status == "stopped"
        assert (await tasks[0].result()).structured_content["status"] == "completed"
        await tasks[1].result()


async def test_task_errors_are_one_line(server) -> None:
    async with TasksClient(server) as client:
        with pytest.raises(MCPError, match="no task with id"):
            await _get(client, "0" * 32)
        # Bad arguments: the tool's own one-line error, not a task.
        bad = await client.call_tool("generate_ad", {"text_content": "no photo", "test_mode": True},
                                     raise_on_error=False)
        assert bad.is_error and "start_step 1 needs the photo" in bad.content[0].text
        task = await call_tool_task(client, "generate_ad", {"product_image": _photo(), "text_content": "x",
                                                            "test_mode": True})
        update = UpdateTaskRequest(params=UpdateTaskRequestParams(task_id=task.task_id, input_responses={}))
        with pytest.raises(MCPError, match="never ask for input"):
            await client.session.send_request(update, ClientGetTaskResult)
        await task.result()


async def test_clients_without_tasks_get_plain_results(server) -> None:
    # The handshake-era protocol cannot carry tasks: the call returns the job's status as always.
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("generate_ad", {"product_image": _photo(), "text_content": "Legacy",
                                                        "test_mode": True})
    assert not result.is_error and result.structured_content["status"] == "completed"
