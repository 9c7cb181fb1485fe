"""Routes and next-hop link-layer addresses, asked of the kernel.

Routes come from an RTM_GETROUTE netlink request (what ``ip route get``
sends), so policy routing and every table count. A route through a gateway
is then cached for its whole prefix when that is safe (see
`RouteTable.lookup`), and other routes per destination, so that a large scan
does not cost one round trip to the kernel per address. Neighbour entries
come from ``ip -j neigh show``, read again at most once a second when a next
hop is missing.

NOTE: cached routes are never read again, so a route that changes during a
scan keeps its old next hop for the rest of that scan.
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
# Routes through a gateway are cached per prefix (see RouteTable); others per
# destination, in at most this many entries.
ROUTE_CACHE_SIZE = 4096
RTM_GETRULE = 34
NLMSG_DONE = 3
NLM_F_DUMP = 0x300
RTM_F_FIB_MATCH = 0x2000
ADDRESS_WIDTHS = {int(socket.AF_INET): 32, int(socket.AF_INET6): 128}
# The rules of a namespace without policy routing, per address family: local,
# main and default for IPv4, local and main for IPv6.
DEFAULT_RULE_COUNTS = {int(socket.AF_INET): 3, int(socket.AF_INET6): 2}
MAX_DUMP_READS = 10_000


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
        self._prefixes = _PrefixCache()
        self._fib: list[tuple[int, int, int]] | None = None
        self._policy_free: dict[int, bool] | None = None

    def close(self) -> None:
        self._socket.close()

    def lookup(self, destination: bytes) -> Route:
        """Return the route to a packed IPv4 or IPv6 address.

        A route through a gateway is cached for its whole prefix, found with
        RTM_F_FIB_MATCH, when the kernel has no more specific route inside
        the prefix and the namespace uses no policy routing rules. Every
        address of such a prefix then gets the same interface, source and
        gateway without another request.

        Raises:
            NoRouteError: the kernel returned an error or a route of a type
                that cannot carry a probe (unreachable, blackhole, ...).
        """
        route = self._cache.get(destination)
        if route is not None:
            return route
        route = self._prefixes.lookup(destination)
        if route is None:
            route = self._request(destination)
            if route.gateway is not None and not route.local:
                self._learn_prefix(destination, route)
        # Prefix hits go into this cache too, so that a scan of up to
        # ROUTE_CACHE_SIZE addresses costs one dict lookup per SYN. First
        # in, first out: a scan's random order gives a least recently used
        # policy nothing to keep.
        if len(self._cache) >= ROUTE_CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        self._cache[destination] = route
        return route

    def span(self, destination: bytes) -> tuple[int, int]:
        """Return (network, mask) of the IPv4 addresses that share the
        route `lookup` returned for `destination`: its learned prefix, or
        the address alone. Call it after `lookup`."""
        value = int.from_bytes(destination, "big")
        found = self._prefixes.match(destination)
        if found is None:
            return value, 0xFFFFFFFF
        mask = (0xFFFFFFFF << (32 - found[0])) & 0xFFFFFFFF
        return value & mask, mask

    def _learn_prefix(self, destination: bytes, route: Route) -> None:
        """Cache `route` for the prefix that the kernel matched, when no
        rule or more specific route can send part of it elsewhere."""
        family = int(socket.AF_INET if len(destination) == 4 else socket.AF_INET6)
        try:
            if self._policy_free is None:
                self._policy_free = self._read_rule_counts()
            if not self._policy_free.get(family, False):
                return
            if self._fib is None:
                self._fib = self._read_fib()
            length = self._request_prefix_length(destination)
        except (OSError, NoRouteError) as error:
            logger.debug("route prefix caching disabled: %s", error)
            self._policy_free = {}
            return
        width = len(destination) * 8
        value = int.from_bytes(destination, "big")
        shift = width - length
        for entry_width, network, entry_length in self._fib:
            inside = network >> shift == value >> shift
            if entry_width == width and entry_length > length and inside:
                return
        self._prefixes.add(width, length, value >> shift, route)

    def _request_prefix_length(self, destination: bytes) -> int:
        """Return the prefix length of the FIB entry that matches."""
        self._send_route_request(destination, RTM_F_FIB_MATCH)
        for _ in range(16):
            reply = self._socket.recv(65536)
            message = _find_reply(reply, self._sequence)
            if message is not None:
                return int(_RTMSG.unpack_from(message)[1])
        raise NoRouteError("no netlink reply to the prefix request")

    def _read_rule_counts(self) -> dict[int, bool]:
        """Tell per address family whether the namespace has only the
        default policy routing rules."""
        counts: dict[int, int] = {}
        for message in self._dump(RTM_GETRULE):
            family = message[0]
            counts[family] = counts.get(family, 0) + 1
        return {
            family: counts.get(family, 0) == expected
            for family, expected in DEFAULT_RULE_COUNTS.items()
        }

    def _read_fib(self) -> list[tuple[int, int, int]]:
        """Return (width, network, prefix length) of every route in every
        table."""
        entries = []
        for message in self._dump(RTM_GETROUTE):
            family, length = message[0], message[1]
            width = ADDRESS_WIDTHS.get(family)
            if width is None:
                continue
            attributes = _attributes(message)
            network = int.from_bytes(attributes.get(RTA_DST, b""), "big")
            entries.append((width, network, length))
        return entries

    def _dump(self, kind: int) -> list[bytes]:
        """Send a dump request and return the body of every message."""
        self._sequence += 1
        body = _RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0)
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body),
            kind,
            NLM_F_REQUEST | NLM_F_DUMP,
            self._sequence,
            0,
        )
        self._socket.send(header + body)
        messages: list[bytes] = []
        for _ in range(MAX_DUMP_READS):
            reply = self._socket.recv(1 << 20)
            offset = 0
            while offset + _NLMSGHDR.size <= len(reply):
                length, message_kind, _, sequence, _ = _NLMSGHDR.unpack_from(
                    reply, offset
                )
                if length < _NLMSGHDR.size:
                    return messages
                body_bytes = reply[offset + _NLMSGHDR.size : offset + length]
                offset += (length + 3) & ~3
                if sequence != self._sequence:
                    continue
                if message_kind == NLMSG_DONE:
                    return messages
                if message_kind == NLMSG_ERROR:
                    raise OSError("netlink dump failed")
                messages.append(body_bytes)
        raise OSError("netlink dump did not end")

    def _request(self, destination: bytes) -> Route:
        self._send_route_request(destination, 0)

        # A bounded number of reads: stale replies to earlier, timed-out
        # requests are skipped by sequence number.
        for _ in range(16):
            reply = self._socket.recv(65536)
            result = _parse_route_reply(reply, destination, self._sequence)
            if result is not None:
                return result
        raise NoRouteError("no netlink reply to the route request")

    def _send_route_request(self, destination: bytes, flags: int) -> None:
        family = socket.AF_INET if len(destination) == 4 else socket.AF_INET6
        self._sequence += 1
        attribute = _RTATTR.pack(_RTATTR.size + len(destination), RTA_DST)
        body = _RTMSG.pack(family, len(destination) * 8, 0, 0, 0, 0, 0, 0, flags)
        body += attribute + destination
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), RTM_GETROUTE, NLM_F_REQUEST, self._sequence, 0
        )
        self._socket.send(header + body)


class _PrefixCache:
    """Routes by (address width, prefix length, prefix value), looked up from
    the longest prefix length down."""

    def __init__(self) -> None:
        self._blocks: dict[int, dict[int, dict[int, Route]]] = {32: {}, 128: {}}
        self._lengths: dict[int, list[int]] = {32: [], 128: []}

    def add(self, width: int, length: int, prefix: int, route: Route) -> None:
        self._blocks[width].setdefault(length, {})[prefix] = route
        self._lengths[width] = sorted(self._blocks[width], reverse=True)

    def match(self, destination: bytes) -> tuple[int, Route] | None:
        """Return (prefix length, route) of the longest cached prefix that
        contains `destination`, or None."""
        width = len(destination) * 8
        value = int.from_bytes(destination, "big")
        blocks = self._blocks[width]
        for length in self._lengths[width]:
            route = blocks[length].get(value >> (width - length))
            if route is not None:
                return length, route
        return None

    def lookup(self, destination: bytes) -> Route | None:
        found = self.match(destination)
        if found is None:
            return None
        route = found[1]
        return Route(destination, route.interface, route.source, route.gateway, False)


def _find_reply(reply: bytes, sequence: int) -> bytes | None:
    """Return the body of the RTM_NEWROUTE message with this sequence."""
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
            return message
    return None


def _attributes(message: bytes) -> dict[int, bytes]:
    """Return the route attributes that follow a struct rtmsg."""
    attributes: dict[int, bytes] = {}
    offset = _RTMSG.size
    while offset + _RTATTR.size <= len(message):
        length, kind = _RTATTR.unpack_from(message, offset)
        if length < _RTATTR.size:
            break
        attributes[kind] = message[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3
    return attributes


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
            try:
                packed = ipaddress.ip_address(row["dst"]).packed
                hop = bytes.fromhex(lladdr.replace(":", ""))
            except (ValueError, KeyError, AttributeError):
                # Tunnels list the remote end's IP address as lladdr (GRE,
                # "192.0.2.2"): such a next hop goes through the kernel.
                continue
            self._entries[(row["dev"], packed)] = hop
