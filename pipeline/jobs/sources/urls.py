"""Parsing a client-given http(s) URL into a checked fetch target.

One job: turn URL text into a ``Target`` (scheme, ASCII host, literal IP if any, port,
request path) or a one-line ``InputError``: http and https only, no credentials, ports
1-65535, IDNA host names, and legacy numeric IPv4 forms (``2130706433``, ``0x7f.1``) decoded
the way browsers do, so the address policy sees the address a browser would dial.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit

from pipeline.images import InputError
from pipeline.jobs.sources.addresses import IPAddress

_MAX_URL_CHARS = 8192
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCT = re.compile(r"0[0-7]+")
_DEC = re.compile(r"0|[1-9][0-9]*")
_NUMERICISH = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_HOST_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # ASCII host name, or canonical IP text (IPv6 without brackets)
    literal: IPAddress | None
    port: int
    request_path: str  # path + query, ASCII


def _legacy_ipv4(host: str, field: str) -> ipaddress.IPv4Address | None:
    """Decode a host whose last label is numeric the way browsers do (WHATWG URL IPv4 parser).

    ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` are all 127.0.0.1; a host whose
    last label is numeric but which is no valid IPv4 address is refused.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not _NUMERICISH.fullmatch(parts[-1]):
        return None
    invalid = InputError(f"{field}: the host is neither a valid name nor a valid IP address")
    if len(parts) > 4:
        raise invalid
    numbers = []
    for part in parts:
        if _HEX.fullmatch(part):
            numbers.append(int(part[2:] or "0", 16))
        elif _OCT.fullmatch(part):
            numbers.append(int(part, 8))
        elif _DEC.fullmatch(part):
            numbers.append(int(part))
        else:
            raise invalid
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise invalid
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_url(url: str, field: str) -> Target:
    """The fetch target of ``url``, or a one-line ``InputError`` saying what is wrong with it."""
    parts, port = _split(url, field)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"{field}: only http:// and https:// URLs are accepted")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InputError(
            f"{field}: URLs with a user name or password are not accepted; give a URL without credentials"
        )
    if port is None:
        port = 443 if scheme == "https" else 80
    elif not 1 <= port <= 65535:
        raise InputError(f"{field}: the port must be between 1 and 65535")
    host, literal = _host(parts, field)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    path = re.sub(r"[^\x21-\x7e]+", lambda m: quote(m.group(), safe=""), path)
    return Target(scheme, host, literal, port, path)


def _split(url: str, field: str) -> tuple[SplitResult, int | None]:
    """``url`` split into its parts, and its port, after the checks on the raw text."""
    url = url.strip()
    if not url:
        raise InputError(f"{field} is empty")
    if len(url) > _MAX_URL_CHARS:
        raise InputError(f"{field}: the URL is longer than {_MAX_URL_CHARS} characters")
    if _BAD_URL_CHARS.search(url):
        raise InputError(
            f"{field}: the URL contains spaces, control characters or backslashes; percent-encode them"
        )
    try:
        parts = urlsplit(url)
        return parts, parts.port
    except ValueError:
        raise InputError(
            f"{field}: not a valid URL, or its port is outside 1-65535; give a full http(s) URL"
        ) from None


def _host(parts: SplitResult, field: str) -> tuple[str, IPAddress | None]:
    """(ASCII host name or canonical IP text, the literal IP address if the host is one)."""
    host = parts.hostname or ""
    if not host:
        raise InputError(f"{field}: the URL has no host; give a full http(s) URL")
    literal: IPAddress | None = None
    if parts.netloc.split("@")[-1].startswith("["):
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(f"{field}: the host is not a valid IPv6 address") from None
        if literal.scope_id:
            raise InputError(f"{field}: IPv6 zone identifiers (%...) are not accepted")
        return str(literal), literal
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InputError(f"{field}: the host is not a valid host name") from None
    if not _HOST_CHARS.fullmatch(host) or ".." in host or host.startswith("."):
        raise InputError(f"{field}: the host is not a valid host name")
    literal = _legacy_ipv4(host, field)
    if literal is not None:
        host = str(literal)
    return host, literal
