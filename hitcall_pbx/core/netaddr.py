"""Who a request comes from: the client address behind trusted reverse proxies (pure).

A proxy appends the address it received the request from to ``X-Forwarded-For``; a
client can put anything before that. So the chain is read from the right: hops that are
trusted proxies are skipped, and the first address that is not one is the client. The
header is used only when the TCP peer itself is a trusted proxy; from anyone else it is
ignored (it would let a client choose its own address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOPS = 32  # X-Forwarded-For entries looked at, from the right


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """A comma- or space-separated list of addresses or CIDR networks ('' = none).
    ValueError naming the entry that is neither."""
    networks: list[IPNetwork] = []
    for entry in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def parse_address(text: str) -> IPAddress | None:
    """One address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1`` or
    ``[2001:db8::1]:5678``; an IPv4-mapped IPv6 address as its IPv4 address. None when
    it is none of these."""
    value = text.strip().strip('"')
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress, trusted: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str | None:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    right-most ``X-Forwarded-For`` hop that is not a trusted proxy (all the header's
    values, in order). A malformed hop ends the walk at the trusted hop after it."""
    if peer is None:
        return None
    current = parse_address(peer)
    if current is None:
        return None
    if not is_trusted(current, trusted):
        return str(current)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops[-MAX_HOPS:]):
        address = parse_address(hop)
        if address is None:
            break
        current = address
        if not is_trusted(address, trusted):
            break
    return str(current)
