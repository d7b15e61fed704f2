"""Command line: ``adgen-mcp [--transport stdio|sse|streamable-http] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from mcp_server.accept_clock import ClockMiddleware
from mcp_server.poll_gate import PollGate
from mcp_server.quiet_replies import quiet_replies
from mcp_server.security import GuardMiddleware, local_host_patterns
from mcp_server.server import build_server
from pipeline.config import Settings
from pipeline.jobs import JobManager, StartupError
from pipeline.priority import answer_first

log = logging.getLogger("adgen")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="adgen-mcp", description="adgen MCP server (ad images from product photos)")
    p.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP transports bind here (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path, help="job folders and statistics (env ADGEN_DATA_DIR)")
    p.add_argument("--backend", choices=["draft", "auto", "diffusion"], help="env ADGEN_BACKEND; default draft")
    p.add_argument("--log-level", help="env ADGEN_LOG_LEVEL; default INFO")
    return p.parse_args(argv)


def transport_security(host: str, settings: Settings) -> TransportSecuritySettings | None:
    """DNS-rebinding protection when bound to loopback (plus any extra allowed hosts)."""
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.allowed_hosts:
        return None  # bound to a public interface on purpose: Host headers vary; use ADGEN_TOKEN
    hosts = local_host_patterns() + settings.allowed_hosts
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def freeze_startup_heap() -> None:
    """Move everything built at start-up (modules, schemas, validators: ~115k objects) out of the garbage
    collector's view. A full collection walks every tracked object, ~95 ms on 2 shared cores, and it runs on
    the event loop at whatever call allocates at that moment: under load those were the slowest accepts and
    polls. Frozen, a full collection walks only what was created since."""
    gc.collect()
    gc.freeze()


async def serve(args: argparse.Namespace, settings: Settings) -> None:
    async with JobManager(settings) as manager:
        server = build_server(manager, transport=args.transport)
        if args.transport == "stdio":
            freeze_startup_heap()
            await server.run_stdio_async()
            return
        import uvicorn

        security = transport_security(args.host, settings)
        app: ASGIApp
        if args.transport == "sse":
            app = server.sse_app(host=args.host, transport_security=security)
        else:
            mcp_app = server.streamable_http_app(host=args.host, transport_security=security)
            quiet_replies(server)  # a request that streams nothing is answered as JSON (mcp_server/quiet_replies.py)
            app = PollGate(mcp_app)  # polls in turn, behind requests that do something (mcp_server/poll_gate.py)
        guarded = GuardMiddleware(ClockMiddleware(app), settings.token, security.allowed_hosts if security else None)
        log.info("serving %s on http://%s:%d%s", args.transport, args.host, args.port,
                 " (bearer token required)" if settings.token else "")
        config = uvicorn.Config(guarded, host=args.host, port=args.port, log_level=settings.log_level.lower(),
                                timeout_graceful_shutdown=5, lifespan="on")
        freeze_startup_heap()
        await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides: dict[str, object] = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.backend:
        overrides["backend"] = args.backend
    if args.log_level:
        overrides["log_level"] = args.log_level
    settings = Settings.from_env(**overrides)
    # stdout belongs to the MCP stdio transport: every log line goes to stderr.
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    answer_first()  # this thread runs the event loop: requests before batch work (pipeline/priority.py)
    try:
        anyio.run(serve, args, settings)
    except KeyboardInterrupt:
        pass
    except StartupError as exc:
        log.error("%s", exc)
        sys.exit(3)


if __name__ == "__main__":
    main()
