"""adgen's protocol layer: MCP tools and resources, transports, REST routes."""
