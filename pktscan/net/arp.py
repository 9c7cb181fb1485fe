"""Reply to ARP requests for a source address that the kernel does not own.

With ``--source-ip`` of an address that no interface carries, the raw
engine's SYNs leave from that address, and the responses come back to it. The
kernel drops them (the address is not local, and a host that does not
forward drops what is not for it), so it sends no RST and needs no nftables
rule, while the engine reads the responses from its packet socket as usual.
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
import socket
import struct
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
PRIVILEGE_HINT = "run as root or grant CAP_NET_RAW"


@dataclass(frozen=True, slots=True)
class ArpRequest:
    """A request for an IPv4 address, as read off the wire."""

    sender_mac: bytes
    sender_ip: bytes
    target_ip: bytes


def parse_request(frame: bytes) -> ArpRequest | None:
    """Return the Ethernet ARP request in `frame`, or None for anything
    else: a reply, another protocol, a short or malformed frame."""
    if len(frame) < ARP_FRAME_LEN:
        return None
    _, _, ethertype = ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    hardware, protocol, hw_size, proto_size, opcode, sha, spa, _, tpa = ARP.unpack_from(
        frame, ETHERNET.size
    )
    if (hardware, protocol, hw_size, proto_size, opcode) != (
        1,
        ETH_P_IP,
        6,
        4,
        ARP_REQUEST,
    ):
        return None
    return ArpRequest(sha, spa, tpa)


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
    """Replies to ARP requests for one IPv4 address, on every interface.

    Call `on_readable` when the socket (`fileno`) is readable; the raw
    engine registers it with its event loop.

    Raises:
        PrivilegeError: the packet socket needs root or CAP_NET_RAW.
    """

    def __init__(self, address: bytes) -> None:
        if len(address) != 4:
            raise ValueError("ARP replies are for IPv4 addresses only")
        self.address = address
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
