"""Builds the MCP server over a job manager: tools, resources and the REST routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ToolError,
    UnexpectedToolError,
)
from mcp_types import CallToolResult, InputRequiredResult, Resource, Tool
from pydantic import AnyUrl, ValidationError

from mcp_server.brand_tools import register_brand_tools
from mcp_server.delivery import Delivery, Transport, recent_resources, sniff_mime
from mcp_server.http import register_routes
from mcp_server.schema_compact import compact_schema
from mcp_server.studio import studio_extension
from mcp_server.tasks import AdTasks
from mcp_server.tools import register_tools
from pipeline.jobs import JobManager
from pipeline.schemas import describe_validation

INSTRUCTIONS = """adgen makes advertising images. Call generate_ad with the product photo (a path in the
server's input folders, an http(s) URL, or base64) and the ad copy; it streams progress and
returns a job id. Poll get_status until status is completed: the answer then says where the
ad was saved (output_file, an absolute path: tell the person) and, over HTTP, its download URL.
get_resources lists the input folders and the output folder; list_fonts shows usable fonts;
stop_job cancels a job. Recent ads are listed as resources."""


class AdgenServer(MCPServer):
    """MCPServer with two adjustments the SDK has no hook for.

    * Tool errors in the project's one style: the SDK reports bad argument types and ranges as a
      raw pydantic dump (input echoed, a pydantic.dev link, a 'Error executing tool' prefix).
    * tools/list publishes output schemas in a spelling clients validate faster (same meaning).
    * resources/list names recent finished ads (the SDK lists only static resources, and a
      template such as adgen://jobs/{job_id}/{artifact} is not a resource a person can pick).
    """

    def __init__(self, manager: JobManager, transport: Transport, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manager = manager
        self.transport = transport
        self._compact: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # a crash: the SDK logs it and answers without details
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(describe_validation(cause)) from cause  # cause kept: the SDK logs field names
            if isinstance(cause, ToolError | ResourceError):
                raise ToolError(str(cause)) from cause  # the tool's own one-liner, without the SDK's prefix
            raise

    async def list_tools(self) -> list[Tool]:
        # Output schemas in the spelling clients validate fastest (same meaning; see compact_schema).
        tools = await super().list_tools()
        for tool in tools:
            if tool.output_schema is not None:
                source, compact = self._compact.get(tool.name, (None, None))
                if source is not tool.output_schema or compact is None:  # first listing, or a new schema
                    source, compact = tool.output_schema, compact_schema(tool.output_schema)
                    self._compact[tool.name] = (source, compact)
                tool.output_schema = compact
        return tools

    async def list_resources(self) -> list[Resource]:
        # No request context here, so no base URL: descriptions carry server paths over HTTP.
        return [*await super().list_resources(), *recent_resources(self.manager, Delivery(self.transport))]

    async def read_resource(
        self, uri: AnyUrl | str, context: Context | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        results = await super().read_resource(uri, context)
        if isinstance(results, InputRequiredResult):
            return results
        # One template serves PNG, JPEG and WebP files: say what each really is.
        return [ReadResourceContents(item.content, sniff_mime(item.content), item.meta)
                if isinstance(item.content, bytes) else item for item in results]


def build_server(manager: JobManager, transport: Transport = "stdio") -> MCPServer:
    """``transport`` is how clients will reach this server: over HTTP, large files go by download URL."""
    # Extensions: the Studio app (MCP Apps) and tasks (SEP-2663); clients that negotiate neither see no change.
    extensions = [studio_extension(manager, transport), AdTasks(manager, transport)]
    server = AdgenServer(manager, transport, name="adgen", instructions=INSTRUCTIONS, version="0.1.0",
                         extensions=extensions)
    register_tools(server, manager, transport)
    register_brand_tools(server, manager)
    register_routes(server, manager)
    return server
