"""Routes and next-hop link-layer addresses, asked of the kernel.

Routes come from an RTM_GETROUTE netlink request per destination (what
``ip route get`` sends), so policy routing and every table count, at a cost of
one round trip to the kernel for each new destination. Neighbour entries come
from ``ip -j neigh show``, read again at most once a second when a next hop is
missing.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

NETLINK_ROUTE = 0
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x01
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RTN_UNICAST = 1
RTN_LOCAL = 2
# Route types from linux/rtnetlink.h, named as ``ip route`` prints them.
ROUTE_TYPE_NAMES = {
    0: "unspec",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
    11: "xresolve",
}

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")

# Neighbour states in which the kernel has a usable link-layer address.
_USABLE_NEIGHBOUR_STATES = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"}
NEIGHBOUR_REFRESH_SECONDS = 1.0
# NOTE: routes are cached per destination, so a scan of more addresses than
# this asks the kernel again for most of them (about 10 us each). Caching per
# route prefix would need the kernel's matching prefix (RTM_F_FIB_MATCH) and
# a check for more specific routes and policy rules.
ROUTE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Route:
    """The kernel's route to one destination.

    Attributes:
        destination: the packed destination address.
        interface: name of the output interface.
        source: the packed source address the kernel would use.
        gateway: the packed next-hop router, or None when on-link.
        local: the destination is an address of this host, reached over lo.
    """

    destination: bytes
    interface: str
    source: bytes
    gateway: bytes | None
    local: bool

    @property
    def next_hop(self) -> bytes:
        """Packed address whose link-layer address a frame must carry."""
        return self.gateway if self.gateway is not None else self.destination


class NoRouteError(Exception):
    """The kernel has no usable route to a destination."""


class RouteTable:
    """Cached route lookups over one netlink socket."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._socket.settimeout(2.0)
        self._sequence = 0
        self._cache: dict[bytes, Route] = {}

    def close(self) -> None:
        self._socket.close()

    def lookup(self, destination: bytes) -> Route:
        """Return the route to a packed IPv4 or IPv6 address.

        Raises:
            NoRouteError: the kernel returned an error or a route of a type
                that cannot carry a probe (unreachable, blackhole, ...).
        """
        route = self._cache.get(destination)
        if route is not None:
            return route
        route = self._request(destination)
        # First in, first out: a scan's random order gives a least recently
        # used policy nothing to keep, and a hit then costs one dict lookup.
        if len(self._cache) >= ROUTE_CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[destination] = route
        return route

    def _request(self, destination: bytes) -> Route:
        family = socket.AF_INET if len(destination) == 4 else socket.AF_INET6
        self._sequence += 1
        attribute = _RTATTR.pack(_RTATTR.size + len(destination), RTA_DST)
        body = _RTMSG.pack(family, len(destination) * 8, 0, 0, 0, 0, 0, 0, 0)
        body += attribute + destination
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), RTM_GETROUTE, NLM_F_REQUEST, self._sequence, 0
        )
        self._socket.send(header + body)

        # A bounded number of reads: stale replies to earlier, timed-out
        # requests are skipped by sequence number.
        for _ in range(16):
            reply = self._socket.recv(65536)
            result = _parse_route_reply(reply, destination, self._sequence)
            if result is not None:
                return result
        raise NoRouteError("no netlink reply to the route request")


def _parse_route_reply(reply: bytes, destination: bytes, sequence: int) -> Route | None:
    offset = 0
    while offset + _NLMSGHDR.size <= len(reply):
        length, kind, _, reply_sequence, _ = _NLMSGHDR.unpack_from(reply, offset)
        if length < _NLMSGHDR.size:
            return None
        message = reply[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3
        if reply_sequence != sequence:
            continue
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", message)[0]
            raise NoRouteError(os.strerror(code) if code else "empty route reply")
        if kind == RTM_NEWROUTE:
            return _decode_route(message, destination)
    return None


def _decode_route(message: bytes, destination: bytes) -> Route:
    route_type = _RTMSG.unpack_from(message)[7]
    attributes: dict[int, bytes] = {}
    offset = _RTMSG.size
    while offset + _RTATTR.size <= len(message):
        length, kind = _RTATTR.unpack_from(message, offset)
        if length < _RTATTR.size:
            break
        attributes[kind] = message[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3

    if route_type not in (RTN_UNICAST, RTN_LOCAL):
        name = ROUTE_TYPE_NAMES.get(route_type, f"unknown({route_type})")
        raise NoRouteError(f"the route is of type {name}, which cannot carry a probe")
    if RTA_OIF not in attributes or RTA_PREFSRC not in attributes:
        raise NoRouteError("the route has no output interface or source address")
    index = struct.unpack("=i", attributes[RTA_OIF])[0]
    return Route(
        destination=destination,
        interface=socket.if_indextoname(index),
        source=attributes[RTA_PREFSRC],
        gateway=attributes.get(RTA_GATEWAY),
        local=route_type == RTN_LOCAL,
    )


class NeighbourTable:
    """Link-layer addresses of next hops, from the kernel's neighbour table."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, bytes], bytes] = {}
        self._read_at: float | None = None

    def lookup(self, interface: str, address: bytes) -> bytes | None:
        """Return the link-layer address of a next hop, or None if unknown."""
        key = (interface, address)
        found = self._entries.get(key)
        if found is None and self._may_refresh():
            self.refresh()
            found = self._entries.get(key)
        return found

    def _may_refresh(self) -> bool:
        return (
            self._read_at is None
            or time.monotonic() - self._read_at >= NEIGHBOUR_REFRESH_SECONDS
        )

    def refresh(self) -> None:
        """Read the neighbour table again with ``ip -j neigh show``."""
        self._read_at = time.monotonic()
        try:
            output = subprocess.run(
                ["ip", "-j", "neigh", "show"],
                capture_output=True,
                check=True,
                timeout=5,
                text=True,
            ).stdout
            rows = json.loads(output or "[]")
        except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as error:
            logger.error("cannot read the neighbour table: %s", error)
            return
        self._entries = {}
        for row in rows:
            states = set(row.get("state", []))
            lladdr = row.get("lladdr")
            if lladdr is None or not states & _USABLE_NEIGHBOUR_STATES:
                continue
            packed = ipaddress.ip_address(row["dst"]).packed
            self._entries[(row["dev"], packed)] = bytes.fromhex(lladdr.replace(":", ""))
