"""The MCP tools: thin functions that turn arguments into job-manager calls and shape results.

No image work happens here; ``delivery`` shapes results for the transport, ``sampling`` lends the
client's model to the designer.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field, ValidationError

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
from pipeline.images import InputError
from pipeline.jobs import JobManager, JobNotFound, QueueFull
from pipeline.jobs.designers import Sampler
from pipeline.schemas import (
    TERMINAL_STATES,
    FontList,
    GenerateRequest,
    ResourcesResponse,
    StatusResponse,
    StopResponse,
    describe_validation,
)

__all__ = ["Delivery", "Transport", "follow_job", "register_tools"]

DEFAULT_WAIT_S = 40.0  # Claude Desktop and the TypeScript SDK give up on a tool call at 60 s
MAX_WAIT_S = 55.0


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
    deadline = anyio.current_time() + wait_s
    last = -1
    sampler = sampler or sampler_for(ctx)
    if sampler is not None:
        manager.attach_sampler(job_id, sampler)
    try:
        while True:
            st = manager.status(job_id, with_metrics=False)
            if st.progress_percent > last:
                last = st.progress_percent
                await ctx.report_progress(st.progress_percent, 100, st.sub_step or st.message)
            remaining = deadline - anyio.current_time()
            if st.status in TERMINAL_STATES or remaining <= 0:
                return manager.status(job_id)
            await manager.wait_for_change(job_id, min(0.5, remaining))
    finally:
        if sampler is not None:
            manager.detach_sampler(job_id, sampler)


def _request_signature() -> inspect.Signature:
    """generate_ad's parameters are GenerateRequest's fields (one schema, no drift) + wait_seconds."""
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    for name, info in GenerateRequest.model_fields.items():
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


def _register_generate(server: MCPServer, manager: JobManager, transport: Transport) -> None:
    async def generate_ad(**kwargs: Any) -> CallToolResult:
        ctx: Context = kwargs.pop("ctx")
        wait_s = float(kwargs.pop("wait_seconds", DEFAULT_WAIT_S))
        unknown = sorted(set(_raw_arguments(ctx)) - set(GenerateRequest.model_fields) - {"wait_seconds"})
        if unknown:  # the SDK drops them silently; an agent should learn its mistake instead
            plural = "s" if len(unknown) > 1 else ""
            raise ToolError(f"{', '.join(unknown)[:200]}: unknown argument{plural}, not accepted "
                            "(see the input schema)")
        try:
            req = GenerateRequest(**kwargs)
        except ValidationError as exc:
            raise ToolError(describe_validation(exc)) from None
        sampler = sampler_for(ctx)  # registered before the job can reach its design stage
        try:
            accepted = await manager.submit(req, sampler=sampler)
        except (InputError, QueueFull) as exc:
            raise ToolError(str(exc)) from None
        st = await follow_job(manager, ctx, accepted.job_id, wait_s, sampler)
        return status_result(manager, st, with_preview=True, where=delivery_for(transport, ctx))

    sig = _request_signature()
    generate_ad.__signature__ = sig  # type: ignore[attr-defined]
    generate_ad.__annotations__ = {n: p.annotation for n, p in sig.parameters.items()} | {
        "return": sig.return_annotation
    }
    server.tool(
        name="generate_ad", description=GENERATE_DESCRIPTION,
        annotations=ToolAnnotations(title="Generate an ad image", read_only_hint=False, open_world_hint=False),
    )(generate_ad)


def register_tools(server: MCPServer, manager: JobManager, transport: Transport = "stdio") -> None:
    """Register the tools and the job-file resources; ``transport`` decides how files are offered."""
    _register_generate(server, manager, transport)

    @server.tool(
        description="Status of a job from generate_ad: progress %, current stage, ETA in seconds, system "
        "metrics, and once finished where the ad was saved (output_file; download_url over HTTP), the image "
        "URIs (adgen://jobs/<id>/final.png) and a small preview. Poll every few seconds while status is "
        "pending or running.",
        annotations=ToolAnnotations(title="Get job status", read_only_hint=True),
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
        "(transparent text layer), cutout.png, background.png, composite.png, mask.png, product.png, preview.jpg. "
        f"Over HTTP, files over {mb(MAX_INLINE_BYTES)} are refused with their download URL.",
    )
    async def job_artifact(job_id: str, artifact: str, ctx: Context) -> bytes:
        return await read_artifact(manager, job_id, artifact, delivery_for(transport, ctx))
