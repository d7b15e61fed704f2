"""Client-given file paths, read only when they resolve inside the configured input folders.

Symlinks are followed before the check; a missing file and a file outside get the same answer,
so the message is no file-existence oracle. Relative paths are tried against each input folder
in turn, never against the server's working directory. What was actually opened is checked
again, so a folder swapped for a symlink between check and open cannot lead outside.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.images import InputError
from pipeline.jobs.sources.limits import too_large


def resolve_path(text: str, field: str, input_dirs: list[Path], max_bytes: int) -> bytes:
    """Read the file named by ``text`` if it resolves inside one of ``input_dirs``.

    ``text`` may be an absolute path, a ``~`` path, a ``file://`` URI (percent-decoded, empty
    host or ``localhost`` only) or a path relative to the input folders (tried in order).
    """
    if not input_dirs:
        raise InputError(
            f"{field}: file paths are off on this server (no input folders configured); "
            "set ADGEN_INPUT_DIRS on the server to allow some, or send the image as base64 or a URL"
        )
    shown = ", ".join(str(d.expanduser()) for d in input_dirs)
    # One answer for missing, unreadable and outside: it must not reveal which paths exist.
    refused = InputError(
        f"{field}: not a readable file inside the input folders ({shown}); give a path inside one of them"
    )
    roots = [d.expanduser().resolve() for d in input_dirs]

    raw = _path_from_text(text.strip(), field)
    if not raw or "\x00" in raw:
        raise refused
    try:
        given = Path(raw).expanduser()
    except RuntimeError:  # ~user that does not exist
        raise refused from None
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for candidate in candidates:
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            continue
        if _inside(resolved, roots):
            data = _read_inside(resolved, roots, field, max_bytes)
            if data is not None:
                return data
    raise refused


def _path_from_text(text: str, field: str) -> str:
    if not text.lower().startswith("file:"):
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.netloc.lower() not in ("", "localhost") or not parts.path.startswith("/"):
        raise InputError(f"{field}: file:// URIs must name a local file (file:///path or file://localhost/path)")
    if parts.query or parts.fragment:
        raise InputError(
            f"{field}: file:// URIs take no ?query or #fragment; percent-encode such characters (%3F, %23)"
        )
    return unquote(parts.path)


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _read_inside(path: Path, roots: list[Path], field: str, max_bytes: int) -> bytes | None:
    """Open ``path`` and read it if it is a regular file that (still) lies inside ``roots``."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        # The path was checked before it was opened; check what was actually opened, so a
        # folder swapped for a symlink in between cannot lead outside.
        try:
            opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            opened = path
        info = os.fstat(fd)
        if not _inside(opened, roots) or not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > max_bytes:
            raise too_large(field, max_bytes)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(max_bytes + 1)
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise too_large(field, max_bytes)
    return data
