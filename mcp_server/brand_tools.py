"""Brand kits over MCP (save_brand_kit, list_brand_kits, delete_brand_kit) and REST (/brand-kits).

Both faces take and return the same pydantic models (``BrandKitInput``, ``BrandKit``...), so they
cannot drift; the checks (fonts parsed with fontTools, logos decoded or SVGs sanitised and
rasterised) run in a worker thread of the server, never on its event loop.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.images import InputError
from pipeline.jobs import JobManager
from pipeline.schemas import BrandKit, BrandKitDeleted, BrandKitInput, BrandKitList, describe_validation

MAX_KIT_BODY = 40 * 1024 * 1024
KitName = Annotated[str, Field(max_length=40, description="The kit's name.")]

SAVE_DESCRIPTION = """Save a brand kit (saving an existing name replaces it): colours (primary = call-to-action
button, secondary = badge, text = the copy, background = a panel behind the copy when the picture needs one),
fonts (a list_fonts id, or {data: base64 TTF/OTF/WOFF2} to upload one), a logo (PNG or self-contained SVG, as
base64 or a path in the input folders) with the corner it goes in, and tone words for the designer. Use it with
generate_ad's brand_kit. Kits are kept on the server across restarts."""


def _save_signature() -> inspect.Signature:
    """save_brand_kit's parameters are BrandKitInput's fields: one schema for MCP and REST."""
    params = []
    for name, info in BrandKitInput.model_fields.items():
        if info.default_factory is not None:  # a FieldInfo with a factory cannot also carry the signature's default
            info = Field(description=info.description)
            default = BrandKitInput.model_fields[name].get_default(call_default_factory=True)
        else:
            default = inspect.Parameter.empty if info.is_required() else info.default
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=Annotated[BrandKitInput.model_fields[name].annotation, info],
                                        default=default))
    return inspect.Signature(params, return_annotation=BrandKit)


async def save_kit(manager: JobManager, kit: BrandKitInput) -> BrandKit:
    return await anyio.to_thread.run_sync(manager.brand_kits.save, kit)


def register_brand_tools(server: MCPServer, manager: JobManager) -> None:
    async def save_brand_kit(**kwargs: Any) -> BrandKit:
        try:
            kit = BrandKitInput(**kwargs)
        except ValidationError as exc:
            raise ToolError(describe_validation(exc)) from None
        try:
            return await save_kit(manager, kit)
        except InputError as exc:
            raise ToolError(str(exc)) from None

    sig = _save_signature()
    save_brand_kit.__signature__ = sig  # type: ignore[attr-defined]
    save_brand_kit.__annotations__ = {n: p.annotation for n, p in sig.parameters.items()} | {"return": BrandKit}
    server.tool(name="save_brand_kit", description=SAVE_DESCRIPTION, annotations=ToolAnnotations(
        title="Save a brand kit", read_only_hint=False, destructive_hint=False, idempotent_hint=True,
        open_world_hint=False))(save_brand_kit)

    @server.tool(description="Saved brand kits (name, colours, fonts, logo, corner, tone) for generate_ad's "
                 "brand_kit.", annotations=ToolAnnotations(title="List brand kits", read_only_hint=True))
    async def list_brand_kits() -> BrandKitList:
        return BrandKitList(kits=await anyio.to_thread.run_sync(manager.brand_kits.list))

    @server.tool(description="Delete a saved brand kit with its logo and fonts. Jobs already accepted keep "
                 "their copy of it.", annotations=ToolAnnotations(title="Delete a brand kit", destructive_hint=True,
                                                                   idempotent_hint=True))
    async def delete_brand_kit(name: KitName) -> BrandKitDeleted:
        try:
            return await _delete(manager, name)
        except InputError as exc:
            raise ToolError(str(exc)) from None


async def _delete(manager: JobManager, name: str) -> BrandKitDeleted:
    """Deleted, or InputError (unknown kit: a clear error, as a REST 404)."""
    if not await anyio.to_thread.run_sync(manager.brand_kits.delete, name):
        manager.brand_kits.get(name)  # raises BrandKitNotFound with the message
    return BrandKitDeleted(name=name, deleted=True, message=f"brand kit {name!r} deleted")


def register_brand_routes(api: Any, manager: JobManager) -> None:
    """The REST routes, in ``http.RestApi``'s table (so in the OpenAPI document)."""
    from mcp_server.http import _body_model, _dump, _error

    @api.post("/brand-kits", request=BrandKitInput, response=BrandKit, responses={
        413: f"request body over {MAX_KIT_BODY // 2**20} MiB", 422: "a field is invalid (the reason names it)"})
    async def save_brand_kit(request: Request) -> Response:
        """Save a brand kit (colours, fonts, logo, tone); the same name replaces it"""
        kit = await _body_model(request, BrandKitInput, MAX_KIT_BODY)
        if isinstance(kit, Response):
            return kit
        try:
            return _dump(await save_kit(manager, kit))
        except InputError as exc:
            return _error(422, str(exc))

    @api.get("/brand-kits", response=list[BrandKit])
    async def list_brand_kits(request: Request) -> Response:
        """Saved brand kits"""
        kits = await anyio.to_thread.run_sync(manager.brand_kits.list)
        return JSONResponse([k.model_dump(mode="json") for k in kits])

    @api.route("/brand-kits/{name}", "DELETE", path_params={"name": KitName}, response=BrandKitDeleted,
               responses={404: "no brand kit of that name"})
    async def delete_brand_kit(request: Request) -> Response:
        """Delete a brand kit with its logo and fonts"""
        try:
            return _dump(await _delete(manager, request.path_params["name"]))
        except InputError as exc:
            return _error(404, str(exc))
