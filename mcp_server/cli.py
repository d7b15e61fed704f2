"""``adgen``: the human command line. It is a real MCP client of the adgen server.

``adgen generate PHOTO --text "..."`` starts the server over stdio (or talks to a running
one with ``--server http://127.0.0.1:8000/mcp``), streams progress as a bar, and saves
the final PNG (and the step 1 image) next to ``--out``.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters


def _bar(progress: float, message: str | None) -> None:
    width = 30
    filled = int(width * progress / 100)
    line = f"\r[{'#' * filled}{'.' * (width - filled)}] {progress:5.1f}%  {(message or '')[:60]:<60}"
    sys.stderr.write(line)
    sys.stderr.flush()


def _server_target(args: argparse.Namespace) -> Any:
    if args.server:
        return args.server
    env = dict(os.environ)
    if args.data_dir:
        env["ADGEN_DATA_DIR"] = str(args.data_dir)
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "--transport", "stdio", "--log-level", "WARNING"], env=env)


async def _save_resource(client: Client, uri: str, path: Path) -> None:
    res = await client.read_resource(uri)
    blob = res.contents[0]
    data = base64.b64decode(blob.blob) if hasattr(blob, "blob") else blob.text.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def generate(args: argparse.Namespace) -> int:
    photo = Path(args.photo).read_bytes()
    arguments: dict[str, Any] = {
        "product_image": base64.b64encode(photo).decode(),
        "text_content": args.text,
        "bg_prompt": args.prompt,
        "text_position": args.position,
        "wait_seconds": 40,
    }
    if args.seed is not None:
        arguments["seed"] = args.seed
    if args.style:
        arguments["html_style_prompt"] = args.style
    if args.color:
        arguments["text_color"] = args.color
    if args.font:
        arguments["font_family"] = args.font

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        _bar(progress, message)

    started = time.monotonic()
    async with Client(_server_target(args), mode="legacy") as client:
        result = await client.call_tool("generate_ad", arguments, progress_callback=on_progress)
        while not result.is_error and (result.structured_content or {}).get("status") in ("pending", "running"):
            job_id = result.structured_content["job_id"]
            result = await client.call_tool(
                "get_status", {"job_id": job_id, "wait_seconds": 40, "include_preview": False},
                progress_callback=on_progress,
            )
        sys.stderr.write("\n")
        if result.is_error:
            print(f"error: {result.content[0].text}", file=sys.stderr)
            return 2
        status = result.structured_content
        if status["status"] != "completed":
            print(f"job {status['status']}: {status.get('error') or status.get('message')}", file=sys.stderr)
            return 1
        out = Path(args.out)
        await _save_resource(client, status["final_result"], out)
        if status.get("step1_result"):
            await _save_resource(client, status["step1_result"], out.with_name(out.stem + "_step1.png"))
    print(f"{out}  ({time.monotonic() - started:.1f} s, job {status['job_id']}, seed {status['parameters']['seed']})")
    return 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="adgen", description="Make an ad image with the adgen MCP server.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate an ad from a product photo")
    g.add_argument("photo", help="product photo (PNG, JPEG or WebP)")
    g.add_argument("--text", help="the ad copy (omit for an image without text)")
    g.add_argument("--prompt", default="Wooden table in a cozy cafe, sunlight, realistic", help="background scene")
    g.add_argument("--style", help="style hint for the text layer")
    g.add_argument("--color", help="text colour or CSS gradient")
    g.add_argument("--font", help="font family (see list_fonts)")
    g.add_argument("--position", default="auto", choices=["top", "center", "bottom", "auto"])
    g.add_argument("--seed", type=int)
    g.add_argument("--out", default="out/ad.png")
    g.add_argument("--server", help="URL of a running server (streamable HTTP), else one is started over stdio")
    g.add_argument("--data-dir", type=Path, help="job folder root for a server started here")
    args = p.parse_args(argv)
    sys.exit(anyio.run(generate, args))


if __name__ == "__main__":
    main()
