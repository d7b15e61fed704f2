"""The SSRF address policy: which IP addresses a URL fetch may connect to.

One job: classify an address. ``classify`` returns None for a public unicast address, else
why not: loopback and private/non-global ranges (rank ``PRIVATE``, lifted by
``FetchPolicy.allow_private``), or link-local, cloud metadata, unspecified, multicast,
reserved and broadcast (rank ``NEVER``, refused whatever the policy). IPv4 addresses wrapped
in IPv4-mapped, 6to4, Teredo or NAT64 IPv6 forms are judged by the IPv4 address inside.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

# Ranks: higher is worse. "never" kinds are refused whatever the policy.
PRIVATE, NEVER = 1, 2


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if addr in _NAT64 or addr in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def classify(addr: IPAddress) -> tuple[int, str, IPAddress] | None:
    """None for a public unicast address, else (rank, kind, deciding address) saying why not.

    The deciding address is the IPv4 address inside an IPv4-mapped, 6to4, Teredo or NAT64
    IPv6 address when that is what made it refused.
    """
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return NEVER, "scoped link-local", addr
        if addr.ipv4_mapped is not None:
            return classify(addr.ipv4_mapped)
        inner = [c for c in map(classify, _embedded_v4(addr)) if c is not None]
        if addr in _NAT64:  # a translator's view of a v4 address: the v4 address decides
            return max(inner, default=None, key=lambda c: c[0])
        if addr in _NAT64_LOCAL:
            inner.append((PRIVATE, "private", addr))
        outer = _classify_plain(addr)
        return max(inner + ([outer] if outer else []), default=None, key=lambda c: c[0])
    return _classify_plain(addr)


def _classify_plain(addr: IPAddress) -> tuple[int, str, IPAddress] | None:
    if addr in _METADATA:
        return NEVER, "cloud metadata", addr
    if addr.is_unspecified or (addr.version == 4 and addr in _THIS_NETWORK):
        return NEVER, "unspecified", addr
    if addr.is_link_local:
        return NEVER, "link-local", addr
    if addr.is_multicast:
        return NEVER, "multicast", addr
    if addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"):
        return NEVER, "broadcast", addr
    if addr.is_loopback:  # before is_reserved: ::1 lies in the reserved ::/8
        return PRIVATE, "loopback", addr
    if addr.is_reserved:
        return NEVER, "reserved", addr
    if addr.is_private or not addr.is_global:
        return PRIVATE, "private", addr
    return None


def connect_address(addr: IPAddress) -> str:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)
