"""A do-nothing MCP server over streamable HTTP: the SDK's own latency floor for comparison."""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel


class Pong(BaseModel):
    ok: bool


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    server = MCPServer("noop")

    @server.tool()
    async def noop(job_id: str = "", include_preview: bool = False) -> Pong:
        return Pong(ok=True)

    @server.tool()
    async def accept(product_image: str = "", text_content: str = "", width: int = 0, height: int = 0,
                     wait_seconds: float = 0) -> Pong:
        """generate_ad's arguments (the photo as base64), nothing done: the floor for an accept's latency."""
        return Pong(ok=True)

    server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
