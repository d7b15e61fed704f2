"""Where a client-supplied image can come from: base64, a confined file path, or a URL.

Server-side code: every problem a request can cause raises ``InputError`` with a one-line
message for the caller (``field: what is wrong, what is allowed``) that never echoes the
input back at length.

Paths (``resolve_path``) are read only when they resolve, symlinks followed, inside one of
the configured input folders; a missing file and a file outside get the same answer, so the
message is no file-existence oracle. Relative paths are tried against each input folder in
turn, never against the server's working directory.

URLs (``fetch_url``) are guarded against server-side request forgery:

* http and https only, no credentials in the URL, ports 1-65535, legacy numeric IPv4 forms
  (``2130706433``, ``0x7f.1``) decoded the way browsers do before they are checked.
* The host is resolved once (``resolve_host``); every address it resolves to is checked, and
  the socket is then opened to one of exactly those checked addresses (``open_connection``),
  so a DNS answer that changes between check and use (rebinding) cannot move the request.
  HTTP is spoken with ``http.client`` over that socket; for https the socket is wrapped with
  a verifying TLS context using the URL's host name for SNI and certificate checks, and the
  Host header names the URL's host, so virtual hosting and certificates work as usual.
* Refused by default: loopback, private (RFC 1918, CGNAT 100.64/10, ULA fc00::/7 and every
  other non-global range), link-local, multicast, unspecified, reserved and broadcast
  addresses, also when wrapped in IPv4-mapped, 6to4, Teredo or NAT64 IPv6 forms.
  ``FetchPolicy.allow_private`` lifts only the loopback/private part (for tests and
  intranets). Link-local (169.254/16, fe80::/10), known cloud metadata addresses
  (169.254.169.254, fd00:ec2::254, 100.100.100.200), unspecified/"this network" (0/8, ::),
  multicast, reserved and broadcast stay refused whatever the policy: no legitimate image
  host lives there, and these are the classic SSRF targets.
* Every redirect (301/302/303/307/308, relative Location resolved) is checked like the first
  URL, and their number is capped. One deadline covers the whole fetch, redirects, DNS and
  slow bodies included (a watchdog shuts the socket when it passes). The body is capped while
  streaming, and its type is sniffed from its magic bytes (PNG, JPEG, WebP, GIF) whatever the
  server's Content-Type says.

Proxy environment variables are ignored on purpose: a proxy would do its own resolution.
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import ipaddress
import os
import re
import socket
import ssl
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

from pipeline.images import InputError, decode_base64

_MiB = 1024 * 1024
_MAX_URL_CHARS = 8192
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_USER_AGENT = "adgen-image-fetch/0.1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchPolicy:
    """How far ``fetch_url`` may reach.

    ``allow_private`` permits loopback and private/non-global unicast targets (tests,
    intranets); link-local, cloud metadata, unspecified, multicast, reserved and broadcast
    addresses stay refused even then.
    """

    allow_private: bool = False
    max_bytes: int = 25 * _MiB
    timeout_s: float = 15.0  # the whole fetch, including redirects
    max_redirects: int = 5


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _size_text(n: int) -> str:
    if n >= _MiB:
        return f"{n // _MiB} MiB" if n % _MiB == 0 else f"{n / _MiB:.1f} MiB"
    return f"{n} bytes"


def _too_large(field: str, max_bytes: int) -> InputError:
    return InputError(f"{field} is larger than {_size_text(max_bytes)}")


def sniff_image_type(data: bytes) -> str | None:
    """The image MIME type announced by the magic bytes, or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


# ---------------------------------------------------------------------------------------------
# Paths


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
    refused = InputError(f"{field}: not a readable file inside the input folders ({shown}); give a path inside one of them")
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
        raise InputError(f"{field}: file:// URIs take no ?query or #fragment; percent-encode such characters (%3F, %23)")
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
            raise _too_large(field, max_bytes)
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
        raise _too_large(field, max_bytes)
    return data


# ---------------------------------------------------------------------------------------------
# URLs: seams (module-level so tests can replace them; production code never does)


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses ``host`` resolves to, in the resolver's order. Called once per hop."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def open_connection(ip: str, port: int, timeout: float) -> socket.socket:
    """A TCP socket connected to exactly ``ip`` (a checked address; no name resolution here)."""
    addr = ipaddress.ip_address(ip)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


@functools.lru_cache(maxsize=1)
def _default_tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def tls_context() -> ssl.SSLContext:
    """The verifying client context for https (system trust store, host name checks on)."""
    return _default_tls_context()


# ---------------------------------------------------------------------------------------------
# URLs: address policy

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

# Ranks: higher is worse. "never" kinds are refused whatever the policy.
_PRIVATE, _NEVER = 1, 2


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if addr in _NAT64 or addr in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def _classify(addr: IPAddress) -> tuple[int, str, IPAddress] | None:
    """None for a public unicast address, else (rank, kind, deciding address) saying why not.

    The deciding address is the IPv4 address inside an IPv4-mapped, 6to4, Teredo or NAT64
    IPv6 address when that is what made it refused.
    """
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return _NEVER, "scoped link-local", addr
        if addr.ipv4_mapped is not None:
            return _classify(addr.ipv4_mapped)
        inner = [c for c in map(_classify, _embedded_v4(addr)) if c is not None]
        if addr in _NAT64:  # a translator's view of a v4 address: the v4 address decides
            return max(inner, default=None, key=lambda c: c[0])
        if addr in _NAT64_LOCAL:
            inner.append((_PRIVATE, "private", addr))
        outer = _classify_plain(addr)
        return max(inner + ([outer] if outer else []), default=None, key=lambda c: c[0])
    return _classify_plain(addr)


def _classify_plain(addr: IPAddress) -> tuple[int, str, IPAddress] | None:
    if addr in _METADATA:
        return _NEVER, "cloud metadata", addr
    if addr.is_unspecified or (addr.version == 4 and addr in _THIS_NETWORK):
        return _NEVER, "unspecified", addr
    if addr.is_link_local:
        return _NEVER, "link-local", addr
    if addr.is_multicast:
        return _NEVER, "multicast", addr
    if addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"):
        return _NEVER, "broadcast", addr
    if addr.is_loopback:  # before is_reserved: ::1 lies in the reserved ::/8
        return _PRIVATE, "loopback", addr
    if addr.is_reserved:
        return _NEVER, "reserved", addr
    if addr.is_private or not addr.is_global:
        return _PRIVATE, "private", addr
    return None


def _connect_address(addr: IPAddress) -> str:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


# ---------------------------------------------------------------------------------------------
# URLs: parsing

_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCT = re.compile(r"0[0-7]+")
_DEC = re.compile(r"0|[1-9][0-9]*")
_NUMERICISH = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_HOST_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class _Target:
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


def _parse_url(url: str, field: str) -> _Target:
    url = url.strip()
    if not url:
        raise InputError(f"{field} is empty")
    if len(url) > _MAX_URL_CHARS:
        raise InputError(f"{field}: the URL is longer than {_MAX_URL_CHARS} characters")
    if _BAD_URL_CHARS.search(url):
        raise InputError(f"{field}: the URL contains spaces, control characters or backslashes; percent-encode them")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InputError(f"{field}: not a valid URL, or its port is outside 1-65535; give a full http(s) URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"{field}: only http:// and https:// URLs are accepted")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InputError(f"{field}: URLs with a user name or password are not accepted; give a URL without credentials")
    if port is None:
        port = 443 if scheme == "https" else 80
    elif not 1 <= port <= 65535:
        raise InputError(f"{field}: the port must be between 1 and 65535")
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
        host = str(literal)
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise InputError(f"{field}: the host is not a valid host name") from None
        if not _HOST_CHARS.fullmatch(host) or ".." in host or host.startswith("."):
            raise InputError(f"{field}: the host is not a valid host name")
        literal = _legacy_ipv4(host, field)
        if literal is not None:
            host = str(literal)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    path = re.sub(r"[^\x21-\x7e]+", lambda m: quote(m.group(), safe=""), path)
    return _Target(scheme, host, literal, port, path)


# ---------------------------------------------------------------------------------------------
# URLs: fetching


class _Deadline:
    def __init__(self, seconds: float, field: str) -> None:
        self.seconds = seconds
        self.field = field
        self.end = time.monotonic() + seconds
        self.expired = False

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.error()
        return left

    def error(self) -> InputError:
        return InputError(
            f"{self.field}: the download took longer than {self.seconds:g} s; "
            "use a faster host or send the image as base64"
        )


class _PinnedConnection(http.client.HTTPConnection):
    """``http.client`` over a socket that is already connected (and TLS-wrapped if https)."""

    def __init__(self, target: _Target, sock: socket.socket, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        # Host header: the port is left out when it is the scheme's default, like browsers do.
        self.default_port = 443 if target.scheme == "https" else 80
        self._pinned = sock

    def connect(self) -> None:  # never resolves or dials: the checked socket is used as is
        self.sock = self._pinned


def _resolve_checked(target: _Target, field: str, policy: FetchPolicy, deadline: _Deadline, hop: int) -> list[str]:
    """Resolve ``target.host`` once and return its addresses if every one passes the policy."""
    subject = "the host" if hop == 0 else "the redirect target"
    if target.literal is not None:
        addresses: list[IPAddress] = [target.literal]
    else:
        result: list = []

        def work() -> None:
            try:
                result.append(resolve_host(target.host, target.port))
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
        addresses = []
        for text in found:
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                continue
            if addr not in addresses:
                addresses.append(addr)
        if not addresses:
            raise InputError(f"{field}: the host name could not be resolved to an IP address")
    for addr in addresses:
        verdict = _classify(addr)
        if verdict is None:
            continue
        rank, kind, decisive = verdict
        if rank == _PRIVATE and policy.allow_private:
            continue
        verb = "is" if target.literal is not None else "resolves to"
        tail = "such addresses are never fetched" if rank == _NEVER else "public http(s) URLs only"
        article = "an" if kind[0] in "aeiou" else "a"
        shown = str(addr) if decisive == addr else f"{addr}, that is {decisive}"
        raise InputError(f"{field}: {subject} {verb} {article} {kind} address ({shown}); {tail}")
    return [_connect_address(a) for a in addresses]


def _connect(target: _Target, addresses: list[str], field: str, deadline: _Deadline) -> socket.socket:
    last: OSError | None = None
    for ip in addresses:
        try:
            return open_connection(ip, target.port, deadline.left())
        except TimeoutError:
            raise deadline.error() from None
        except OSError as exc:
            last = exc
    reason = "connection refused" if isinstance(last, ConnectionRefusedError) else "network error"
    raise InputError(f"{field}: could not connect to the host ({reason}); check the URL or send the image as base64")


def _wrap_tls(sock: socket.socket, target: _Target, field: str, deadline: _Deadline) -> socket.socket:
    sock.settimeout(deadline.left())
    try:
        return tls_context().wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError:
        sock.close()
        raise InputError(f"{field}: the host's TLS certificate could not be verified; https needs a valid certificate") from None
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        if isinstance(exc, TimeoutError) or deadline.expired:
            raise deadline.error() from None
        raise InputError(f"{field}: the TLS handshake with the host failed") from None


class _Watchdog:
    """Shut the connection when the deadline passes, so no slow trickle can outlive it.

    It holds a duplicate of the socket's descriptor: shutting that down ends the connection
    for every descriptor, also after the original was handed to TLS (which detaches it).
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._dup = sock.dup()
        self._deadline = deadline
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(deadline.end - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._dup.fileno() < 0:
                return
            self._deadline.expired = True
            try:
                self._dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._dup.close()


def _one_hop(
    target: _Target, field: str, policy: FetchPolicy, deadline: _Deadline, hop: int
) -> tuple[int, str | None, bytes]:
    """One request: (status, Location for redirects, body for 200)."""
    addresses = _resolve_checked(target, field, policy, deadline, hop)
    sock = _connect(target, addresses, field, deadline)
    try:
        watchdog = _Watchdog(sock, deadline)
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
            resp = conn.getresponse()
            if resp.status in _REDIRECTS:
                return resp.status, resp.getheader("Location"), b""
            if resp.status != 200:
                raise InputError(f"{field}: the server answered HTTP {resp.status}; the URL must lead straight to the image")
            length = resp.getheader("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > policy.max_bytes:
                raise _too_large(field, policy.max_bytes)
            return 200, None, _read_body(resp, field, policy.max_bytes, deadline)
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


def _read_body(resp: http.client.HTTPResponse, field: str, max_bytes: int, deadline: _Deadline) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        deadline.left()
        chunk = resp.read(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(field, max_bytes)
        chunks.append(chunk)
    if deadline.expired:  # the watchdog's shutdown looks like a clean end of stream
        raise deadline.error()
    return b"".join(chunks)


def fetch_url(url: str, field: str, policy: FetchPolicy) -> tuple[bytes, str]:
    """Download an image from a public http(s) URL: (body, MIME type sniffed from the bytes)."""
    deadline = _Deadline(policy.timeout_s, field)
    target = _parse_url(url, field)
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
        target = _parse_url(current, field)
    raise InputError(f"{field}: more than {policy.max_redirects} redirects; give the image's final URL")


# ---------------------------------------------------------------------------------------------
# One entry point


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
    given = {name: value for name, value in (("b64", b64), ("path", path), ("url", url)) if value is not None and value.strip()}
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
