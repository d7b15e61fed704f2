"""The Studio MCP App: the ``ui://adgen/studio`` resource and the app-only tools it needs.

Hosts that render MCP Apps (``io.modelcontextprotocol/ui``) show studio.html in a sandboxed iframe next to
generate_ad / get_status / edit_ad results; everything else keeps the plain text and image answers, because
a tool only gains a ``_meta.ui`` entry (``ui_meta()``). studio.html is built from the top-level ``studio/``
folder (``make studio``) and committed, so Python users never need Node.

The app reaches the server only through the host (``tools/call`` relayed over postMessage), and a host
refuses a tool result over 1 MiB, so images travel through ``studio_image`` in base64 chunks of at most
MAX_CHUNK bytes of file (~683 KiB of base64) or as one downscaled JPEG.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.apps import EXTENSION_ID, Apps, ResourceCsp
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from PIL import Image
from pydantic import BaseModel, Field

from mcp_server.delivery import sniff_mime
from pipeline.jobs import JobManager, JobNotFound

STUDIO_URI = "ui://adgen/studio"
LEGACY_URI_KEY = "ui/resourceUri"  # the key ext-apps 1.x hosts read; ext-apps' own registerAppTool sets both
MAX_CHUNK = 512 * 1024  # file bytes per studio_image answer: base64 of it plus the envelope stays far below 1 MiB
MAX_SIDE = 2048  # largest downscaled display copy
DOWNLOAD = "download"  # the delivered file (format as asked), as in adgen://jobs/<id>/download


def ui_meta() -> dict[str, Any]:
    """The ``meta=`` a model-facing tool passes to ``server.tool(...)`` to open the Studio beside its result."""
    return {"ui": {"resourceUri": STUDIO_URI}, LEGACY_URI_KEY: STUDIO_URI}


def studio_html() -> str:
    """The committed build (``make studio`` rewrites it)."""
    return resources.files(__package__).joinpath("studio.html").read_text(encoding="utf-8")


class ImageChunk(BaseModel):
    """A slice of one of a job's images for the Studio app, or a whole downscaled JPEG copy."""

    job_id: str
    artifact: str
    mime_type: str
    offset: int = Field(description="Where this slice starts in the file.")
    total_bytes: int = Field(description="Size of the whole file (of the JPEG copy when max_side was given).")
    data: str = Field(description="Base64 of bytes [offset, offset + len).")
    done: bool = Field(description="This slice reaches the end of the file.")
    width: int = Field(description="Pixel width of the image served (of the copy when downscaled).")
    height: int


class JobBrief(BaseModel):
    job_id: str
    status: str
    progress_percent: int
    text_content: str | None = None
    width: int | None = None
    height: int | None = None
    parent_job_id: str | None = None


class JobBriefs(BaseModel):
    """Newest first: lets the app find the job a still-open generate_ad call started."""

    jobs: list[JobBrief]


def _slice(path: Path, offset: int, length: int) -> tuple[bytes, int, str, tuple[int, int]]:
    with path.open("rb") as f:
        total = f.seek(0, io.SEEK_END)
        f.seek(0)
        mime = sniff_mime(f.read(12))
        f.seek(min(offset, total))
        data = f.read(length)
    with Image.open(path) as im:  # header only
        size = im.size
    return data, total, mime, size


@lru_cache(maxsize=16)
def _downscaled(path: str, mtime_ns: int, max_side: int) -> tuple[bytes, tuple[int, int]]:
    with Image.open(path) as src:
        src.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        rgba = src.convert("RGBA")  # transparent areas (a text layer) on white, as a viewer shows them
    rgb = Image.new("RGB", rgba.size, (255, 255, 255))
    rgb.paste(rgba, mask=rgba.getchannel("A"))
    buf = io.BytesIO()
    for quality in (88, 75, 60):  # a 2048 px photo at 88 fits easily; the loop is the guarantee
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= MAX_CHUNK:
            break
    return buf.getvalue(), rgb.size


def _resolve(manager: JobManager, job_id: str, artifact: str) -> Path:
    try:
        manager.status(job_id, with_metrics=False)
    except JobNotFound as exc:
        raise ToolError(str(exc)) from None
    if artifact == DOWNLOAD:
        path = manager.output_file(job_id) or manager.artifact(job_id, "final.png")
    else:
        path = manager.artifact(job_id, artifact)
    if path is None:
        raise ToolError(f"artifact: job {job_id} has no {artifact!r} (yet); one of {DOWNLOAD}, final.png, "
                        "step1.png, text.png, preview.jpg... once the job has made it")
    return path


async def read_image(
    manager: JobManager, job_id: str, artifact: str, offset: int, length: int, max_side: int | None
) -> ImageChunk:
    path = _resolve(manager, job_id, artifact)
    try:
        if max_side is not None:
            jpeg, (w, h) = await anyio.to_thread.run_sync(_downscaled, str(path), path.stat().st_mtime_ns, max_side)
            data, total, mime = jpeg[offset:offset + length], len(jpeg), "image/jpeg"
        else:
            data, total, mime, (w, h) = await anyio.to_thread.run_sync(_slice, path, offset, length)
    except OSError as exc:  # removed under us, or not an image
        raise ToolError(f"artifact: {artifact} of job {job_id} cannot be read ({exc.__class__.__name__})") from None
    return ImageChunk(job_id=job_id, artifact=artifact, mime_type=mime, offset=offset, total_bytes=total,
                      data=base64.b64encode(data).decode(), done=offset + len(data) >= total, width=w, height=h)


def studio_extension(manager: JobManager, transport: str = "stdio") -> Apps:
    """The Studio as the SDK's Apps extension: ``MCPServer(..., extensions=[studio_extension(...)])``.

    ``transport`` is accepted for symmetry with register_tools; images go through the host either way.
    """
    apps = Apps()
    apps.add_html_resource(
        STUDIO_URI, studio_html(), name="adgen-studio", title="adgen Studio",
        description="Live progress, the finished ad at full size, every result, copy/position/colour/font edits "
        "(edit_ad), stop and download, for generate_ad, get_status and edit_ad.",
        csp=ResourceCsp(),  # no external origin at all: the document is self-contained, data reaches it by tool calls
        prefers_border=True,
    )

    @apps.tool(
        resource_uri=STUDIO_URI, visibility=["app"], name="studio_image",
        description="For the Studio app: one slice of a job's image in base64 (offset/length, at most "
        f"{MAX_CHUNK} bytes a call), or with max_side a whole downscaled JPEG copy.",
        annotations=ToolAnnotations(title="Studio image", read_only_hint=True),
    )
    async def studio_image(
        job_id: Annotated[str, Field(max_length=64)],
        artifact: Annotated[str, Field(max_length=64, description="final.png, download, step1.png, preview.jpg... "
                                       "(the names of adgen://jobs/<id>/<artifact>).")] = "final.png",
        offset: Annotated[int, Field(ge=0)] = 0,
        length: Annotated[int, Field(ge=1, le=MAX_CHUNK)] = MAX_CHUNK,
        max_side: Annotated[int | None, Field(ge=32, le=MAX_SIDE, description="Downscale to fit this box (JPEG); "
                                              "null = the file's own bytes.")] = None,
    ) -> Annotated[CallToolResult, ImageChunk]:
        chunk = await read_image(manager, job_id, artifact, offset, length, max_side)
        # Only a short text beside the structured data: the SDK's default would repeat the base64 as text.
        note = f"{chunk.artifact} of job {job_id}: bytes {offset}+{len(chunk.data) * 3 // 4} of {chunk.total_bytes}"
        return CallToolResult(content=[TextContent(text=note)], structured_content=chunk.model_dump(mode="json"))

    @apps.tool(
        resource_uri=STUDIO_URI, visibility=["app"], name="studio_jobs",
        description="For the Studio app: the newest jobs, briefly (id, state, progress, copy, size), so the app "
        "can show the progress of a job whose generate_ad call has not answered yet.",
        annotations=ToolAnnotations(title="Studio jobs", read_only_hint=True),
    )
    async def studio_jobs(limit: Annotated[int, Field(ge=1, le=50)] = 10) -> JobBriefs:
        briefs = []
        for st in manager.list_jobs(limit):
            p = st.parameters
            briefs.append(JobBrief(job_id=st.job_id, status=st.status, progress_percent=st.progress_percent,
                                   text_content=p.get("text_content"), width=p.get("width"), height=p.get("height"),
                                   parent_job_id=st.parent_job_id))
        return JobBriefs(jobs=briefs)

    return apps


def register_studio(server: MCPServer, manager: JobManager, transport: str = "stdio") -> None:
    """Add the Studio to an already built server (public SDK API only).

    Extensions are fixed when an MCPServer is constructed, so after construction the Apps instance's
    tools and resource are added one by one; what this cannot do is advertise
    ``capabilities.extensions["io.modelcontextprotocol/ui"]`` (hosts decide by the tools' ``_meta.ui``).
    ``studio_extension`` passed to the constructor does both.
    """
    apps = studio_extension(manager, transport)
    for tool in apps.tools():
        server.add_tool(tool.fn, meta=tool.meta, **tool.kwargs)
    for binding in apps.resources():
        server.add_resource(binding.resource)


__all__ = ["EXTENSION_ID", "STUDIO_URI", "ImageChunk", "JobBriefs", "register_studio", "studio_extension",
           "studio_html", "ui_meta"]
