"""Forward (A/AAAA) and reverse (PTR) DNS lookups, asynchronous.

The resolver is dnspython's. By default it reads the system's
/etc/resolv.conf, which `ip netns exec` replaces with
/etc/netns/NAMESPACE/resolv.conf inside a network namespace, so that a scan
run in the lab asks the lab's DNS server. `nameservers` overrides it.

Lookups never raise for an answer the server gives (NXDOMAIN, no data, a
timeout): they return an empty result and the reason, because a name that
does not resolve is a finding about the target, not a failure of the scan.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

from pktscan.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 3.0
MAX_PARALLEL_LOOKUPS = 64


@dataclass(frozen=True, slots=True)
class NameLookup:
    """The addresses a name resolved to, or why it resolved to none."""

    name: str
    addresses: tuple[str, ...]
    error: str | None = None


def make_resolver(
    nameservers: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> dns.asyncresolver.Resolver:
    """Build a resolver from resolv.conf, or from the given server addresses.

    Raises:
        InputError: a nameserver is not an IP address, or resolv.conf is
            missing or lists no server.
    """
    if nameservers:
        for server in nameservers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise InputError(
                    f"invalid resolver address {server!r}",
                    hint="give --resolver an IPv4 or IPv6 address",
                ) from None
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(nameservers)
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise InputError(
                f"no DNS resolver configured: {exc}",
                hint="pass --resolver ADDRESS or --no-dns",
            ) from None
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


async def _lookup_type(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: str
) -> tuple[list[str], str | None]:
    try:
        answer = await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        return [], "NXDOMAIN"
    except dns.resolver.NoAnswer:
        return [], None
    except dns.resolver.NoNameservers as exc:
        return [], f"no nameserver answered: {exc}"
    except dns.exception.Timeout:
        return [], "timed out"
    return [rdata.to_text() for rdata in answer], None


async def lookup_name(
    resolver: dns.asyncresolver.Resolver, name: str, ipv6: bool = False
) -> NameLookup:
    """Resolve one name to its A (and, with ipv6, AAAA) addresses."""
    addresses, error = await _lookup_type(resolver, name, "A")
    if ipv6:
        more, error6 = await _lookup_type(resolver, name, "AAAA")
        addresses += more
        error = error if error is not None else error6
    if addresses:
        error = None
    elif error is None:
        error = "no address records"
    return NameLookup(name, tuple(addresses), error)


async def lookup_ptr(resolver: dns.asyncresolver.Resolver, address: str) -> str | None:
    """Return the first PTR name of an address without its final dot, or None."""
    try:
        reverse = dns.reversename.from_address(address)
    except (ValueError, dns.exception.SyntaxError):
        return None
    names, _error = await _lookup_type(resolver, reverse.to_text(), "PTR")
    if not names:
        return None
    return names[0].rstrip(".")


async def lookup_names(
    resolver: dns.asyncresolver.Resolver, names: Iterable[str], ipv6: bool = False
) -> list[NameLookup]:
    """Resolve many names, at most MAX_PARALLEL_LOOKUPS at a time, in order."""
    limit = asyncio.Semaphore(MAX_PARALLEL_LOOKUPS)

    async def bounded(name: str) -> NameLookup:
        async with limit:
            return await lookup_name(resolver, name, ipv6)

    return list(await asyncio.gather(*(bounded(name) for name in names)))
