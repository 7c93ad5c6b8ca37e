"""Webhook targets against SSRF: the URL check when a subscription is created or changed,
and the resolver the dispatcher connects through (every delivery is checked again).

The rule is `core.netpolicy.AddressPolicy`. A name is resolved and every address it
resolves to is checked; one refused address refuses the name (a CRM name that also points
inside is not a CRM). At delivery time the connector gets only addresses checked by
`GuardedResolver` and connects to exactly those (no second look-up an attacker's DNS
could answer differently), so the TLS server name and Host header stay the URL's name.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from ipaddress import ip_address
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ..core.netaddr import IPAddress
from ..core.netpolicy import AddressPolicy, host_address
from ..errors import ValidationFailed
from ..logs import get_logger

__all__ = ["GuardedResolver", "TargetRefused", "WebhookTargets", "system_resolve"]

_log = get_logger("hitcall.hooks")

Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
REFUSED_MESSAGE = (
    "the URL's address is not allowed: loopback, private, link-local, multicast, shared and metadata addresses"
    " are refused unless the operator allows them (HITCALL_WEBHOOK_ALLOW_NETS)"
)


class TargetRefused(OSError):
    """A webhook target whose address the policy refuses (raised by the resolver)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host}: address {address} not allowed ({reason})")
        self.host = host
        self.address = address
        self.reason = reason


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses from the system resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ip_address(str(info[4][0])) for info in infos]


class WebhookTargets:
    """The check of a subscription's URL when it is created or changed."""

    def __init__(self, policy: AddressPolicy | None = None, resolve: Resolve = system_resolve, *, timeout: float = 5.0):
        self.policy = policy or AddressPolicy()
        self._resolve = resolve
        self._timeout = timeout

    async def check_url(self, url: str, *, field: str = "url") -> None:
        """ValidationFailed (naming `field`) when the URL's host is, or resolves to, an address
        the policy refuses. A name that does not resolve now passes (the CRM's DNS may come
        later): every delivery resolves and checks it again."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:  # e.g. an unclosed [IPv6 literal
            raise ValidationFailed("the URL cannot be parsed", details={"field": field}) from None
        if not host:
            raise ValidationFailed("the URL has no host", details={"field": field})
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValidationFailed("the URL's port is not a number from 1 to 65535", details={"field": field}) from None
        literal = host_address(host)
        if literal is not None:
            self._refuse_if(self.policy.refusal(literal), host, str(literal), field)
            return
        self._refuse_if(self.policy.name_refusal(host), host, host, field)
        try:
            async with asyncio.timeout(self._timeout):
                addresses = await self._resolve(host, port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            _log.info("webhook_target_unresolved", host=host, error=repr(exc))
            return
        for addr in addresses:
            self._refuse_if(self.policy.refusal(addr), host, str(addr), field)

    @staticmethod
    def _refuse_if(reason: str | None, host: str, address: str, field: str) -> None:
        if reason is not None:
            _log.warning("webhook_target_refused", host=host, address=address, reason=reason)
            raise ValidationFailed(REFUSED_MESSAGE, details={"field": field}, code="address_not_allowed")


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that checks every address a name resolves to and refuses the name
    (`TargetRefused`) when one of them is not allowed. IP literals never reach a resolver:
    the dispatcher checks those itself before connecting."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name_reason = self.policy.name_refusal(host)
        if name_reason is not None:
            raise TargetRefused(host, host, name_reason)
        results = await self._inner.resolve(host, port, family)
        for result in results:
            addr = host_address(result["host"])
            reason = "unparsable" if addr is None else self.policy.refusal(addr)
            if reason is not None:
                raise TargetRefused(host, result["host"], reason)
        return results

    async def close(self) -> None:
        await self._inner.close()
