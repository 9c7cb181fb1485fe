"""Reply to ARP requests for a source address that the kernel does not own.

With ``--source-ip`` of an address that no interface carries, the raw
engine's SYNs leave from that address, and the responses come back to it.
The kernel drops them, because the address is not local and a host that
does not forward drops what is not for it. So it sends no RST and needs no
nftables rule, while the engine reads the responses from its packet socket.
For the responses to arrive at all, the next hop must learn which link-layer
address carries the source address: it asks with ARP (RFC 826), and this
module replies with the MAC of the interface the request came in on.

ARP packet on Ethernet, after the 14-byte Ethernet header::

    0   hardware type 1      2   protocol type 0x0800
    4   hardware size 6      5   protocol size 4
    6   opcode (1 request, 2 reply)
    8   sender MAC           14  sender IPv4
    18  target MAC           24  target IPv4
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from pktscan.errors import PrivilegeError

logger = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST = 1
ARP_REPLY = 2
PACKET_OUTGOING = 4
ETHERNET = struct.Struct("!6s6sH")
ARP = struct.Struct("!HHBBH6s4s6s4s")
ARP_FRAME_LEN = ETHERNET.size + ARP.size
# Requests read per wake-up; the rest wait for the next one.
READ_BATCH = 64
# How long `find_owner` waits for a reply to its probe, and how many
# frames it reads at most while it waits.
PROBE_SECONDS = 0.5
MAX_PROBE_FRAMES = 10_000
PRIVILEGE_HINT = "run as root or grant CAP_NET_RAW"


@dataclass(frozen=True, slots=True)
class ArpRequest:
    """A request for an IPv4 address, as read off the wire."""

    sender_mac: bytes
    sender_ip: bytes
    target_ip: bytes


def _parse(frame: bytes) -> tuple[int, ArpRequest] | None:
    """Return the opcode and addresses of an Ethernet ARP packet for IPv4,
    or None for anything else."""
    if len(frame) < ARP_FRAME_LEN:
        return None
    _, _, ethertype = ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    fields = ARP.unpack_from(frame, ETHERNET.size)
    hardware, protocol, hw_size, proto_size, opcode, sha, spa, _, tpa = fields
    if (hardware, protocol, hw_size, proto_size) != (1, ETH_P_IP, 6, 4):
        return None
    return opcode, ArpRequest(sha, spa, tpa)


def parse_request(frame: bytes) -> ArpRequest | None:
    """Return the Ethernet ARP request in `frame`, or None for anything
    else: a reply, another protocol, a short or malformed frame."""
    parsed = _parse(frame)
    if parsed is None or parsed[0] != ARP_REQUEST:
        return None
    return parsed[1]


def build_probe(address: bytes, our_mac: bytes) -> bytes:
    """Return an ARP probe for `address` (RFC 5227 section 2.1.1): a
    broadcast request with sender IP 0.0.0.0, which changes no cache."""
    ethernet = ETHERNET.pack(b"\xff" * 6, our_mac, ETH_P_ARP)
    arp = ARP.pack(1, ETH_P_IP, 6, 4, ARP_REQUEST, our_mac, bytes(4), bytes(6), address)
    return ethernet + arp


def find_owner(
    address: bytes, interfaces: list[str], timeout: float = PROBE_SECONDS
) -> tuple[str, bytes] | None:
    """Ask with one ARP probe per interface whether a host uses `address`.

    Returns (interface, MAC) of the first host that replies for it, or None
    when no reply comes within `timeout` seconds. RFC 5227 sends three
    probes over one to two seconds. One probe and a short wait keep the
    start of a scan quick and still find a host that is up.

    Raises:
        PrivilegeError: the packet socket needs root or CAP_NET_RAW.
    """
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    except PermissionError as error:
        raise PrivilegeError(
            f"cannot open the ARP socket: {error.strerror}", PRIVILEGE_HINT
        ) from error
    with sock:
        sock.setblocking(False)
        for interface in interfaces:
            mac = interface_mac(interface)
            if mac is None:
                continue
            try:
                sock.sendto(build_probe(address, mac), (interface, ETH_P_ARP))
            except OSError as error:
                # A link that is down cannot carry the probe, nor responses.
                logger.debug("ARP probe on %s not sent: %s", interface, error)
        deadline = time.monotonic() + timeout
        for _ in range(MAX_PROBE_FRAMES):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                return None
            try:
                frame, where = sock.recvfrom(2048)
            except BlockingIOError:
                continue
            parsed = _parse(frame)
            if where[2] == PACKET_OUTGOING or parsed is None:
                continue
            # A reply for the address, or another host's own probe or
            # announcement of it, means that the address is taken.
            if parsed[1].sender_ip == address:
                return where[0], parsed[1].sender_mac
    return None


def build_reply(request: ArpRequest, our_mac: bytes) -> bytes:
    """Return the Ethernet frame of the ARP reply that maps the requested
    address to `our_mac`."""
    ethernet = ETHERNET.pack(request.sender_mac, our_mac, ETH_P_ARP)
    arp = ARP.pack(
        1,
        ETH_P_IP,
        6,
        4,
        ARP_REPLY,
        our_mac,
        request.target_ip,
        request.sender_mac,
        request.sender_ip,
    )
    return ethernet + arp


def interface_mac(interface: str) -> bytes | None:
    """Return an interface's MAC from sysfs, or None when it has none."""
    try:
        text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
    except OSError:
        return None
    try:
        mac = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        return None
    return mac if len(mac) == 6 else None


class ArpResponder:
    """Replies to ARP requests for one IPv4 address, on the given
    interfaces (all of them when None).

    Call `on_readable` when the socket (`fileno`) is readable; the raw
    engine registers it with its event loop.

    Raises:
        PrivilegeError: the packet socket needs root or CAP_NET_RAW.
    """

    def __init__(self, address: bytes, interfaces: list[str] | None = None) -> None:
        if len(address) != 4:
            raise ValueError("ARP replies are for IPv4 addresses only")
        self.address = address
        # Only where the address belongs: on another link, a reply would
        # draw that link's traffic for the address to this host.
        self.interfaces = None if interfaces is None else set(interfaces)
        self.replies = 0
        self._macs: dict[str, bytes | None] = {}
        try:
            self.socket = socket.socket(
                socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)
            )
        except PermissionError as error:
            raise PrivilegeError(
                f"cannot open the ARP socket: {error.strerror}", PRIVILEGE_HINT
            ) from error
        self.socket.setblocking(False)

    def fileno(self) -> int:
        return self.socket.fileno()

    def close(self) -> None:
        self.socket.close()

    def on_readable(self) -> None:
        """Reply to the waiting requests for our address."""
        for _ in range(READ_BATCH):
            try:
                frame, where = self.socket.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                logger.error("reading ARP failed: %s", error)
                return
            interface, packet_type = where[0], where[2]
            if packet_type == PACKET_OUTGOING:
                continue
            if self.interfaces is not None and interface not in self.interfaces:
                continue
            request = parse_request(frame)
            if request is None or request.target_ip != self.address:
                continue
            self._answer(request, interface)

    def _answer(self, request: ArpRequest, interface: str) -> None:
        if interface not in self._macs:
            self._macs[interface] = interface_mac(interface)
        mac = self._macs[interface]
        if mac is None:
            return
        try:
            self.socket.sendto(build_reply(request, mac), (interface, ETH_P_ARP))
        except OSError as error:
            logger.error("sending an ARP reply on %s failed: %s", interface, error)
            return
        self.replies += 1
        logger.debug(
            "ARP reply: %s is at %s, sent to %s on %s",
            socket.inet_ntoa(self.address),
            mac.hex(":"),
            socket.inet_ntoa(request.sender_ip),
            interface,
        )
