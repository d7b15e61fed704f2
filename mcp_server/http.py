"""REST routes beside the MCP endpoint, over the same job manager and pydantic schemas.

Every route is registered with one decorator, ``@api.get(path, ...)`` or ``@api.post(path, ...)``,
which also records what it takes and returns (see ``RestApi.route``); GET /openapi.json is built
from that table. A route added with ``server.custom_route`` instead fails tests/test_openapi.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from mcp_server.accept_clock import CLOCK, AcceptTimings
from mcp_server.brand_tools import register_brand_routes
from mcp_server.openapi import ApiError, HttpMethod, RouteSpec, build_document, spec_for
from mcp_server.poll_gate import COUNTS as POLL_COUNTS
from pipeline.images import InputError
from pipeline.jobs import JobManager, JobNotFound, QueueFull
from pipeline.jobs.store import ARTIFACTS, OUTPUT_TYPES
from pipeline.schemas import (
    EditRequest,
    FontInfo,
    GenerateRequest,
    HealthResponse,
    JobAccepted,
    ResourcesResponse,
    StatusResponse,
    StopResponse,
    describe_validation,
)

MAX_BODY = 40 * 1024 * 1024
DASHBOARD = Path(__file__).parent / "dashboard" / "index.html"


JobId = Annotated[str, Field(pattern="^[0-9a-f]{32}$", description="From POST /generate.")]
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ApiError(detail=detail).model_dump(), status_code=status, headers=headers)


def _dump(model: Any) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"))


class RestApi:
    """The REST routes of one server: registers each on its Starlette app and keeps its ``RouteSpec``."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.routes: list[RouteSpec] = []

    def route(
        self, path: str, method: HttpMethod, summary: str | None = None, **declared: Any
    ) -> Callable[[Handler], Handler]:
        """Register ``path`` for ``method``. The handler's docstring gives the summary (first line) and
        description; ``declared`` is ``RouteSpec``'s: request=Model (JSON body), response=Model or
        list[Model] (200 JSON), content=("image/png", ...) for other 200 media, responses={404: "why"}
        or {503: ("why", Model)}, query={"name": type}, path_params={"name": type} (default str)."""

        def decorator(func: Handler) -> Handler:
            self.routes.append(spec_for(func, path, method, summary, **declared))
            self.server.custom_route(path, methods=[method])(func)
            return func

        return decorator

    def get(self, path: str, summary: str | None = None, **declared: Any) -> Callable[[Handler], Handler]:
        return self.route(path, "GET", summary, **declared)

    def post(self, path: str, summary: str | None = None, **declared: Any) -> Callable[[Handler], Handler]:
        return self.route(path, "POST", summary, **declared)

    @cached_property
    def document(self) -> dict[str, Any]:
        """The OpenAPI document; built on first use, once every route is registered."""
        return build_document(self.routes)


def register_routes(server: MCPServer, manager: JobManager) -> RestApi:
    api = RestApi(server)

    @api.post("/generate", request=GenerateRequest, response=JobAccepted, responses={
        413: f"request body over {MAX_BODY // 2**20} MiB", 422: "a field is invalid (the reason names it)",
        503: "the queue is full; retry after the Retry-After header's seconds"})
    async def generate(request: Request) -> Response:
        """Start an ad generation job (non-blocking); follow it with GET /status/{job_id}"""
        req = await _body_model(request, GenerateRequest)
        if isinstance(req, Response):
            return req
        try:
            accepted = await manager.submit(req)
        except InputError as exc:
            return _error(422, str(exc))
        except QueueFull as exc:
            return _error(503, str(exc), {"Retry-After": str(int(exc.retry_after) + 1)})
        return _dump(accepted)

    @api.post("/edit", request=EditRequest, response=JobAccepted, responses={
        404: "no such job", 413: f"request body over {MAX_BODY // 2**20} MiB",
        422: "a field is invalid, or the job cannot be edited (the reason says why)",
        503: "the queue is full; retry after the Retry-After header's seconds"})
    async def edit(request: Request) -> Response:
        """Change a completed ad: only the fields given change (same rules as the edit_ad tool)"""
        req = await _body_model(request, EditRequest)
        if isinstance(req, Response):
            return req
        try:
            accepted = await manager.edit(req.job_id, req.model_dump(exclude_unset=True, exclude={"job_id"}))
        except ValidationError as exc:  # the edited job's request with the changes is not a valid request
            return _error(422, describe_validation(exc))
        except JobNotFound as exc:
            return _error(404, str(exc))
        except InputError as exc:
            return _error(422, str(exc))
        except QueueFull as exc:
            return _error(503, str(exc), {"Retry-After": str(int(exc.retry_after) + 1)})
        return _dump(accepted)

    @api.get("/status/{job_id}", path_params={"job_id": JobId}, response=StatusResponse,
             query={"images": Annotated[Literal["url", "base64"], Field(
                 "url", description="base64: the *_result fields carry the images inline (the design doc's "
                 "shape) instead of download URLs.")]},
             responses={404: "no such job"})
    async def status(request: Request) -> Response:
        """Job status, progress, ETA, metrics and result URLs"""
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

    @api.post("/stop/{job_id}", path_params={"job_id": JobId}, response=StopResponse, responses={404: "no such job"})
    async def stop(request: Request) -> Response:
        """Stop a queued or running job (a finished one is left as it is)"""
        try:
            return _dump(await manager.stop(request.path_params["job_id"]))
        except JobNotFound as exc:
            return _error(404, str(exc))

    # Before /jobs/{job_id}/{artifact}: Starlette takes the first matching route.
    @api.get("/jobs/{job_id}/download", path_params={"job_id": JobId},
             content=tuple(dict.fromkeys(OUTPUT_TYPES.values())), responses={404: "no finished ad for this job"})
    async def download(request: Request) -> Response:
        """The delivered ad (format as asked) under its readable name; the final PNG if none was written."""
        job_id = request.path_params["job_id"]
        path = manager.output_file(job_id)
        name = path.name if path else f"adgen-{job_id[:8]}.png"
        path = path or manager.artifact(job_id, "final.png")
        if path is None:
            return _error(404, "job_id: no finished ad for this job (unknown job, not finished, or removed)")
        return FileResponse(path, media_type=OUTPUT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                            filename=name, headers={"Cache-Control": "private, max-age=86400"})

    which = {"type": "string", "enum": list(ARTIFACTS), "description": "Which image."}

    @api.get("/jobs/{job_id}/{artifact}", content=tuple(dict.fromkeys(ARTIFACTS.values())),
             responses={404: "no such image"}, path_params={"job_id": JobId, "artifact": which})
    async def artifact(request: Request) -> Response:
        """Download one of a job's images (final.png, step1.png, text.png, ...)"""
        name = request.path_params["artifact"]
        path = manager.artifact(request.path_params["job_id"], name)
        if path is None:
            return _error(404, "no such image")
        # Artifacts are written once (atomically) and never change: let browsers cache them.
        return FileResponse(path, media_type=ARTIFACTS[name], headers={"Cache-Control": "private, max-age=86400"})

    @api.get("/jobs", response=list[StatusResponse], responses={422: "limit is not an integer"},
             query={"limit": Annotated[int, Field(50, description="How many (values outside 1-200 are clamped).")]})
    async def jobs(request: Request) -> Response:
        """Recent jobs, newest first"""
        try:
            limit = max(1, min(200, int(request.query_params.get("limit", 50))))
        except ValueError:
            return _error(422, "limit must be an integer")
        return JSONResponse([s.model_dump(mode="json") for s in manager.list_jobs(limit)])

    @api.get("/dashboard", content=("text/html",))
    async def dashboard(request: Request) -> Response:
        """HTML dashboard: live jobs, progress, stage previews, metrics"""
        return HTMLResponse(DASHBOARD.read_text(encoding="utf-8"))

    @api.get("/openapi.json", content=("application/json",))
    async def openapi(request: Request) -> Response:
        """This document (OpenAPI 3.1)"""
        return JSONResponse(api.document)

    degraded = ("degraded: the body says what is wrong", HealthResponse)

    @api.get("/health", response=HealthResponse, responses={503: degraded})
    async def health(request: Request) -> Response:
        """Server, worker and GPU health (open without the token, for container health checks)"""
        h = manager.health()
        # Warming is healthy (jobs run, the first ones may load a model); degraded needs a person.
        return JSONResponse(h.model_dump(mode="json"), status_code=503 if h.status == "degraded" else 200)

    @api.get("/fonts", response=list[FontInfo])
    async def fonts(request: Request) -> Response:
        """Fonts usable in font_family"""
        fonts = await anyio.to_thread.run_sync(manager.list_fonts)
        return JSONResponse([f.model_dump(mode="json") for f in fonts])

    @api.get("/resources", response=ResourcesResponse)
    async def resources(request: Request) -> Response:
        """Live CPU/RAM/GPU metrics, backend, input and output folders, model cache"""
        return _dump(manager.resources())

    @api.get("/debug/accepts", response=AcceptTimings, responses={422: "since is not an integer"},
             query={"since": Annotated[int, Field(0, description="Only accepts filed after this seq.")]})
    async def debug_accepts(request: Request) -> Response:
        """Recent generate_ad accepts over MCP as the server spent them, and the poll gate's counts (debug)"""
        try:
            since = int(request.query_params.get("since", 0))
        except ValueError:
            return _error(422, "since: not an integer")
        return _dump(CLOCK.since(since).model_copy(update={
            "polls": POLL_COUNTS.polls, "polls_held": POLL_COUNTS.held, "polls_held_ms": POLL_COUNTS.mean_held_ms}))

    register_brand_routes(api, manager)  # POST/GET /brand-kits, DELETE /brand-kits/{name}
    return api


async def _json_body(request: Request, max_bytes: int = MAX_BODY) -> Any:
    """The request's JSON, or the 413/422 answer for a body too large or not JSON."""
    too_large = f"request body over {max_bytes // 2**20} MiB"
    if int(request.headers.get("content-length") or 0) > max_bytes:
        return _error(413, too_large)
    body = await request.body()
    if len(body) > max_bytes:
        return _error(413, too_large)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return _error(422, "body is not valid JSON")


async def _body_model(request: Request, model: type[M], max_bytes: int = MAX_BODY) -> M | Response:
    """The request's JSON body as ``model``, or the 413/422 answer that says why it is not one."""
    data = await _json_body(request, max_bytes)
    if isinstance(data, Response):
        return data
    try:
        return model.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        why = describe_validation(exc) if isinstance(exc, ValidationError) else "body is too deeply nested"
        return _error(422, why)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
