"""The MCP tools: thin functions that turn arguments into job-manager calls and shape results.

No image work happens here; ``delivery`` shapes results for the transport, ``sampling`` lends the
client's model to the designer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from mcp_server.accept_clock import mark
from mcp_server.delivery import (
    MAX_INLINE_BYTES,
    Delivery,
    Transport,
    delivery_for,
    mb,
    read_artifact,
    status_result,
)
from mcp_server.sampling import sampler_for
from mcp_server.studio import ui_meta
from pipeline.images import InputError
from pipeline.jobs import JobManager, JobNotFound, QueueFull
from pipeline.jobs.designers import Sampler
from pipeline.schemas import (
    TERMINAL_STATES,
    EditRequest,
    FontList,
    GenerateRequest,
    JobAccepted,
    ResourcesResponse,
    StatusResponse,
    StopResponse,
    describe_validation,
)

UI_TOOLS = frozenset({"generate_ad", "edit_ad", "get_status"})  # their results open the Studio app in Apps hosts


def tool_meta(name: str) -> dict[str, Any] | None:
    """The _meta a tool declares: the Studio's UI resource for the job tools (hosts without Apps ignore it)."""
    return ui_meta() if name in UI_TOOLS else None


__all__ = ["Delivery", "Transport", "follow_job", "register_tools"]

DEFAULT_WAIT_S = 40.0  # Claude Desktop and the TypeScript SDK give up on a tool call at 60 s
MAX_WAIT_S = 55.0


def _http_request(ctx: Context) -> Any:
    """The Starlette request carrying this call over HTTP, else None."""
    try:
        return ctx.request_context.request
    except ValueError:  # outside a request
        return None


def _raw_arguments(ctx: Context) -> dict[str, Any]:
    params = getattr(ctx.request_context, "params", None) or {}
    args = params.get("arguments") if hasattr(params, "get") else None
    return args if isinstance(args, dict) else {}


async def follow_job(
    manager: JobManager, ctx: Context, job_id: str, wait_s: float, sampler: Sampler | None = None
) -> StatusResponse:
    """Wait up to wait_s for the job, sending a progress notification whenever progress rises.

    While this call is open the job may borrow the client's model (MCP sampling) for its design.
    """
    if wait_s <= 0:  # an accept or a plain poll: the status as it is, nothing to stream
        if sampler is not None:
            manager.detach_sampler(job_id, sampler)  # (submit registered it; nobody stays to answer it)
        return manager.status(job_id)
    deadline = anyio.current_time() + wait_s
    last, said = -1.0, ""
    sampler = sampler or sampler_for(ctx)
    if sampler is not None:
        manager.attach_sampler(job_id, sampler)
    try:
        while True:
            st = manager.status(job_id, with_metrics=False)
            label = st.sub_step or st.message
            # A new stage or sub-step is news even when the percentage has not moved yet; MCP wants every
            # notification's progress higher than the last, so it then says a hundredth more.
            if st.progress_percent > last or (label != said and last < 99.9):
                last, said = max(float(st.progress_percent), round(last + 0.01, 2)), label
                await ctx.report_progress(last, 100, label)
            remaining = deadline - anyio.current_time()
            if st.status in TERMINAL_STATES or remaining <= 0:
                return manager.status(job_id)
            await manager.wait_for_change(job_id, min(0.5, remaining))
    finally:
        if sampler is not None:
            manager.detach_sampler(job_id, sampler)


def _model_signature(model: type[BaseModel]) -> inspect.Signature:
    """A tool's parameters as a model's fields (one schema, no drift) + wait_seconds."""
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    for name, info in model.model_fields.items():
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[info.annotation, info],
                              default=info.default)
        )
    params.append(
        inspect.Parameter(
            "wait_seconds", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_WAIT_S,
            annotation=Annotated[float, Field(ge=0, le=MAX_WAIT_S, description=(
                "How long to wait for the job before returning (progress is streamed meanwhile). "
                "0 = return at once with the job id."))],
        )
    )
    return inspect.Signature(params, return_annotation=Annotated[CallToolResult, StatusResponse])


def _with_signature(func: Callable[..., Any], model: type[BaseModel]) -> Callable[..., Any]:
    sig = _model_signature(model)
    func.__signature__ = sig  # type: ignore[attr-defined]
    func.__annotations__ = {n: p.annotation for n, p in sig.parameters.items()} | {"return": sig.return_annotation}
    return func


GENERATE_DESCRIPTION = """Create an advertising image from a product photo and a line of ad copy.

Pipeline: cut the product out -> generate a background scene from bg_prompt -> place the
product with shadows -> harmonise -> analyse the image -> design the copy as HTML/CSS ->
render it in headless Chromium -> composite. Give the photo as a file path inside the
server's input folders (product_image_path; get_resources lists them), as an http(s) URL
(product_image_url), or as base64 (product_image: PNG/JPEG/WebP), and the copy in
text_content (Korean and emoji are fine; null = no text). width/height (256-4096) and
output_format (png/jpeg/webp) shape the delivered file.
The call waits up to wait_seconds (default 40) while streaming progress, then returns the
job's status. If it is still running, call get_status(job_id) until status is completed.
The finished ad is written to the server's output folder: the answer gives its absolute
path (output_file; tell the person where it is) and, over HTTP, a download URL; a small
preview is attached and final_result is an adgen:// resource of the full-size PNG.
The CPU draft backend takes seconds; real diffusion models take minutes.
To re-do only the text on an earlier result, call again with start_step=2 and parent_job_id."""


async def start_job(manager: JobManager, tool: str, args: dict[str, Any], sampler: Sampler | None) -> JobAccepted:
    """Check a generate_ad or edit_ad call's arguments and start its job; ToolError with one line if they are bad.

    Shared by the tools (which then follow the job) and the tasks extension (which answers with a task)."""
    model: type[BaseModel] = GenerateRequest if tool == "generate_ad" else EditRequest
    unknown = sorted(set(args) - set(model.model_fields) - {"wait_seconds"})
    if unknown:  # the SDK drops them silently; an agent should learn its mistake instead
        plural = "s" if len(unknown) > 1 else ""
        raise ToolError(f"{', '.join(unknown)[:200]}: unknown argument{plural}, not accepted (see the input schema)")
    fields = {k: v for k, v in args.items() if k != "wait_seconds"}
    try:
        if tool == "generate_ad":
            return await manager.submit(GenerateRequest(**fields), sampler=sampler)
        req = EditRequest(**fields)
        return await manager.edit(req.job_id, req.model_dump(exclude_unset=True, exclude={"job_id"}), sampler=sampler)
    except ValidationError as exc:  # of the request, or of the edited job's request with the changes
        raise ToolError(describe_validation(exc)) from None
    except (InputError, QueueFull, JobNotFound) as exc:
        raise ToolError(str(exc)) from None


def _register_job_tool(
    server: MCPServer, manager: JobManager, transport: Transport, name: str, model: type[BaseModel],
    description: str, title: str,
) -> None:
    async def run(**kwargs: Any) -> CallToolResult:
        ctx: Context = kwargs["ctx"]
        wait_s = float(kwargs.get("wait_seconds", DEFAULT_WAIT_S))
        # An accept (no waiting) over HTTP is timed by segment (accept_clock; GET /debug/accepts).
        request = _http_request(ctx) if name == "generate_ad" and wait_s == 0 else None
        mark(request, "dispatch_ms")
        sampler = sampler_for(ctx)  # registered before the job can reach its design stage
        accepted = await start_job(manager, name, _raw_arguments(ctx), sampler)
        mark(request, "accept_ms")
        st = await follow_job(manager, ctx, accepted.job_id, wait_s, sampler)
        mark(request, "status_ms")
        result = status_result(manager, st, with_preview=True, where=delivery_for(transport, ctx))
        mark(request, "result_ms")
        return result

    run.__name__ = name
    server.tool(
        name=name, description=description, meta=tool_meta(name),
        annotations=ToolAnnotations(title=title, read_only_hint=False, open_world_hint=False),
    )(_with_signature(run, model))


EDIT_DESCRIPTION = """Change a completed ad: give its job_id and only the fields to change (the rest stay the
job's own). Copy (text_content, subline, cta, badge, price), style, font, colour, size of the
type, or a text_position the product leaves free redo only the text layer on the same scene
(identical pixels, about a second on the draft backend). A new width/height, scene prompt, seed
or cut-out, or a position where the product stands, generates step 1 again (same seed unless
seed is given). The answer is the new job's status (like generate_ad's); its parent_job_id is
the edited job and edit_note says what was redone. text_content "" removes the copy."""


def register_tools(server: MCPServer, manager: JobManager, transport: Transport = "stdio") -> None:
    """Register the tools and the job-file resources; ``transport`` decides how files are offered."""
    _register_job_tool(server, manager, transport, "generate_ad", GenerateRequest, GENERATE_DESCRIPTION,
                       "Generate an ad image")
    _register_job_tool(server, manager, transport, "edit_ad", EditRequest, EDIT_DESCRIPTION, "Edit an ad")

    @server.tool(
        description="Status of a job from generate_ad: progress %, current stage, ETA in seconds, system "
        "metrics, and once finished where the ad was saved (output_file; download_url over HTTP), the image "
        "URIs (adgen://jobs/<id>/final.png) and a small preview. Poll every few seconds while status is "
        "pending or running.",
        annotations=ToolAnnotations(title="Get job status", read_only_hint=True), meta=tool_meta("get_status"),
    )
    async def get_status(
        job_id: Annotated[str, Field(max_length=64, description="The job_id returned by generate_ad.")],
        include_preview: Annotated[bool, Field(description="Attach a small JPEG preview once one exists.")] = True,
        wait_seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_S, description="Wait up to this long for the "
                                             "job to finish first, streaming progress.")] = 0.0,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, StatusResponse]:
        try:
            if wait_seconds > 0:
                st = await follow_job(manager, ctx, job_id, wait_seconds)
            else:
                st = manager.status(job_id)
        except JobNotFound as exc:
            raise ToolError(str(exc)) from None
        return status_result(manager, st, with_preview=include_preview, where=delivery_for(transport, ctx))

    @server.tool(
        description="Stop a job: a queued job is removed, a running one stops at the next safe point "
        "(forcibly after a short grace period). A finished job is left as it is.",
        annotations=ToolAnnotations(title="Stop a job", destructive_hint=True, idempotent_hint=True),
    )
    async def stop_job(job_id: Annotated[str, Field(max_length=64)]) -> StopResponse:
        try:
            return await manager.stop(job_id)
        except JobNotFound as exc:
            raise ToolError(str(exc)) from None

    @server.tool(
        description="Fonts usable in generate_ad's font_family: id, family, weights, and whether each covers "
        "Hangul (Korean). Bundled fonts are always available.",
        annotations=ToolAnnotations(title="List fonts", read_only_hint=True),
    )
    async def list_fonts() -> FontList:
        return FontList(fonts=list(await anyio.to_thread.run_sync(manager.list_fonts)))

    @server.tool(
        description="Server state: ok or degraded (with the fix for each problem), the input folders photos "
        "may be read from (product_image_path), the output folder ads are saved to, whether photo URLs are "
        "accepted, live CPU/RAM/GPU metrics, the backend, worker state and loaded models.",
        annotations=ToolAnnotations(title="System resources", read_only_hint=True),
    )
    async def get_resources() -> ResourcesResponse:
        return manager.resources()

    @server.resource(
        "adgen://jobs/{job_id}/{artifact}", name="job-artifact", mime_type="image/png",
        description="A job's files: download (the delivered ad, format as asked), final.png, step1.png, text.png "
        "(transparent text layer), cutout.png, background.png, composite.png, mask.png, product.png, preview.jpg; "
        "for placements/variants jobs result-<placement>-v<n>.png (each result) and contact.jpg (all of them). "
        f"Over HTTP, files over {mb(MAX_INLINE_BYTES)} are refused with their download URL.",
    )
    async def job_artifact(job_id: str, artifact: str, ctx: Context) -> bytes:
        return await read_artifact(manager, job_id, artifact, delivery_for(transport, ctx))
