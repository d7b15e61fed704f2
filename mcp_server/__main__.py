"""Command line: ``adgen-mcp [--transport stdio|sse|streamable-http] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import anyio

from mcp_server.server import build_server
from pipeline.config import Settings
from pipeline.jobs import JobManager, StartupError

log = logging.getLogger("adgen")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="adgen-mcp", description="adgen MCP server (ad images from product photos)")
    p.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP transports bind here (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path, help="job folders and statistics (env ADGEN_DATA_DIR)")
    p.add_argument("--backend", choices=["draft", "auto", "diffusion"], help="env ADGEN_BACKEND; default draft")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace, settings: Settings) -> None:
    async with JobManager(settings) as manager:
        server = build_server(manager)
        if args.transport == "stdio":
            await server.run_stdio_async()
            return
        import uvicorn

        if args.transport == "sse":
            app = server.sse_app(host=args.host)
        else:
            app = server.streamable_http_app(host=args.host)
        log.info("serving %s on http://%s:%d", args.transport, args.host, args.port)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                                timeout_graceful_shutdown=5)
        await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # stdout belongs to the MCP stdio transport: every log line goes to stderr.
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides: dict[str, object] = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.backend:
        overrides["backend"] = args.backend
    settings = Settings.from_env(**overrides)
    try:
        anyio.run(serve, args, settings)
    except KeyboardInterrupt:
        pass
    except StartupError as exc:
        log.error("%s", exc)
        sys.exit(3)


if __name__ == "__main__":
    main()
