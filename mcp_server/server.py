"""Builds the MCP server over a job manager: tools, resources and the REST routes."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from mcp_server.http import register_routes
from mcp_server.tools import register_tools
from pipeline.jobs import JobManager

INSTRUCTIONS = """adgen makes advertising images. Call generate_ad with a base64 product photo and the ad copy;
it streams progress and returns a job id. Poll get_status until status is completed, then read
final_result (an adgen:// resource). list_fonts shows usable fonts; stop_job cancels a job."""


def build_server(manager: JobManager) -> MCPServer:
    server = MCPServer("adgen", instructions=INSTRUCTIONS, version="0.1.0")
    register_tools(server, manager)
    register_routes(server, manager)
    return server
