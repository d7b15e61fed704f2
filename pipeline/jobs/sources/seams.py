"""The network seams of the URL fetcher: name resolution, dialling one address, TLS trust.

One job: the only places the fetcher touches DNS, sockets and the trust store. They are
re-exported by ``pipeline.jobs.sources`` and the fetcher calls them through that package, so
tests replace them there (``monkeypatch.setattr(sources, "resolve_host", ...)``); production
code never does.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl


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
