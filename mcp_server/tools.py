"""The MCP tools: thin functions that turn arguments into job-manager calls and shape results.

No image work happens here beyond attaching the cached preview JPEG the worker wrote.
What a result may carry depends on the transport (see ``Delivery``): over stdio a client
can read any file as a resource; over HTTP the SDK's own client refuses one message over
1 MiB, so large files go by download URL on the same server instead.
"""

from __future__ import annotations

import base64
import inspect
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    ImageContent,
    Resource,
    ResourceLink,
    SamplingMessage,
    TextContent,
    ToolAnnotations,
)
from pydantic import Field, ValidationError

from pipeline.images import InputError
from pipeline.jobs import JobManager, JobNotFound, QueueFull
from pipeline.jobs.designers import Sampler
from pipeline.jobs.store import ARTIFACTS, OUTPUT_TYPES
from pipeline.messages import DesignPrompt
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

Transport = Literal["stdio", "sse", "streamable-http"]
HTTP_TRANSPORTS: frozenset[str] = frozenset({"sse", "streamable-http"})
# The Python SDK's HTTP client refuses one server-sent event over 1 MiB (DEFAULT_MAX_SSE_EVENT_SIZE).
# Base64 adds a third, the JSON-RPC envelope a little more: 700 KiB of file -> ~934 KiB on the wire.
MAX_INLINE_BYTES = 700 * 1024
# Claude Desktop refuses tool results over 1 MiB; every result stays well under that.
MAX_RESULT_CHARS = 768 * 1024
MAX_PREVIEW_B64 = 512 * 1024  # a <=512 px JPEG is ~20-120 KB; a bigger file is not attached
RECENT_RESOURCES = 20
DOWNLOAD = "download"  # artifact name of the delivered file: adgen://jobs/<id>/download, GET /jobs/<id>/download


@dataclass(frozen=True)
class Delivery:
    """How files reach this call's client: the transport, and on HTTP the server's own base URL."""

    transport: Transport
    base_url: str | None = None  # e.g. http://127.0.0.1:8000, as the client reached us

    @property
    def http(self) -> bool:
        return self.transport in HTTP_TRANSPORTS

    def url(self, path: str) -> str | None:
        """Absolute URL of a server path on HTTP transports (the path alone if the host is unknown)."""
        return (self.base_url or "") + path if self.http else None


def delivery_for(transport: Transport, ctx: Context | None) -> Delivery:
    base = None
    if transport in HTTP_TRANSPORTS and ctx is not None:
        try:
            request = ctx.request_context.request
        except ValueError:  # outside a request
            request = None
        url = getattr(request, "base_url", None)  # a Starlette request on both HTTP transports
        base = str(url).rstrip("/") if url is not None else None
    return Delivery(transport, base)


def sniff_mime(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1_000_000 else f"{size / 1e3:.0f} KB"


@lru_cache(maxsize=64)
def _preview_b64(path: str, mtime_ns: int) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


# Keywords that constrain only instances of their own JSON type, or only annotate: next to "null" in a
# type list they accept exactly what they accepted in an anyOf branch (enum, const, not... would not).
_TYPED_KEYWORDS = frozenset({
    "type", "title", "description", "default", "examples", "properties", "required", "additionalProperties",
    "items", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "format",
})
_ANNOTATIONS = frozenset({"title", "description", "default", "examples"})
_DEFS = "#/$defs/"


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same JSON Schema in a spelling that validators walk faster; it accepts exactly the same instances.

    Pydantic spells ``X | None`` as ``anyOf: [{type: X}, {type: null}]`` and nested models as ``$ref``s. A
    Python client (the SDK's jsonschema) revalidates every result against the output schema: for
    StatusResponse that took ~2 ms a call in anyOf branches and reference lookups, more than the server's
    own work. Here ``anyOf`` with null becomes ``type: [X, "null"]`` and non-recursive local ``$ref``s are
    inlined; titles, descriptions and defaults stay.
    """
    return _Compactor(schema.get("$defs", {})).run(schema)


class _Compactor:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.kept_refs = False  # a recursive or clashing reference stays, and with it $defs

    def run(self, schema: dict[str, Any]) -> dict[str, Any]:
        result = self.walk(schema, frozenset())
        if self.kept_refs:
            result["$defs"] = {name: self.walk(d, frozenset({name})) for name, d in self.defs.items()}
        return result

    def walk(self, node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [self.walk(x, seen) for x in node]
        if not isinstance(node, dict):
            return node
        inlined = self.inline(node, seen)
        if inlined is not None:
            return inlined
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k == "$defs":
                continue
            if k in ("properties", "patternProperties") and isinstance(v, dict):  # name -> schema maps
                out[k] = {name: self.walk(sub, seen) for name, sub in v.items()}
            elif k in ("default", "examples", "enum", "const"):  # values, not schemas
                out[k] = v
            else:
                out[k] = self.walk(v, seen)
        return _nullable_as_type(out)

    def inline(self, node: dict[str, Any], seen: frozenset[str]) -> Any:
        """The referenced definition merged into a ``$ref`` node, or None to keep the node as it is."""
        ref = node.get("$ref")
        name = ref[len(_DEFS):] if isinstance(ref, str) and ref.startswith(_DEFS) else None
        if name is None or name not in self.defs:
            return None
        target = self.defs[name]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if name in seen or not set(siblings) & set(target) <= _ANNOTATIONS:
            self.kept_refs = True
            return None
        return self.walk({**target, **siblings}, seen | {name})


def _nullable_as_type(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [S, {type: null}]`` as S with ``type: [S.type, "null"]`` where that means the same."""
    branches = node.get("anyOf")
    if not (isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches):
        return node
    other = branches[0] if branches[1] == {"type": "null"} else branches[1]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if (isinstance(other, dict) and isinstance(other.get("type"), str) and set(other) <= _TYPED_KEYWORDS
            and set(other) & set(rest) <= _ANNOTATIONS):
        return {**other, **rest, "type": [other["type"], "null"]}
    return node


def _status_text(manager: JobManager, st: StatusResponse, where: Delivery, preview: bool) -> str:
    lines = [f"job {st.job_id}: {st.status}, {st.progress_percent}%"]
    if st.status == "pending":
        lines.append(st.message)
    elif st.status == "running":
        eta = f", about {max(0, round(st.eta_seconds or 0))} s left" if st.eta_seconds is not None else ""
        lines.append(f"{st.sub_step or st.message}{eta}. Call get_status with this job_id to follow it.")
    elif st.status == "completed":
        p = st.parameters
        what = f"{str(p.get('output_format', 'png')).upper()}, {p.get('width', '?')}x{p.get('height', '?')}"
        final = None if st.output_file else manager.artifact(st.job_id, "final.png")
        saved = st.output_file or (str(final) if final else None)
        if saved and where.http:
            lines.append(f"Saved on the server at {saved} ({what}).")
        elif saved:
            lines.append(f"Saved to {saved} ({what}). Open it from there.")
        if where.http:
            lines.append(f"Download: {where.url(f'/jobs/{st.job_id}/download')} (send the same bearer token "
                         "as for this MCP endpoint, if the server has one).")
        limit = (f"; over HTTP only files up to {_mb(MAX_INLINE_BYTES)}, larger ones from the download URL"
                 if where.http else "")
        lines.append(f"Full-size PNG as an MCP resource: {st.final_result} (resources/read{limit})."
                     + (" A small preview is attached." if preview else ""))
    else:
        lines.append(f"Reason: {st.error or st.message}")
    lines += [f"Note: {w}" for w in st.warnings]
    return "\n".join(lines)


# An ImageContent's JSON without its data, plus the comma that joins it to the content list.
_IMAGE_ENVELOPE = len(ImageContent(data="", mime_type="image/jpeg").model_dump_json(by_alias=True,
                                                                                    exclude_none=True)) + 1


def status_result(
    manager: JobManager, st: StatusResponse, with_preview: bool, where: Delivery | None = None
) -> CallToolResult:
    """A status as a tool result: text for the person, a preview for the model, links, structured data.

    Whatever the job, the serialized result stays under MAX_RESULT_CHARS (Claude Desktop refuses 1 MiB).
    """
    where = where or Delivery("stdio")
    if st.download_url:  # a server path: absolute on HTTP transports, meaningless over stdio
        st = st.model_copy(update={"download_url": where.url(st.download_url)})
    data = None
    if with_preview and st.status != "pending" and manager.has_artifact(st.job_id, "preview.jpg"):
        # Rewritten (atomically) after step 1 and again at the end: its mtime keys the encoded copy.
        preview = manager.store.job_dir(st.job_id) / "preview.jpg"
        try:
            data = _preview_b64(str(preview), preview.stat().st_mtime_ns)
        except OSError:  # the folder was removed under us: no preview
            data = None
        data = data if data is not None and len(data) <= MAX_PREVIEW_B64 else None
    content: list[Any] = [TextContent(text=_status_text(manager, st, where, preview=data is not None))]
    for key in ("final_result", "step1_result"):
        uri = getattr(st, key)
        if uri:
            name = uri.rsplit("/", 1)[-1]
            url = where.url(f"/jobs/{st.job_id}/{name}")
            content.append(ResourceLink(uri=uri, name=name, mime_type="image/png",
                                        description=f"Also at {url} (HTTP GET, same token)." if url else None))
    delivered = manager.output_file(st.job_id)
    if delivered is not None:
        content.append(ResourceLink(
            uri=f"adgen://jobs/{st.job_id}/{DOWNLOAD}", name=delivered.name, size=delivered.stat().st_size,
            mime_type=OUTPUT_TYPES.get(delivered.suffix.lower(), "application/octet-stream"),
        ))
    result = CallToolResult(content=content, structured_content=st.model_dump(mode="json"))
    if data is not None:
        # Only the preview can be large; everything else is bounded text. Base64 needs no JSON escaping, so
        # the result's size is the rest's plus the preview's, without serializing the image on every poll.
        size = len(result.model_dump_json(by_alias=True, exclude_none=True)) + _IMAGE_ENVELOPE + len(data)
        if size <= MAX_RESULT_CHARS:
            result.content.insert(1, ImageContent(data=data, mime_type="image/jpeg"))
        else:  # drop it, and say so
            result.content[0] = TextContent(text=_status_text(manager, st, where, preview=False))
    return result


async def read_artifact(manager: JobManager, job_id: str, artifact: str, where: Delivery) -> bytes:
    """A job's file for resources/read: exact bytes, unless the transport cannot carry them in one message."""
    if artifact == DOWNLOAD:
        path = manager.output_file(job_id) or manager.artifact(job_id, "final.png")
    else:
        path = manager.artifact(job_id, artifact)
    if path is None:
        raise ResourceError(f"artifact: no such file for this job; one of {DOWNLOAD}, {', '.join(ARTIFACTS)} "
                            "once the job has made it")
    size = path.stat().st_size
    if where.http and size > MAX_INLINE_BYTES:
        url = where.url(f"/jobs/{job_id}/{artifact}")
        # An error, not a text stand-in: a client asking for an image must not get a URL as its bytes.
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"{artifact} is {_mb(size)}, over the {_mb(MAX_INLINE_BYTES)} one MCP message over HTTP "
            f"can carry; download it from {url} (same bearer token as the MCP endpoint)",
            data={"download_url": url, "size": size},
        )
    return await anyio.Path(path).read_bytes()


def recent_resources(manager: JobManager, where: Delivery) -> list[Resource]:
    """Recent finished ads for resources/list, so a person can attach one in their client."""
    out = []
    for st in manager.recent_results(RECENT_RESOURCES):
        final = manager.artifact(st.job_id, "final.png")
        if final is None or st.final_result is None:
            continue
        size = final.stat().st_size
        copy = st.parameters.get("text_content") or "(no text)"
        saved = f" Saved at {st.output_file}." if st.output_file else ""
        http = (f" Over HTTP: {where.url(f'/jobs/{st.job_id}/final.png')}."
                if where.http and size > MAX_INLINE_BYTES else "")
        out.append(Resource(
            uri=st.final_result,
            name=f"{Path(st.output_file).stem if st.output_file else 'adgen-' + st.job_id[:8]}.png",
            title=f"Ad: {copy[:60]}", mime_type="image/png", size=size,
            description=f"Final ad of job {st.job_id}, {st.parameters.get('width')}x{st.parameters.get('height')} "
            f"PNG, copy: {copy[:120]}.{saved}{http}",
        ))
    return out


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
        f"Over HTTP, files over {_mb(MAX_INLINE_BYTES)} are refused with their download URL.",
    )
    async def job_artifact(job_id: str, artifact: str, ctx: Context) -> bytes:
        return await read_artifact(manager, job_id, artifact, delivery_for(transport, ctx))
