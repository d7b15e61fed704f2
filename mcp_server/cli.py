"""``adgen``: the human command line. It is a real MCP client of the adgen server.

``adgen generate PHOTO --text "..."`` starts the server over stdio (or talks to a running
one with ``--server http://127.0.0.1:8000/mcp``, sending ``ADGEN_TOKEN`` as its bearer
token), streams progress as a bar, and reports where the ad was saved. Over HTTP the files
are downloaded from the server's download URLs, since one MCP message over HTTP cannot
carry a large image; over stdio they are read as MCP resources.

``adgen config`` prints a Claude Desktop configuration for this installation.

Exit codes: 0 done, 1 the job failed or was stopped, 2 bad input or usage, 3 the server
could not be reached (or started). Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import BlobResourceContents, TextContent

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
MAX_PHOTO_BYTES = 25 * 1024 * 1024  # the server's own limit (Settings.max_image_bytes)
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


_last_logged: list[str] = []


def _bar(progress: float, message: str | None) -> None:
    if not sys.stderr.isatty():
        # A log file gets no carriage-return animation: one line whenever the stage changes.
        stage = (message or "").split(" (")[0]
        if not _last_logged or _last_logged[-1] != stage or progress >= 100:
            _last_logged.append(stage)
            sys.stderr.write(f"{progress:5.1f}%  {(message or '')[:80]}\n")
        return
    width = 30
    filled = int(width * progress / 100)
    line = f"\r[{'#' * filled}{'.' * (width - filled)}] {progress:5.1f}%  {(message or '')[:60]:<60}"
    sys.stderr.write(line)
    sys.stderr.flush()


def parse_size(value: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*", value)
    if not m:
        raise argparse.ArgumentTypeError("expected WxH in pixels, e.g. 1080x1350")
    return int(m[1]), int(m[2])


def build_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """generate_ad's arguments from the command line; the server checks ranges and says what is allowed."""
    if bool(args.photo) == bool(args.url):
        raise CliError(EXIT_USAGE, "photo: give a photo file or --url URL (exactly one)")
    arguments: dict[str, Any] = {
        "text_content": args.text, "bg_prompt": args.prompt, "text_position": args.position,
        "output_format": args.format, "wait_seconds": 40,
    }
    if args.photo:
        photo = Path(args.photo).expanduser()
        if not photo.is_file():
            raise CliError(EXIT_USAGE, f"photo: no such file: {photo}")
        if photo.stat().st_size > MAX_PHOTO_BYTES:
            raise CliError(EXIT_USAGE, f"photo: {photo} is over {MAX_PHOTO_BYTES // 2**20} MiB, the server's limit")
        try:
            arguments["product_image"] = base64.b64encode(photo.read_bytes()).decode()
        except OSError as exc:
            raise CliError(EXIT_USAGE, f"photo: cannot read {photo}: {exc.strerror}") from None
    else:
        arguments["product_image_url"] = args.url
    if args.size:
        arguments["width"], arguments["height"] = args.size
    if args.placements:
        arguments["placements"] = [p.strip() for p in args.placements.split(",") if p.strip()]
    if args.variants is not None:
        arguments["variants"] = args.variants
    optional = {"seed": args.seed, "html_style_prompt": args.style, "text_color": args.color,
                "subline": args.subline, "cta": args.cta, "badge": args.badge, "price": args.price,
                "font_family": args.font, "quality": args.quality, "brand_kit": args.brand_kit}
    arguments.update({k: v for k, v in optional.items() if v is not None})
    return arguments


def _leaves(exc: BaseException) -> list[BaseException]:
    """The real errors inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _reason(exc: BaseException) -> str:
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, CliError):
            return str(leaf)
    leaf = leaves[0]
    text = str(leaf).strip().splitlines()[0] if str(leaf).strip() else type(leaf).__name__
    return text[:200]


# The SDK turns an HTTP 401 into "Server returned an error response": remember what the server said.
_refused: list[int] = []


async def _note_refusal(response: httpx2.Response) -> None:
    if response.status_code in (401, 403):
        _refused.append(response.status_code)


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("ADGEN_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _transport(args: argparse.Namespace, stack: AsyncExitStack) -> Any:
    if not args.server:
        env = dict(os.environ)
        if args.data_dir:
            env["ADGEN_DATA_DIR"] = str(args.data_dir)
        return StdioServerParameters(command=sys.executable,
                                     args=["-m", "mcp_server", "--transport", "stdio", "--log-level", "WARNING"],
                                     env=env)
    if urlsplit(args.server).path.rstrip("/").endswith("/sse"):
        return sse_client(args.server, headers=_auth_headers())
    http = await stack.enter_async_context(httpx2.AsyncClient(
        headers=_auth_headers(), timeout=httpx2.Timeout(30.0, read=300.0),
        event_hooks={"response": [_note_refusal]}))
    return streamable_http_client(args.server, http_client=http)


async def _download(url: str, path: Path) -> None:
    """Stream one file from the server (same bearer token as MCP) to ``path``, atomically."""
    tmp = path.with_name(f".{path.name}.part")
    async with httpx2.AsyncClient(headers=_auth_headers(), timeout=httpx2.Timeout(30.0, read=300.0)) as http, \
            http.stream("GET", url) as response:
        if response.status_code != 200:
            raise CliError(EXIT_UNREACHABLE, f"download of {url} failed: HTTP {response.status_code}")
        with tmp.open("wb") as f:
            async for chunk in response.aiter_bytes():
                f.write(chunk)
    os.replace(tmp, path)


async def _read_resource(client: Client, uri: str, path: Path) -> None:
    res = await client.read_resource(uri)
    item = res.contents[0]
    if not isinstance(item, BlobResourceContents):
        raise CliError(EXIT_UNREACHABLE, f"{uri}: the server sent text, not the image")
    data = base64.b64decode(item.blob)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _default_out(status: dict[str, Any], fmt: str) -> Path:
    name = Path(status["output_file"]).name if status.get("output_file") else None
    return Path(name or f"adgen-{status['job_id'][:8]}.{EXTENSIONS[fmt]}")


async def _run_job(client: Client, arguments: dict[str, Any]) -> dict[str, Any]:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        _bar(progress, message)

    result = await client.call_tool("generate_ad", arguments, progress_callback=on_progress)
    while not result.is_error and (result.structured_content or {}).get("status") in ("pending", "running"):
        result = await client.call_tool(
            "get_status", {"job_id": result.structured_content["job_id"], "wait_seconds": 40,
                           "include_preview": False},
            progress_callback=on_progress,
        )
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if result.is_error:
        first = result.content[0] if result.content else None
        text = first.text if isinstance(first, TextContent) else "the server refused the request"
        raise CliError(EXIT_USAGE, text.strip().splitlines()[0][:500])
    return result.structured_content or {}


def _targets(args: argparse.Namespace, status: dict[str, Any]) -> tuple[Path | None, list[tuple[str, Path]]]:
    """Where the ad ends up on this machine: --out, else (HTTP) ./<server's name>, else (stdio) the server's file.

    Returns the file to report (None: the server's own output_file) and the (artifact, path) pairs to fetch.
    """
    out = Path(args.out).expanduser() if args.out else None
    if out is None and not args.server and status.get("output_file") and Path(status["output_file"]).is_file():
        out_file: Path | None = None  # the local server already saved it where the person will look
    else:
        out_file = out or _default_out(status, args.format)
    targets = [("download", out_file)] if out_file is not None else []
    if args.step1 and status.get("step1_result"):
        base = out_file or Path(status["output_file"])
        targets.append(("step1.png", (out_file.parent if out_file else Path.cwd()) / f"{base.stem}_step1.png"))
    for _, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
    return out_file, targets


async def _save(client: Client, args: argparse.Namespace, status: dict[str, Any]) -> Path | None:
    job_id = status["job_id"]
    out_file, targets = await anyio.to_thread.run_sync(_targets, args, status)
    for artifact, path in targets:
        if args.server:  # over HTTP: a plain download, whatever the size (MCP messages stop at 1 MiB)
            parts = urlsplit(args.server)
            await _download(f"{parts.scheme}://{parts.netloc}/jobs/{job_id}/{artifact}", path)
        else:  # over stdio: the exact bytes as an MCP resource (no message limit)
            await _read_resource(client, f"adgen://jobs/{job_id}/{artifact}", path)
    return out_file


async def generate(args: argparse.Namespace) -> int:
    arguments = build_arguments(args)
    where = args.server or "a local adgen server (stdio)"
    started = time.monotonic()
    connected = False
    try:
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(Client(await _transport(args, stack), mode="legacy"))
            connected = True
            status = await _run_job(client, arguments)
            if status.get("status") != "completed":
                raise CliError(EXIT_JOB_FAILED, f"job {status.get('job_id')} {status.get('status')}: "
                               f"{status.get('error') or status.get('message')}")
            saved = await _save(client, args, status)
    except Exception as exc:  # every failure becomes one line and an exit code
        for leaf in _leaves(exc):
            if isinstance(leaf, CliError):
                raise leaf from None
        _refused.extend(code for leaf in _leaves(exc)  # the SSE client raises the HTTP error itself
                        if (code := getattr(getattr(leaf, "response", None), "status_code", None)) in (401, 403))
        if _refused:
            raise CliError(EXIT_USAGE, f"{where} refused the request (HTTP {_refused[-1]}): set ADGEN_TOKEN to "
                           "the server's token") from None
        if not connected:
            raise CliError(EXIT_UNREACHABLE, f"server unreachable: {where}: {_reason(exc)}") from None
        raise CliError(EXIT_UNREACHABLE, f"lost the connection to {where}: {_reason(exc)}") from None
    for warning in status.get("warnings") or []:
        print(f"note: {warning}", file=sys.stderr)
    shown = saved or Path(status["output_file"])
    print(f"job {status['job_id']}, seed {status['parameters'].get('seed')}, "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    print(shown.resolve() if saved else shown)
    for path in await _more_results(args, status, saved):  # placements/variants: the others, one a line
        print(path)
    return EXIT_OK


async def _more_results(args: argparse.Namespace, status: dict[str, Any], saved: Path | None) -> list[Path]:
    """The results after the first: over HTTP downloaded beside the first (under the server's names), over
    stdio where the server saved them (on this machine)."""
    out = []
    for r in (status.get("results") or [])[1:]:
        artifact = r["uri"].rsplit("/", 1)[-1]
        if args.server and saved is not None:
            path = saved.parent / (Path(r["path"]).name if r.get("path") else f"{status['job_id'][:8]}_{artifact}")
            parts = urlsplit(args.server)
            await _download(f"{parts.scheme}://{parts.netloc}/jobs/{status['job_id']}/{artifact}", path)
            out.append(path)
        elif r.get("path"):
            out.append(Path(r["path"]))
    return out


# ---- adgen config -------------------------------------------------------------------------
def _pictures() -> Path:
    pictures = os.environ.get("XDG_PICTURES_DIR")
    return Path(pictures).expanduser() if pictures else Path.home() / "Pictures"


def server_command() -> tuple[str, list[str]]:
    """The absolute command that starts adgen-mcp from this very installation (this interpreter's folder)."""
    # absolute(), not resolve(): a venv's python is a symlink to the base interpreter, which lacks our packages.
    folder = Path(sys.executable).absolute().parent
    exe = folder / ("adgen-mcp.exe" if os.name == "nt" else "adgen-mcp")
    if exe.is_file():
        return str(exe), ["--transport", "stdio"]
    return str(Path(sys.executable).absolute()), ["-m", "mcp_server", "--transport", "stdio"]


def client_config(input_dirs: list[Path], output_dir: Path, name: str = "adgen") -> dict[str, Any]:
    command, args = server_command()
    env = {"ADGEN_INPUT_DIRS": os.pathsep.join(str(d.expanduser().absolute()) for d in input_dirs),
           "ADGEN_OUTPUT_DIR": str(output_dir.expanduser().absolute())}
    return {"mcpServers": {name: {"command": command, "args": args, "env": env}}}


def config(args: argparse.Namespace) -> int:
    inputs = [Path(p) for p in args.input_dir] if args.input_dir else [
        Path(p) for p in os.environ.get("ADGEN_INPUT_DIRS", "").split(os.pathsep) if p] or [_pictures()]
    output = Path(args.output_dir or os.environ.get("ADGEN_OUTPUT_DIR") or _pictures() / "adgen")
    cfg = client_config(inputs, output, args.name)
    print(json.dumps(cfg, indent=2, ensure_ascii=False))
    entry = cfg["mcpServers"][args.name]
    claude = ["claude", "mcp", "add", "--transport", "stdio", args.name]
    for key, value in entry["env"].items():
        claude += ["--env", f"{key}={value}"]
    claude += ["--", entry["command"], *entry["args"]]
    desktop = ("~/Library/Application Support/Claude/claude_desktop_config.json" if sys.platform == "darwin"
               else "%APPDATA%\\Claude\\claude_desktop_config.json" if os.name == "nt"
               else "~/.config/Claude/claude_desktop_config.json")
    print(f"# Claude Desktop: merge the JSON above into {desktop}, then restart Claude Desktop.\n"
          f"# Claude Code:\n{shlex.join(claude)}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    p = _Parser(prog="adgen", description="Make an ad image with the adgen MCP server.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    g = sub.add_parser("generate", help="generate an ad from a product photo")
    g.add_argument("photo", nargs="?", help="product photo file (PNG, JPEG or WebP); or use --url")
    g.add_argument("--url", help="product photo by http(s) URL, fetched by the server")
    g.add_argument("--text", help="the ad copy, the headline (omit for an image without text); **bold**, ==highlight==")
    g.add_argument("--subline", help="a smaller line under the headline")
    g.add_argument("--cta", help="call to action, drawn as a button (e.g. 'Shop now')")
    g.add_argument("--badge", help="short badge beside the price (e.g. NEW, or --badge=-30%% for one starting with -)")
    g.add_argument("--price", help="the price as it should read (e.g. '₩19,900')")
    g.add_argument("--prompt", default="Wooden table in a cozy cafe, sunlight, realistic", help="background scene")
    g.add_argument("--style", help="style hint for the text layer")
    g.add_argument("--color", help="text colour or CSS gradient")
    g.add_argument("--font", help="font family (see list_fonts)")
    g.add_argument("--brand-kit", help="name of a brand kit saved on the server (save_brand_kit): colours, fonts, "
                   "logo and tone")
    g.add_argument("--position", default="auto", choices=["top", "center", "bottom", "auto"])
    g.add_argument("--size", type=parse_size, help="output size WxH in pixels, 256-4096 each (default 1024x1024)")
    g.add_argument("--placements", help="comma-separated named sizes, one ad each: square, portrait, story, "
                   "landscape, wide (instead of --size)")
    g.add_argument("--variants", type=int, help="versions of each placement, 1-8, each with its own seed")
    g.add_argument("--format", default="png", choices=["png", "jpeg", "webp"], help="file format of the ad")
    g.add_argument("--quality", type=int, help="JPEG/WebP quality 1-100 (default 92)")
    g.add_argument("--seed", type=int)
    g.add_argument("--out", help="save the ad here (default: over stdio, where the server saved it is printed; "
                   "with --server, ./<the server's file name>)")
    g.add_argument("--step1", action="store_true", help="also save the step 1 image (no text) beside it")
    g.add_argument("--server", help="URL of a running server (streamable HTTP .../mcp, or SSE .../sse); "
                   "ADGEN_TOKEN is sent as its bearer token. Else one is started over stdio")
    g.add_argument("--data-dir", type=Path, help="job folder root for a server started here")
    c = sub.add_parser("config", help="print a Claude Desktop config (and the claude mcp add line) for this install")
    c.add_argument("--input-dir", action="append", help="folder photos may be read from (repeatable; default: "
                   "ADGEN_INPUT_DIRS, else your Pictures folder)")
    c.add_argument("--output-dir", help="where ads are saved (default: ADGEN_OUTPUT_DIR, else Pictures/adgen)")
    c.add_argument("--name", default="adgen", help="server name in the client (default adgen)")
    args = p.parse_args(argv)
    try:
        code = config(args) if args.command == "config" else anyio.run(generate, args)
    except CliError as exc:
        print(f"adgen: {exc}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        print("adgen: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
