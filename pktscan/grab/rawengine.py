"""The raw engine's driver: user-space TCP connections over raw sockets.

`RawEngine` runs inside an asyncio loop. It owns an AF_PACKET socket that
receives only TCP segments to the engine's source-port range, the prober's
`Sender` for output, and a table of live connections keyed by (our port,
server address, server port). Each entry pairs a sans-IO `TcpClient` with
the consumer of the reply (a `HandshakeReader`, or the HTTP head reader).
The engine feeds received segments to the client, sends what it returns,
runs its timers with `loop.call_at`, and ends the connection with an RST as
soon as the consumer is done.

One `exchange` is one connection: SYN, SYN/ACK, the request on the ACK, the
reply, the RST. The number of entries in the table is bounded by
`max_connections`; an `exchange` beyond it waits for a free entry.

The kernel must be kept from resetting the connections when their SYN/ACKs
arrive (see `pktscan.net.firewall`), and `self_test` checks that it is.
With a `source_ip` that the kernel does not own, there is nothing to keep
out: the engine sends from that address, replies to ARP requests for it
(`pktscan.net.arp`), and the kernel drops the answers after the packet
socket has read them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import random
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pktscan.capture.bpf import attach_filter, compile_filter
from pktscan.errors import InputError, LocalError, PrivilegeError
from pktscan.net.arp import ArpResponder, find_owner
from pktscan.net.route import NeighbourTable, NoRouteError, RouteTable
from pktscan.net.sockets import PRIVILEGE_HINT, Sender
from pktscan.net.tcpwire import ReceivedSegment, build_datagram, parse_datagram
from pktscan.net.usertcp import (
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    OutboundSegment,
    TcpClient,
    TcpEvent,
    TcpOutput,
    TcpSettings,
)

logger = logging.getLogger(__name__)

# Linux hands out ephemeral ports from 32768-60999 by default
# (net.ipv4.ip_local_port_range). The engine's range lies above it, like the
# prober's, so that the nftables rule leaves the host's connections alone.
ENGINE_PORT_RANGE = (61001, 65535)
DEFAULT_MAX_CONNECTIONS = 10_000
# After the chain is complete, the rest of the flight (ServerKeyExchange,
# ServerHelloDone) usually arrives in the same or the next segment. The
# kernel engine waits as long for it, so both engines record the key exchange.
CHAIN_GRACE_SECONDS = 0.2
RECEIVE_BATCH = 512
RECEIVE_BUFFER_BYTES = 32 * 1024 * 1024
RECEIVE_SIZE = 65536 + 256
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
IP_HEADER_OVERHEAD = {4: 40, 6: 60}  # IP plus TCP header bytes under the MTU
LOGGED_ERRORS = 10

ExchangeState = Literal["open", "closed", "filtered"]
StopReason = Literal["eof", "reset", "timeout"]


class ReplyConsumer(Protocol):
    """A reader of replies, such as `HandshakeReader` or `HttpHead`."""

    def feed(self, data: bytes) -> object: ...

    @property
    def done(self) -> bool: ...

    @property
    def certificate_complete(self) -> bool: ...


class SourceError(LocalError):
    """The engine cannot send to this target from --source-ip."""


class EngineError(LocalError):
    """The raw engine cannot run here."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """The end of one connection.

    Attributes:
        state: open (SYN/ACK), closed (RST to the SYN) or filtered (every
            SYN unanswered).
        stop: for open, why reading stopped early: "eof", "reset",
            "timeout", or None when the consumer had all it needed.
        source_port: our port of the connection.
    """

    state: ExchangeState
    stop: StopReason | None
    source_port: int


@dataclass(slots=True)
class EngineStats:
    """Counters of one engine.

    Attributes:
        unknown: segments to our ports that matched no connection.
        send_drops: packets the sender could not send.
        kernel_drops: packets the kernel dropped because the receive socket's
            buffer was full (PACKET_STATISTICS), read when the engine closes.
        arp_replies: ARP replies sent for a source address that no
            interface carries, read when the engine closes.
    """

    connections: int = 0
    established: int = 0
    refused: int = 0
    unanswered: int = 0
    segments_received: int = 0
    segments_sent: int = 0
    resets_sent: int = 0
    unknown: int = 0
    send_drops: int = 0
    kernel_drops: int = 0
    peak_connections: int = 0
    arp_replies: int = 0


class _Connection:
    """One live entry of the connection table."""

    __slots__ = (
        "client",
        "consumer",
        "done",
        "established",
        "grace_at",
        "hop",
        "interface",
        "ip",
        "key",
        "port",
        "read_deadline",
        "source",
        "timeout",
        "timer",
        "timer_at",
        "version",
    )

    def __init__(
        self,
        key: tuple[int, bytes, int],
        ip: str,
        client: TcpClient,
        consumer: ReplyConsumer,
        timeout: float,
        done: asyncio.Future[Exchange],
    ) -> None:
        self.key = key
        self.ip = ip
        self.port = key[2]
        self.source = b""
        self.version = 4
        self.interface = ""
        self.hop: bytes | None = None
        self.client = client
        self.consumer = consumer
        self.done = done
        self.established: asyncio.Future[bool] | None = None
        self.read_deadline: float | None = None
        self.grace_at: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None
        self.timeout = timeout


def interface_mtu(interface: str) -> int | None:
    """Return an interface's MTU from sysfs, or None if it cannot be read."""
    try:
        return int(Path(f"/sys/class/net/{interface}/mtu").read_text())
    except (OSError, ValueError):
        return None


class RawEngine:
    """Connections over raw sockets; see the module docstring.

    Args:
        port_range: our source ports, inclusive; the nftables rule must
            cover them.
        max_connections: connections in the table at once.
        settings: TCP parameters; MSS and SYN timing are set per connection.
        source_ip: the IPv4 address to send from, for targets not reached
            over loopback; None for the address the kernel picks per route.
            If no interface carries it, the engine replies to ARP requests for it.
    """

    def __init__(
        self,
        *,
        port_range: tuple[int, int] = ENGINE_PORT_RANGE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        settings: TcpSettings | None = None,
        source_ip: str | None = None,
    ) -> None:
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid port range {low}-{high}")
        if max_connections < 1:
            raise ValueError(f"invalid max_connections {max_connections}: 1 or more")
        self.port_range = port_range
        self.max_connections = max_connections
        self.settings = settings or TcpSettings()
        self.stats = EngineStats()
        self._table: dict[tuple[int, bytes, int], _Connection] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._next_port = random.randint(low, high)
        self._settings_cache: dict[tuple[int, int, float], TcpSettings] = {}
        self._mss: dict[tuple[str, int], int] = {}
        self._sender: Sender | None = None
        self._socket: socket.socket | None = None
        self._routes: RouteTable | None = None
        self._neighbours = NeighbourTable()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._errors = 0
        self.source_ip = source_ip
        self._source: bytes | None = None
        if source_ip is not None:
            self._source = parse_source_ip(source_ip)
        self._arp: ArpResponder | None = None

    @property
    def connections(self) -> int:
        """Connections in the table now."""
        return len(self._table)

    async def start(self) -> None:
        """Open the sockets and start reading.

        Raises:
            PrivilegeError: raw sockets need root or CAP_NET_RAW.
        """
        self._loop = asyncio.get_running_loop()
        try:
            self._socket = self._open_receiver()
            self._sender = Sender()
            self._routes = RouteTable()
            if self._source is not None and not owns_address(self._source):
                interfaces = source_interfaces(self._source)
                self._arp = ArpResponder(self._source, interfaces or None)
        except BaseException:
            self._close_sockets()
            raise
        self._loop.add_reader(self._socket.fileno(), self._on_readable)
        if self._arp is not None:
            self._loop.add_reader(self._arp.fileno(), self._arp.on_readable)
            logger.info(
                "replying to ARP requests for %s, which no interface carries",
                self.source_ip,
            )

    async def close(self) -> None:
        """Reset every live connection and close the sockets."""
        for connection in list(self._table.values()):
            self._send(connection, connection.client.abort())
            self._finish(connection, "open", "timeout")
        if self._loop is not None and self._socket is not None:
            self._loop.remove_reader(self._socket.fileno())
        if self._loop is not None and self._arp is not None:
            self._loop.remove_reader(self._arp.fileno())
        self._close_sockets()

    async def __aenter__(self) -> RawEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _open_receiver(self) -> socket.socket:
        try:
            sock = socket.socket(
                socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL)
            )
        except PermissionError as error:
            raise PrivilegeError(
                f"cannot open the AF_PACKET socket: {error.strerror}", PRIVILEGE_HINT
            ) from error
        try:
            low, high = self.port_range
            program = compile_filter(f"tcp dst portrange {low}-{high}")
            attach_filter(sock, program.instructions)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
            except PermissionError:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES
                )
            sock.setblocking(False)
            # Drop what arrived before the filter was attached.
            for _ in range(100_000):
                sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return sock
        except BaseException:
            sock.close()
            raise
        return sock

    def _close_sockets(self) -> None:
        if self._socket is not None:
            raw = self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            self.stats.kernel_drops += struct.unpack("=II", raw)[1]
            self._socket.close()
            self._socket = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._routes is not None:
            self._routes.close()
            self._routes = None
        if self._arp is not None:
            self.stats.arp_replies = self._arp.replies
            self._arp.close()
            self._arp = None

    # Connections

    async def exchange(
        self,
        ip: str,
        port: int,
        request: bytes,
        consumer: ReplyConsumer,
        *,
        timeout: float,
        syn_attempts: int = 2,
        syn_wait: float = 1.0,
        before_request: Callable[[], Awaitable[object]] | None = None,
    ) -> Exchange:
        """Open one connection, send `request`, feed the reply to `consumer`.

        Args:
            ip: the server's address.
            port: the server's port.
            request: bytes sent on the ACK of the SYN/ACK.
            consumer: reads the reply; the connection is reset once it is
                done, or CHAIN_GRACE_SECONDS after its certificate is
                complete.
            timeout: seconds to read the reply, from the request on.
            syn_attempts: SYNs sent before the port counts as filtered.
            syn_wait: seconds to wait for a SYN/ACK after each SYN.
            before_request: awaited between the SYN/ACK and the request,
                which then follows a bare ACK; used to look up the PTR name
                first, as the documented sequence requires.

        Raises:
            NoRouteError: the kernel has no route to `ip`.
            EngineError: no source port is free for this server.
        """
        assert self._loop is not None, "start() the engine first"
        async with self._slots:
            connection = self._open(
                ip,
                port,
                None if before_request is not None else request,
                consumer,
                timeout,
                syn_attempts,
                syn_wait,
            )
            try:
                if before_request is not None:
                    assert connection.established is not None
                    if await connection.established:
                        await before_request()
                        self._release(connection, request)
                return await connection.done
            except BaseException:
                if connection.key in self._table:
                    self._send(connection, connection.client.abort())
                    self._finish(connection, "open", "timeout")
                raise

    def _open(
        self,
        ip: str,
        port: int,
        request: bytes | None,
        consumer: ReplyConsumer,
        timeout: float,
        syn_attempts: int,
        syn_wait: float,
    ) -> _Connection:
        assert self._loop is not None and self._routes is not None
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        try:
            destination = socket.inet_pton(family, ip)
        except OSError:
            raise ValueError(f"invalid target address {ip!r}") from None
        ip = socket.inet_ntop(family, destination)
        if self._source is not None and family == socket.AF_INET6:
            raise SourceError(
                f"cannot send to IPv6 target {ip} from --source-ip {self.source_ip}",
                hint="scan IPv6 targets in a run without --source-ip",
            )
        if destination == self._source:
            raise SourceError(
                f"cannot send to {ip} from itself (--source-ip {self.source_ip})",
                hint="give a --source-ip that no target uses",
            )
        route = self._routes.lookup(destination)
        version = 6 if family == socket.AF_INET6 else 4
        settings = self._settings_for(route.interface, version, syn_attempts, syn_wait)
        key = self._allocate_key(destination, port)
        client = TcpClient(random.getrandbits(32), settings, request)
        connection = _Connection(
            key, ip, client, consumer, timeout, self._loop.create_future()
        )
        # Loopback targets (the self-test) keep the kernel's address: no ARP
        # runs on lo.
        if self._source is not None and not route.local:
            connection.source = self._source
        else:
            connection.source = route.source
        connection.version = version
        connection.interface = route.interface
        if not route.local:
            connection.hop = self._neighbours.lookup(route.interface, route.next_hop)
        if request is None:
            connection.established = self._loop.create_future()
        self._table[key] = connection
        self.stats.connections += 1
        self.stats.peak_connections = max(self.stats.peak_connections, len(self._table))
        now = self._loop.time()
        self._apply(connection, client.start(now), now)
        return connection

    def _settings_for(
        self, interface: str, version: int, syn_attempts: int, syn_wait: float
    ) -> TcpSettings:
        mss = self._mss.get((interface, version))
        if mss is None:
            mtu = interface_mtu(interface) or 1500
            mss = max(536, min(65495, mtu - IP_HEADER_OVERHEAD[version]))
            self._mss[(interface, version)] = mss
        cache_key = (mss, syn_attempts, syn_wait)
        settings = self._settings_cache.get(cache_key)
        if settings is None:
            settings = dataclasses.replace(
                self.settings,
                mss=mss,
                receive_window=max(self.settings.receive_window, mss),
                syn_attempts=syn_attempts,
                syn_timeout=syn_wait,
            )
            self._settings_cache[cache_key] = settings
        return settings

    def _allocate_key(self, destination: bytes, port: int) -> tuple[int, bytes, int]:
        """Take the next source port in the range that is not in use with
        this server. Ports rotate, so a port is reused as late as possible."""
        low, high = self.port_range
        size = high - low + 1
        for _ in range(size):
            candidate = self._next_port
            self._next_port = low if candidate >= high else candidate + 1
            key = (candidate, destination, port)
            if key not in self._table:
                return key
        raise EngineError(
            f"no free source port for {port}: all {size} are in use",
            hint="lower --max-connections or widen the source-port range",
        )

    def _release(self, connection: _Connection, request: bytes) -> None:
        if connection.key not in self._table:
            return
        assert self._loop is not None
        now = self._loop.time()
        connection.read_deadline = now + connection.timeout
        self._apply(connection, connection.client.send_request(request, now), now)

    def _finish(
        self, connection: _Connection, state: ExchangeState, stop: StopReason | None
    ) -> None:
        self._table.pop(connection.key, None)
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        if connection.established is not None and not connection.established.done():
            connection.established.set_result(False)
        if not connection.done.done():
            connection.done.set_result(Exchange(state, stop, connection.key[0]))

    # Events

    def _apply(self, connection: _Connection, output: TcpOutput, now: float) -> None:
        """Send the client's segments, feed its data, act on its events."""
        if output.segments:
            self._send(connection, output)
        if output.data:
            connection.consumer.feed(output.data)
        for event in output.events:
            self._on_event(connection, event, now)
        if connection.key not in self._table:
            return
        consumer = connection.consumer
        if connection.read_deadline is not None and consumer.done:
            self._send(connection, connection.client.abort())
            self._finish(connection, "open", None)
            return
        if consumer.certificate_complete and connection.grace_at is None:
            connection.grace_at = now + CHAIN_GRACE_SECONDS
        self._schedule(connection)

    def _on_event(self, connection: _Connection, event: TcpEvent, now: float) -> None:
        if event is TcpEvent.ESTABLISHED:
            self.stats.established += 1
            if connection.established is not None:
                connection.established.set_result(True)
            else:
                connection.read_deadline = now + connection.timeout
        elif event is TcpEvent.REFUSED:
            self.stats.refused += 1
            self._finish(connection, "closed", None)
        elif event is TcpEvent.UNANSWERED:
            self.stats.unanswered += 1
            self._finish(connection, "filtered", None)
        elif event is TcpEvent.RESET:
            self._finish(connection, "open", "reset")
        elif event is TcpEvent.FIN:
            self._send(connection, connection.client.abort())
            self._finish(connection, "open", "eof")
        elif event is TcpEvent.STALLED:
            self._send(connection, connection.client.abort())
            self._finish(connection, "open", "timeout")

    def _schedule(self, connection: _Connection) -> None:
        deadlines = [
            at
            for at in (
                connection.client.deadline,
                connection.read_deadline,
                connection.grace_at,
            )
            if at is not None
        ]
        at = min(deadlines) if deadlines else None
        if at == connection.timer_at:
            return
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        connection.timer_at = at
        if at is not None:
            assert self._loop is not None
            connection.timer = self._loop.call_at(at, self._on_timer, connection)

    def _on_timer(self, connection: _Connection) -> None:
        assert self._loop is not None
        connection.timer = None
        connection.timer_at = None
        if connection.key not in self._table:
            return
        now = self._loop.time()
        ends = [
            at
            for at in (connection.read_deadline, connection.grace_at)
            if at is not None
        ]
        if ends and now >= min(ends):
            self._send(connection, connection.client.abort())
            self._finish(connection, "open", "timeout")
            return
        self._apply(connection, connection.client.poll(now), now)

    # Packets

    def _send(self, connection: _Connection, output: TcpOutput) -> None:
        sender = self._sender
        if sender is None:
            return
        source_port, destination, port = connection.key
        for segment in output.segments:
            packet = build_datagram(
                connection.source,
                destination,
                source_port,
                port,
                segment,
                ip_id=random.getrandbits(16),
            )
            self._send_packet(sender, connection, packet)
            self.stats.segments_sent += 1
            if segment.flags & TCP_RST:
                self.stats.resets_sent += 1

    def _send_packet(
        self, sender: Sender, connection: _Connection, packet: bytes
    ) -> None:
        if connection.hop is not None:
            sent = sender.send_link(
                packet, connection.interface, connection.version, connection.hop
            )
        else:
            sent = sender.send_routed(packet, connection.version, connection.ip)
        if not sent:
            self.stats.send_drops += 1
            if self.stats.send_drops <= LOGGED_ERRORS:
                logger.error(
                    "%s:%d sending failed: %s",
                    connection.ip,
                    connection.port,
                    sender.last_error,
                )

    def _on_readable(self) -> None:
        sock = self._socket
        if sock is None or self._loop is None:
            return
        now = self._loop.time()
        for _ in range(RECEIVE_BATCH):
            try:
                data, address = sock.recvfrom(RECEIVE_SIZE)
            except BlockingIOError:
                return
            except OSError as error:
                self._errors += 1
                if self._errors <= LOGGED_ERRORS:
                    logger.error("receiving segments failed: %s", error)
                return
            if address[2] == PACKET_OUTGOING:
                continue
            received = parse_datagram(data)
            if received is not None:
                self._on_segment(received, now)

    def _on_segment(self, received: ReceivedSegment, now: float) -> None:
        self.stats.segments_received += 1
        key = (received.destination_port, received.source, received.source_port)
        connection = self._table.get(key)
        if connection is None or received.destination != connection.source:
            self._on_unknown(received)
            return
        self._apply(connection, connection.client.receive(received.segment, now), now)

    def _on_unknown(self, received: ReceivedSegment) -> None:
        """Reset a SYN/ACK that matches no connection, as the kernel would,
        so that the server drops its half-open state."""
        self.stats.unknown += 1
        segment = received.segment
        if segment.flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN | TCP_ACK:
            return
        sender = self._sender
        if sender is None:
            return
        rst = OutboundSegment(segment.acknowledgment, 0, TCP_RST, 0)
        packet = build_datagram(
            received.destination,
            received.source,
            received.destination_port,
            received.source_port,
            rst,
        )
        version = 4 if len(received.source) == 4 else 6
        if sender.send_routed(packet, version, received.source_text):
            self.stats.resets_sent += 1


def parse_source_ip(text: str) -> bytes:
    """Return the packed form of a --source-ip value.

    Raises:
        InputError: the value is not an IPv4 address that can send to other
            hosts.
    """
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except OSError:
        raise InputError(
            f"invalid --source-ip {text!r}: not an IPv4 address",
            hint="give a dotted IPv4 address such as 198.18.0.99; IPv6 sources"
            " are not supported",
        ) from None
    address = ipaddress.IPv4Address(packed)
    if (
        address.is_loopback
        or address.is_multicast
        or address.is_unspecified
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise InputError(
            f"invalid --source-ip {text}: a loopback, multicast, broadcast or"
            " unspecified address cannot send to other hosts",
            hint="give an unused address of the scanner's network",
        )
    return packed


def check_foreign_source(text: str) -> None:
    """Check that an address no interface carries can serve as --source-ip.

    The responses reach it only when it lies inside the network of one of
    this host's interfaces, is neither that network's own address nor its
    broadcast address, and the host does not forward them elsewhere.

    Raises:
        InputError: the address cannot work as a source.
    """
    address = ipaddress.IPv4Address(text)
    found = [
        (interface, network)
        for interface, network in _interface_networks()
        if address in network and network.prefixlen < 31
    ]
    networks = [network for _, network in found]
    if not networks:
        raise InputError(
            f"invalid --source-ip {text}: not inside the network of any"
            " interface, so no response could reach it",
            hint="give an unused address of the scanner's network (see 'ip -4 addr')",
        )
    for network in networks:
        if address in (network.network_address, network.broadcast_address):
            raise InputError(
                f"invalid --source-ip {text}: it is the network or broadcast"
                f" address of {network}",
                hint="give an unused host address of that network",
            )
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
        raise InputError(
            f"--source-ip {text} needs a host that does not forward IP packets,"
            " or it would route the responses on",
            hint="set net.ipv4.ip_forward=0 for the scan, or leave out --source-ip",
        )
    owner = find_owner(address.packed, sorted({name for name, _ in found}))
    if owner is not None:
        raise InputError(
            f"--source-ip {text} is in use: {owner[1].hex(':')} replied to an"
            f" ARP probe for it on {owner[0]}",
            hint="give an address of the scanner's network that no host uses",
        )


def source_interfaces(address: bytes) -> list[str]:
    """Return the interfaces whose network contains `address`."""
    value = ipaddress.IPv4Address(address)
    return sorted({name for name, network in _interface_networks() if value in network})


def _interface_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """Return (interface, network) of this namespace's IPv4 addresses, as
    `ip -4 -j addr` lists them."""
    completed = subprocess.run(
        ["ip", "-4", "-j", "addr", "show"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    networks = []
    try:
        for link in json.loads(completed.stdout or "[]"):
            for entry in link.get("addr_info", []):
                network = ipaddress.IPv4Network(
                    f"{entry['local']}/{entry['prefixlen']}", strict=False
                )
                networks.append((str(link["ifname"]), network))
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("reading the interface addresses failed: %s", error)
    return networks


def owns_address(address: bytes) -> bool:
    """Tell whether an interface of this namespace carries the address: the
    kernel routes it as local."""
    routes = RouteTable()
    try:
        return routes.lookup(address).local
    except NoRouteError:
        return False
    finally:
        routes.close()


class HttpHead:
    """Reads an HTTP response up to the end of its head, for port 80."""

    def __init__(self, limit: int = 16384) -> None:
        self.data = b""
        self.limit = limit

    def feed(self, data: bytes) -> None:
        if not self.done:
            self.data += data

    @property
    def done(self) -> bool:
        return b"\r\n\r\n" in self.data or len(self.data) >= self.limit

    @property
    def certificate_complete(self) -> bool:
        return False


class _LineReply:
    """Reads one line, for the self-test."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> None:
        self.data += data

    @property
    def done(self) -> bool:
        return b"\n" in self.data

    @property
    def certificate_complete(self) -> bool:
        return False


SELF_TEST_REQUEST = b"pktscan raw engine self-test\n"
SELF_TEST_REPLY = b"pktscan self-test ok\n"


async def self_test(engine: RawEngine, timeout: float = 2.0) -> None:
    """Check that the engine completes an exchange with a loopback server.

    A kernel listener on 127.0.0.1 receives our request and sends back one
    line. If the kernel resets our connections (no nftables rule, or one
    that does not match), the kernel's RST to the SYN/ACK ends the exchange
    before the request arrives.

    Raises:
        EngineError: the exchange failed.
    """
    received: list[bytes] = []
    handlers: list[asyncio.Task[None]] = []

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.append(task)
        try:
            received.append(await asyncio.wait_for(reader.readline(), timeout))
            writer.write(SELF_TEST_REPLY)
            await writer.drain()
            await asyncio.wait_for(reader.read(), timeout)
        except (OSError, TimeoutError, asyncio.CancelledError):
            # Cancelled when the loop ends first: Python 3.11's stream
            # server logs a cancelled handler as an unhandled exception.
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reply = _LineReply()
        result = await engine.exchange(
            "127.0.0.1",
            port,
            SELF_TEST_REQUEST,
            reply,
            timeout=timeout,
            syn_attempts=2,
            syn_wait=timeout / 2,
        )
    except NoRouteError as error:
        raise EngineError(
            f"raw engine self-test failed: no route to 127.0.0.1: {error}",
            hint="bring the loopback interface up (ip link set lo up)",
        ) from error
    finally:
        server.close()
        # The handler ends on our RST; wait for it, so that it does not
        # outlive a scan with nothing else to do.
        if handlers:
            await asyncio.wait(handlers, timeout=timeout)
    if reply.data != SELF_TEST_REPLY or received != [SELF_TEST_REQUEST]:
        raise EngineError(
            f"raw engine self-test on 127.0.0.1:{port} failed: the connection"
            f" ended {result.state}, stopped by {result.stop}, after"
            f" {len(reply.data)} reply bytes",
            hint="check that nftables rules do not accept TCP to ports"
            f" {engine.port_range[0]}-{engine.port_range[1]} before pktscan's"
            " table, or use --engine kernel",
        )
    logger.info("raw engine self-test passed on 127.0.0.1:%d", port)
