"""REST routes beside the MCP endpoint, over the same job manager and pydantic schemas."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from mcp_server.openapi import openapi_document
from pipeline.images import InputError
from pipeline.jobs import JobManager, JobNotFound, QueueFull
from pipeline.schemas import GenerateRequest, describe_validation
from pipeline.jobs.store import ARTIFACTS

MAX_BODY = 40 * 1024 * 1024
DASHBOARD = Path(__file__).parent / "dashboard" / "index.html"


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _dump(model: Any) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"))


def register_routes(server: MCPServer, manager: JobManager) -> None:
    route = server.custom_route

    @route("/generate", methods=["POST"])
    async def generate(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _error(413, f"request body over {MAX_BODY // 2**20} MiB")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, f"request body over {MAX_BODY // 2**20} MiB")
        try:
            data = json.loads(body)
            req = GenerateRequest.model_validate(data)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            detail = describe_validation(exc) if isinstance(exc, ValidationError) else "body is not valid JSON"
            return _error(422, detail)
        try:
            accepted = await manager.submit(req)
        except InputError as exc:
            return _error(422, str(exc))
        except QueueFull as exc:
            return _error(503, str(exc), {"Retry-After": str(int(exc.retry_after) + 1)})
        return _dump(accepted)

    @route("/status/{job_id}", methods=["GET"])
    async def status(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            st = manager.status(job_id, results="url")
        except JobNotFound as exc:
            return _error(404, str(exc))
        data = st.model_dump(mode="json")
        if request.query_params.get("images") == "base64":  # the design doc's original shape
            for key in ("step1_result", "step2_result", "final_result"):
                if data[key]:
                    path = manager.artifact(job_id, data[key].rsplit("/", 1)[-1])
                    data[key] = await anyio.to_thread.run_sync(_b64, path) if path else None
        return JSONResponse(data)

    @route("/stop/{job_id}", methods=["POST"])
    async def stop(request: Request) -> Response:
        try:
            return _dump(await manager.stop(request.path_params["job_id"]))
        except JobNotFound as exc:
            return _error(404, str(exc))

    @route("/jobs/{job_id}/{artifact}", methods=["GET"])
    async def artifact(request: Request) -> Response:
        name = request.path_params["artifact"]
        path = manager.artifact(request.path_params["job_id"], name)
        if path is None:
            return _error(404, "no such image")
        # Artifacts are written once (atomically) and never change: let browsers cache them.
        return FileResponse(path, media_type=ARTIFACTS[name], headers={"Cache-Control": "private, max-age=86400"})

    @route("/jobs", methods=["GET"])
    async def jobs(request: Request) -> Response:
        try:
            limit = max(1, min(200, int(request.query_params.get("limit", 50))))
        except ValueError:
            return _error(422, "limit must be an integer")
        return JSONResponse([s.model_dump(mode="json") for s in manager.list_jobs(limit)])

    @route("/dashboard", methods=["GET"])
    async def dashboard(request: Request) -> Response:
        return HTMLResponse(DASHBOARD.read_text(encoding="utf-8"))

    @route("/openapi.json", methods=["GET"])
    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    @route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        h = manager.health()
        return JSONResponse(h.model_dump(mode="json"), status_code=200 if h.status == "ok" else 503)

    @route("/fonts", methods=["GET"])
    async def fonts(request: Request) -> Response:
        fonts = await anyio.to_thread.run_sync(manager.list_fonts)
        return JSONResponse([f.model_dump(mode="json") for f in fonts])

    @route("/resources", methods=["GET"])
    async def resources(request: Request) -> Response:
        return _dump(manager.resources())


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
