"""Fetching an image from a client-given http(s) URL, guarded against server-side request forgery.

One job: the fetch itself. The host is resolved once (``resolve_host``); every address it
resolves to must pass the address policy (``addresses.classify``), and the socket is then
opened to one of exactly those checked addresses (``open_connection``), so a DNS answer that
changes between check and use (rebinding) cannot move the request. HTTP is spoken with
``http.client`` over that socket; for https the socket is wrapped with a verifying TLS context
(``tls_context``) using the URL's host name for SNI and certificate checks, and the Host header
names the URL's host, so virtual hosting and certificates work as usual.

Every redirect (301/302/303/307/308, relative Location resolved) is parsed and checked like the
first URL, and their number is capped. One deadline covers the whole fetch. The body is capped
while streaming, and its type is sniffed from its magic bytes whatever the Content-Type says.
Proxy environment variables are ignored on purpose: a proxy would do its own resolution.

The three seams are looked up on the ``pipeline.jobs.sources`` package at call time, where
tests replace them.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import pipeline.jobs.sources as hooks  # the package: its seam attributes are what tests replace
from pipeline.images import InputError
from pipeline.jobs.sources.addresses import NEVER, PRIVATE, IPAddress, classify, connect_address
from pipeline.jobs.sources.deadline import Deadline, Watchdog
from pipeline.jobs.sources.limits import MiB, sniff_image_type, too_large
from pipeline.jobs.sources.urls import Target, parse_url

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_USER_AGENT = "adgen-image-fetch/0.1"


@dataclass(frozen=True)
class FetchPolicy:
    """How far ``fetch_url`` may reach.

    ``allow_private`` permits loopback and private/non-global unicast targets (tests,
    intranets); link-local, cloud metadata, unspecified, multicast, reserved and broadcast
    addresses stay refused even then.
    """

    allow_private: bool = False
    max_bytes: int = 25 * MiB
    timeout_s: float = 15.0  # the whole fetch, including redirects
    max_redirects: int = 5


class _PinnedConnection(http.client.HTTPConnection):
    """``http.client`` over a socket that is already connected (and TLS-wrapped if https)."""

    def __init__(self, target: Target, sock: socket.socket, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        # Host header: the port is left out when it is the scheme's default, like browsers do.
        self.default_port = 443 if target.scheme == "https" else 80
        self._pinned = sock

    def connect(self) -> None:  # never resolves or dials: the checked socket is used as is
        self.sock = self._pinned


def _resolve_checked(target: Target, field: str, policy: FetchPolicy, deadline: Deadline, hop: int) -> list[str]:
    """Resolve ``target.host`` once and return its addresses if every one passes the policy."""
    subject = "the host" if hop == 0 else "the redirect target"
    addresses = [target.literal] if target.literal is not None else _resolve(target, field, deadline, hop)
    for addr in addresses:
        verdict = classify(addr)
        if verdict is None:
            continue
        rank, kind, decisive = verdict
        if rank == PRIVATE and policy.allow_private:
            continue
        verb = "is" if target.literal is not None else "resolves to"
        tail = "such addresses are never fetched" if rank == NEVER else "public http(s) URLs only"
        article = "an" if kind[0] in "aeiou" else "a"
        shown = str(addr) if decisive == addr else f"{addr}, that is {decisive}"
        raise InputError(f"{field}: {subject} {verb} {article} {kind} address ({shown}); {tail}")
    return [connect_address(a) for a in addresses]


def _resolve(target: Target, field: str, deadline: Deadline, hop: int) -> list[IPAddress]:
    """The distinct IP addresses ``target.host`` resolves to, the resolver bounded by the deadline."""
    result: list = []

    def work() -> None:
        try:
            result.append(hooks.resolve_host(target.host, target.port))
        except (OSError, UnicodeError, ValueError) as exc:  # handed to the caller's thread
            result.append(exc)

    worker = threading.Thread(target=work, name="adgen-resolve", daemon=True)
    worker.start()
    worker.join(deadline.left())
    if not result and worker.is_alive():
        raise deadline.error()
    found = result[0] if result else None
    if not isinstance(found, list):
        whose = "the URL" if hop == 0 else "the redirect target"
        raise InputError(f"{field}: the host name of {whose} could not be resolved") from None
    addresses: list[IPAddress] = []
    for text in found:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if addr not in addresses:
            addresses.append(addr)
    if not addresses:
        raise InputError(f"{field}: the host name could not be resolved to an IP address")
    return addresses


def _connect(target: Target, addresses: list[str], field: str, deadline: Deadline) -> socket.socket:
    last: OSError | None = None
    for ip in addresses:
        try:
            return hooks.open_connection(ip, target.port, deadline.left())
        except TimeoutError:
            raise deadline.error() from None
        except OSError as exc:
            last = exc
    reason = "connection refused" if isinstance(last, ConnectionRefusedError) else "network error"
    raise InputError(f"{field}: could not connect to the host ({reason}); check the URL or send the image as base64")


def _wrap_tls(sock: socket.socket, target: Target, field: str, deadline: Deadline) -> socket.socket:
    sock.settimeout(deadline.left())
    try:
        return hooks.tls_context().wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError:
        sock.close()
        raise InputError(
            f"{field}: the host's TLS certificate could not be verified; https needs a valid certificate"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        if isinstance(exc, TimeoutError) or deadline.expired:
            raise deadline.error() from None
        raise InputError(f"{field}: the TLS handshake with the host failed") from None


def _one_hop(
    target: Target, field: str, policy: FetchPolicy, deadline: Deadline, hop: int
) -> tuple[int, str | None, bytes]:
    """One request: (status, Location for redirects, body for 200)."""
    addresses = _resolve_checked(target, field, policy, deadline, hop)
    sock = _connect(target, addresses, field, deadline)
    try:
        watchdog = Watchdog(sock, deadline)
    except OSError:
        sock.close()
        raise InputError(f"{field}: could not set up the connection to the host") from None
    try:
        if target.scheme == "https":
            sock = _wrap_tls(sock, target, field, deadline)
        sock.settimeout(deadline.left())
        conn = _PinnedConnection(target, sock, deadline.left())
        try:
            conn.request(
                "GET",
                target.request_path,
                headers={
                    "User-Agent": _USER_AGENT,
                    "Accept": "image/png, image/jpeg, image/webp, image/gif;q=0.8",
                    "Connection": "close",
                },
            )
            return _answer(conn.getresponse(), field, policy, deadline)
        except InputError:
            if deadline.expired:
                raise deadline.error() from None
            raise
        except TimeoutError:
            raise deadline.error() from None
        except (http.client.HTTPException, OSError, ValueError):
            if deadline.expired or deadline.end <= time.monotonic():
                raise deadline.error() from None
            raise InputError(f"{field}: the server's answer was cut off or is not valid HTTP") from None
        finally:
            conn.close()
    finally:
        watchdog.cancel()
        sock.close()


def _answer(
    resp: http.client.HTTPResponse, field: str, policy: FetchPolicy, deadline: Deadline
) -> tuple[int, str | None, bytes]:
    """(status, Location for redirects, body for 200) of one response; other statuses refused."""
    if resp.status in _REDIRECTS:
        return resp.status, resp.getheader("Location"), b""
    if resp.status != 200:
        raise InputError(
            f"{field}: the server answered HTTP {resp.status}; the URL must lead straight to the image"
        )
    length = resp.getheader("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > policy.max_bytes:
        raise too_large(field, policy.max_bytes)
    return 200, None, _read_body(resp, field, policy.max_bytes, deadline)


def _read_body(resp: http.client.HTTPResponse, field: str, max_bytes: int, deadline: Deadline) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        deadline.left()
        chunk = resp.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise too_large(field, max_bytes)
        chunks.append(chunk)
    if deadline.expired:  # the watchdog's shutdown looks like a clean end of stream
        raise deadline.error()
    return b"".join(chunks)


def fetch_url(url: str, field: str, policy: FetchPolicy) -> tuple[bytes, str]:
    """Download an image from a public http(s) URL: (body, MIME type sniffed from the bytes)."""
    deadline = Deadline(policy.timeout_s, field)
    target = parse_url(url, field)
    current = url.strip()
    for hop in range(policy.max_redirects + 1):
        status, location, body = _one_hop(target, field, policy, deadline, hop)
        if status == 200:
            if not body:
                raise InputError(f"{field}: the server sent an empty body instead of an image")
            mime = sniff_image_type(body)
            if mime is None:
                raise InputError(f"{field}: the URL does not lead to a PNG, JPEG, WebP or GIF image")
            return body, mime
        if not location or not location.strip():
            raise InputError(f"{field}: the server answered HTTP {status} without a Location to follow")
        current = urljoin(current, location.strip())
        target = parse_url(current, field)
    raise InputError(f"{field}: more than {policy.max_redirects} redirects; give the image's final URL")
