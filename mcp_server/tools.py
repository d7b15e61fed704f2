"""The MCP tools: thin functions that turn arguments into job-manager calls and shape results.

No image work happens here beyond attaching the cached preview JPEG the worker wrote.
"""

from __future__ import annotations

import base64
import inspect
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ImageContent, ResourceLink, SamplingMessage, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from pipeline.jobs.designers import Sampler
from pipeline.messages import DesignPrompt
from pipeline.images import InputError
from pipeline.jobs import JobManager, JobNotFound, QueueFull
from pipeline.schemas import (
    TERMINAL_STATES,
    FontList,
    GenerateRequest,
    ResourcesResponse,
    StatusResponse,
    StopResponse,
    describe_validation,
)

DEFAULT_WAIT_S = 40.0  # Claude Desktop and the TypeScript SDK give up on a tool call at 60 s
MAX_WAIT_S = 55.0


@lru_cache(maxsize=64)
def _preview_b64(path: str, mtime_ns: int) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _status_text(st: StatusResponse) -> str:
    lines = [f"job {st.job_id}: {st.status}, {st.progress_percent}%"]
    if st.status == "pending":
        lines.append(st.message)
    elif st.status == "running":
        eta = f", about {max(0, round(st.eta_seconds or 0))} s left" if st.eta_seconds is not None else ""
        lines.append(f"{st.sub_step or st.message}{eta}. Call get_status with this job_id to follow it.")
    elif st.status == "completed":
        lines.append(f"Final image: {st.final_result} (read it with resources/read; a preview is attached).")
    else:
        lines.append(f"Reason: {st.error or st.message}")
    return "\n".join(lines)


def status_result(manager: JobManager, st: StatusResponse, with_preview: bool) -> CallToolResult:
    content: list[Any] = [TextContent(text=_status_text(st))]
    preview = manager.artifact(st.job_id, "preview.jpg")
    if with_preview and preview is not None and st.status != "pending":
        content.append(ImageContent(data=_preview_b64(str(preview), preview.stat().st_mtime_ns), mime_type="image/jpeg"))
    for key in ("final_result", "step1_result"):
        uri = getattr(st, key)
        if uri:
            content.append(ResourceLink(uri=uri, name=uri.rsplit("/", 1)[-1], mime_type="image/png"))
    return CallToolResult(content=content, structured_content=st.model_dump(mode="json"))


def _raw_arguments(ctx: Context) -> dict[str, Any]:
    params = getattr(ctx.request_context, "params", None) or {}
    args = params.get("arguments") if hasattr(params, "get") else None
    return args if isinstance(args, dict) else {}


def sampler_for(ctx: Context) -> Sampler | None:
    """Ask the calling client's own model for the design, when the client offers sampling."""
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        return None

    async def sample(prompt: DesignPrompt) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sampling is deprecated in the 2026-07-28 protocol, not in ours
            result = await ctx.session.create_message(
                [SamplingMessage(role="user", content=TextContent(text=prompt.user))],
                max_tokens=prompt.max_tokens, system_prompt=prompt.system, related_request_id=ctx.request_id,
            )
        content = result.content
        return content.text if isinstance(content, TextContent) else ""

    return sample


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
render it in headless Chromium -> composite. Send the photo as base64 in product_image
(PNG/JPEG/WebP) and the copy in text_content (Korean and emoji are fine; null = no text).
The call waits up to wait_seconds (default 40) while streaming progress, then returns the
job's status. If it is still running, call get_status(job_id) until status is completed;
the final PNG is then at final_result (an adgen:// URI for resources/read) and a preview
is attached. The CPU draft backend takes seconds; real diffusion models take minutes.
To re-do only the text on an earlier result, call again with start_step=2 and step1_image."""


def register_tools(server: MCPServer, manager: JobManager) -> None:
    async def generate_ad(**kwargs: Any) -> CallToolResult:
        ctx: Context = kwargs.pop("ctx")
        wait_s = float(kwargs.pop("wait_seconds", DEFAULT_WAIT_S))
        unknown = sorted(set(_raw_arguments(ctx)) - set(GenerateRequest.model_fields) - {"wait_seconds"})
        if unknown:  # the SDK drops them silently; an agent should learn its mistake instead
            raise ToolError(f"invalid request: unknown argument(s) {', '.join(unknown)[:200]}; see the input schema")
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
        return status_result(manager, st, with_preview=True)

    sig = _request_signature()
    generate_ad.__signature__ = sig  # type: ignore[attr-defined]
    generate_ad.__annotations__ = {n: p.annotation for n, p in sig.parameters.items()} | {
        "return": sig.return_annotation
    }
    server.tool(
        name="generate_ad", description=GENERATE_DESCRIPTION,
        annotations=ToolAnnotations(title="Generate an ad image", read_only_hint=False, open_world_hint=False),
    )(generate_ad)

    @server.tool(
        description="Status of a job from generate_ad: progress %, current stage, ETA in seconds, system "
        "metrics, and once finished the image URIs (adgen://jobs/<id>/final.png) plus a small preview. "
        "Poll every few seconds while status is pending or running.",
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
        return status_result(manager, st, with_preview=include_preview)

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
        description="Live CPU/RAM/GPU metrics, the active backend, worker state and loaded models.",
        annotations=ToolAnnotations(title="System resources", read_only_hint=True),
    )
    async def get_resources() -> ResourcesResponse:
        return manager.resources()

    @server.resource(
        "adgen://jobs/{job_id}/{artifact}", name="job-artifact", mime_type="image/png",
        description="A job's PNG images: final.png, step1.png, text.png (transparent text layer), cutout.png, "
        "background.png, composite.png, mask.png, product.png.",
    )
    async def job_artifact(job_id: str, artifact: str) -> bytes:
        path = manager.artifact(job_id, artifact)
        if path is None or not artifact.endswith(".png"):
            raise ValueError(f"no artifact {artifact!r} for job {job_id!r}")
        return await anyio.Path(path).read_bytes()

