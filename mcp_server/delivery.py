"""How results and files reach a client: what one message may carry on each transport.

Over stdio a client can read any file as a resource; over HTTP the SDK's own client refuses one
message over 1 MiB, so large files go by download URL on the same server instead. Claude Desktop
refuses any tool result over 1 MiB, so every result stays well under that.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult, ImageContent, Resource, ResourceLink, TextContent

from pipeline.jobs import JobManager
from pipeline.jobs.store import ARTIFACTS, OUTPUT_TYPES
from pipeline.schemas import StatusResponse

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
        """Absolute URL of a server path on HTTP transports (the path alone if the host is unknown); a URL that is
        absolute already (distributed mode's presigned bucket link) as it is."""
        if path.startswith(("https://", "http://")):
            return path
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


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1_000_000 else f"{size / 1e3:.0f} KB"


@lru_cache(maxsize=64)
def _preview_b64(path: str, mtime_ns: int) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _status_text(manager: JobManager, st: StatusResponse, where: Delivery, preview: bool) -> str:
    lines = [f"job {st.job_id}: {st.status}, {st.progress_percent}%"]
    if st.status == "pending":
        lines.append(st.message)
    elif st.status == "running":
        eta = f", about {max(0, round(st.eta_seconds or 0))} s left" if st.eta_seconds is not None else ""
        lines.append(f"{st.sub_step or st.message}{eta}. Call get_status with this job_id to follow it.")
    elif st.status == "completed":
        p = st.parameters
        what = f"{str(p.get('output_format', 'png')).upper()}, {_size(st)}"  # a placement's own size
        final = None if st.output_file else manager.artifact(st.job_id, "final.png")
        saved = st.output_file or (str(final) if final else None)
        if saved and where.http:
            lines.append(f"Saved on the server at {saved} ({what}).")
        elif saved:
            lines.append(f"Saved to {saved} ({what}). Open it from there.")
        if where.http:
            lines.append(f"Download: {where.url(f'/jobs/{st.job_id}/download')} (send the same bearer token "
                         "as for this MCP endpoint, if the server has one).")
        limit = (f"; over HTTP only files up to {mb(MAX_INLINE_BYTES)}, larger ones from the download URL"
                 if where.http else "")
        lines.append(f"Full-size PNG as an MCP resource: {st.final_result} (resources/read{limit})."
                     + (" A small preview is attached." if preview and len(st.results) < 2 else ""))
        if len(st.results) > 1:
            lines.append(f"{len(st.results)} results (placement, variant, size, seed):" + (
                " the attached preview is a contact sheet of them all." if preview else ""))
            lines += [f"- {r.placement} v{r.variant} {r.width}x{r.height} seed {r.seed}: {r.uri}"
                      + (f" (saved at {r.path})" if r.path else "") for r in st.results]
    else:
        lines.append(f"Reason: {st.error or st.message}")
    lines += [f"Note: {w}" for w in st.warnings]
    return "\n".join(lines)


# An ImageContent's JSON without its data, plus the comma that joins it to the content list.
_IMAGE_ENVELOPE = len(ImageContent(data="", mime_type="image/jpeg").model_dump_json(by_alias=True,
                                                                                    exclude_none=True)) + 1


def _result_links(st: StatusResponse, where: Delivery) -> list[ResourceLink]:
    """Every placement and variant after the first (which is final_result, linked already)."""
    out = []
    for item in st.results[1:] if len(st.results) > 1 else []:
        name = item.uri.rsplit("/", 1)[-1]
        url = where.url(f"/jobs/{st.job_id}/{name}")
        out.append(ResourceLink(uri=item.uri, name=name, mime_type="image/png",
                                description=f"{item.placement} v{item.variant}, {item.width}x{item.height}"
                                + (f"; also at {url} (HTTP GET, same token)." if url else ".")))
    return out


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
    content += _result_links(st, where)
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
        names = ", ".join(a for a in ARTIFACTS if not a.startswith("result-"))
        raise ResourceError(f"artifact: no such file for this job; one of {DOWNLOAD}, {names}, "
                            "result-<placement>-v<n>.png (see results in the status) once the job has made it")
    size = path.stat().st_size
    if where.http and size > MAX_INLINE_BYTES:
        url = where.url(f"/jobs/{job_id}/{artifact}")
        # An error, not a text stand-in: a client asking for an image must not get a URL as its bytes.
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"{artifact} is {mb(size)}, over the {mb(MAX_INLINE_BYTES)} one MCP message over HTTP "
            f"can carry; download it from {url} (same bearer token as the MCP endpoint)",
            data={"download_url": url, "size": size},
        )
    return await anyio.Path(path).read_bytes()


def _size(st: StatusResponse) -> str:
    """The final image's size: its first result's (a placement's own), else the request's."""
    if st.results:
        return f"{st.results[0].width}x{st.results[0].height}"
    return f"{st.parameters.get('width')}x{st.parameters.get('height')}"


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
            description=f"Final ad of job {st.job_id}, {_size(st)} PNG, copy: {copy[:120]}.{saved}{http}",
        ))
    return out
