"""Which addresses a webhook may reach, checked where the host is resolved.

A URL's host is resolved once per connection and every address it resolves to must be
public (not loopback, private, link-local, shared, reserved or multicast) unless private
addresses are allowed; the connection then goes to one of the addresses checked, never to a
second lookup that could answer differently (DNS rebinding). Registration runs the same
check, so a URL that could never be delivered to is refused up front.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

type IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """A URL that no delivery may go to; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where a webhook URL points.

    Attributes:
        host: The host as written (a name or an address literal).
        port: The port (the scheme's default when the URL has none).
    """

    host: str
    port: int


def parse_target(url: str) -> Target:
    """Reads the host and port of an http(s) URL.

    Raises:
        AddressRefused: Not an absolute http or https URL with a host.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise AddressRefused(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise AddressRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise AddressRefused("the URL has no host")
    return Target(parts.hostname, port or (443 if parts.scheme == "https" else 80))


def _unmapped(address: IpAddress) -> IpAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def allowed(address: str, *, allow_private: bool) -> bool:
    """Whether a delivery may connect to an address.

    Args:
        address: An IPv4 or IPv6 address.
        allow_private: Whether loopback, private and link-local addresses may be reached.
    """
    ip = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
    if ip.is_unspecified or ip.is_multicast:
        return False
    return allow_private or ip.is_global


async def resolve_allowed(target: Target, *, allow_private: bool) -> list[ResolveResult]:
    """Resolves a target's host and checks every address it resolves to.

    Args:
        target: The host and port.
        allow_private: Whether non-public addresses may be reached.

    Returns:
        The addresses, as aiohttp connects to them.

    Raises:
        AddressRefused: The host does not resolve, or resolves to an address not allowed.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
    except OSError as error:
        raise AddressRefused(f"{target.host} does not resolve ({error})") from None
    results: list[ResolveResult] = []
    for family, _, proto, _, sockaddr in infos:
        address = str(sockaddr[0])
        if not allowed(address, allow_private=allow_private):
            raise AddressRefused(f"{target.host} resolves to {address}, which is not public")
        results.append(
            ResolveResult(
                hostname=target.host,
                host=address,
                port=target.port,
                family=family,
                proto=proto,
                flags=socket.AI_NUMERICHOST,
            )
        )
    if not results:
        raise AddressRefused(f"{target.host} does not resolve")
    return results


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver for deliveries: hands over only addresses that pass `allowed`.

    Args:
        allow_private: Whether non-public addresses may be reached.
    """

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolves `host` and refuses it when any address is not allowed."""
        return await resolve_allowed(Target(host, port), allow_private=self._allow_private)

    async def close(self) -> None:
        """Holds nothing to release."""
