"""Where a client-supplied image can come from: base64, a confined file path, or a URL.

Server-side code: every problem a request can cause raises ``InputError`` with a one-line
message for the caller (``field: what is wrong, what is allowed``) that never echoes the
input back at length. This package's modules, one job each:

* ``paths``: ``resolve_path``, files read only inside the configured input folders;
* ``urls``: parsing a URL into a checked target (legacy numeric IPv4 forms decoded);
* ``addresses``: the SSRF address policy (which IPs may be dialled);
* ``seams``: ``resolve_host``, ``open_connection``, ``tls_context``, the network hooks;
* ``deadline``: one deadline (and a watchdog) for a whole fetch;
* ``fetch``: ``fetch_url``, the pinned-connection HTTP(S) fetch with redirects;
* ``limits``: size-cap wording and ``sniff_image_type``;
* here: ``read_source``, the one entry point choosing base64, path or URL.

The seams are re-exported here and ``fetch`` calls them through this package, so replacing
``pipeline.jobs.sources.resolve_host`` (and the others) takes effect; tests do exactly that.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.images import InputError, decode_base64
from pipeline.jobs.sources.fetch import FetchPolicy, fetch_url
from pipeline.jobs.sources.limits import sniff_image_type
from pipeline.jobs.sources.paths import resolve_path
from pipeline.jobs.sources.seams import open_connection, resolve_host, tls_context

__all__ = [
    "FetchPolicy",
    "fetch_url",
    "open_connection",
    "read_source",
    "resolve_host",
    "resolve_path",
    "sniff_image_type",
    "tls_context",
]


def read_source(
    field: str,
    *,
    b64: str | None,
    path: str | None,
    url: str | None,
    input_dirs: list[Path],
    max_bytes: int,
    policy: FetchPolicy,
) -> bytes:
    """The raw bytes of an image given as exactly one of base64, a path or a URL.

    ``field`` is the base name of the request fields: ``field`` (base64), ``field_path`` and
    ``field_url``; error messages name the one that was used. Empty strings count as absent.
    """
    options = (("b64", b64), ("path", path), ("url", url))
    given = {name: value for name, value in options if value is not None and value.strip()}
    if len(given) != 1:
        names = f"{field} (base64), {field}_path or {field}_url"
        if not given:
            raise InputError(f"{field}: no image given; send exactly one of {names}")
        raise InputError(f"{field}: more than one image source given; send exactly one of {names}")
    if b64 is not None and "b64" in given:
        return decode_base64(b64, field, max_bytes)
    if path is not None and "path" in given:
        return resolve_path(path, f"{field}_path", input_dirs, max_bytes)
    assert url is not None
    if policy.max_bytes > max_bytes:
        policy = dataclasses.replace(policy, max_bytes=max_bytes)
    body, _mime = fetch_url(url, f"{field}_url", policy)
    return body
