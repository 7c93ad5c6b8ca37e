"""Which network addresses outbound requests (webhook deliveries) may reach. Pure: no I/O.

A webhook URL is chosen by an API user, so without a rule it could point the service at
its own database, Asterisk's ARI, the cloud metadata service or anything else on the
internal network (SSRF). Refused: loopback, private (RFC 1918, IPv6 ULA fc00::/7),
link-local (169.254/16, fe80::/10), multicast, unspecified, shared CGNAT space
(100.64/10), the other reserved and special-purpose ranges, and the cloud metadata
addresses; IPv6 forms embedding an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged
by that address. The operator lists exceptions (a CRM on the LAN) as networks
(`core.netaddr.parse_networks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from .netaddr import IPAddress, IPNetwork

__all__ = ["AddressPolicy", "address_refusal", "host_address"]

_METADATA = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_SHARED = ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
_LOCALHOST_NAME = re.compile(r"(?:^|\.)localhost\.?$", re.IGNORECASE)


def _embedded_v4(addr: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo client, NAT64)."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if any(addr in net for net in _NAT64):
        return IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def address_refusal(addr: IPAddress) -> str | None:
    """Why `addr` may not be reached, as a short code for the log (loopback, private,
    link_local, multicast, unspecified, shared, metadata, reserved, not_global), or None
    when it is a public unicast address."""
    if isinstance(addr, IPv6Address):
        if addr.scope_id:
            return "link_local"
        inner = _embedded_v4(addr)
        if inner is not None:
            refused = address_refusal(inner)
            if refused is not None or addr.ipv4_mapped is not None:
                return refused  # a mapped address is exactly its IPv4 address
    if addr in _METADATA:
        return "metadata"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if addr.is_multicast:
        return "multicast"
    if isinstance(addr, IPv4Address) and addr in _SHARED:
        return "shared"
    if addr.is_private:
        return "private"
    if addr.is_reserved:
        return "reserved"
    if not addr.is_global:
        return "not_global"
    return None


def host_address(host: str) -> IPAddress | None:
    """The address of a URL host that is an IP literal (brackets allowed), else None."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressPolicy:
    """The rule for outbound addresses: public unicast addresses, plus the operator's
    `allow` networks (exceptions such as a CRM on the LAN, or loopback in tests)."""

    allow: tuple[IPNetwork, ...] = ()

    def refusal(self, addr: IPAddress) -> str | None:
        """None when `addr` may be reached, else why not."""
        candidates: list[IPAddress] = [addr]
        if isinstance(addr, IPv6Address) and addr.scope_id is None and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        for candidate in candidates:
            plain = ip_address(str(candidate).split("%", 1)[0])
            if any(plain.version == net.version and plain in net for net in self.allow):
                return None
        return address_refusal(addr)

    def name_refusal(self, host: str) -> str | None:
        """A name that is loopback by definition (localhost, *.localhost, RFC 6761) is refused
        without asking DNS, unless loopback is allowed."""
        if _LOCALHOST_NAME.search(host):
            loopbacks: list[IPAddress] = [IPv4Address("127.0.0.1"), IPv6Address("::1")]
            if all(self.refusal(a) is not None for a in loopbacks):
                return "loopback"
        return None
