"""Decode captured frames down to TCP segments and UDP datagrams.

Link layers are peeled by hand, because each one only has to yield the
network-layer protocol and offset. dpkt then parses IPv4, IPv6, TCP and UDP.

| link type | LINKTYPE | network header found at |
|---|---|---|
| NULL (BSD loopback) | 0 | 4, family in host byte order |
| Ethernet, 802.1Q/802.1ad tags, PPPoE session | 1 | 14 + 4 per tag (+ 8 for PPPoE) |
| raw IP | 101 (DLT 12 and 14 too) | 0 |
| LOOP (OpenBSD loopback) | 108 | 4, family in network byte order |
| Linux cooked SLL | 113 | 16 |
| IPv4, IPv6 | 228, 229 | 0 |
| Linux cooked SLL2 | 276 | 20 |

IP fragments are not reassembled: a fragmented packet decodes to nothing.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

import dpkt

from pktscan.capture.reader import Frame

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
DLT_RAW_LINUX = 12
DLT_RAW_OPENBSD = 14
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
ETHERTYPE_PPPOE_SESSION = 0x8864
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

# Address families in NULL/LOOP headers: AF_INET everywhere, AF_INET6 as
# NetBSD/OpenBSD (24), FreeBSD (28) and Darwin (30) number it.
BSD_AF_INET = 2
BSD_AF_INET6 = (24, 28, 30)

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10


@dataclass(frozen=True, slots=True)
class Segment:
    """A TCP segment with the packet it came from.

    Attributes:
        number: packet number in the file.
        timestamp: seconds since the epoch.
        src, sport, dst, dport: the 4-tuple, addresses as text.
        seq, ack: sequence and acknowledgment numbers.
        flags: TCP flag bits (TH_* values).
        payload: the payload bytes captured.
        missing: payload bytes on the wire that the snapshot length cut off.
    """

    number: int
    timestamp: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    missing: int = 0


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP datagram with the packet it came from."""

    number: int
    timestamp: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def _ethernet_payload(data: bytes) -> tuple[int, int] | None:
    if len(data) < 14:
        return None
    offset = 12
    ethertype = struct.unpack_from("!H", data, offset)[0]
    while ethertype in ETHERTYPE_VLAN_TAGS and len(data) >= offset + 6:
        offset += 4
        ethertype = struct.unpack_from("!H", data, offset)[0]
    offset += 2
    if ethertype == ETHERTYPE_PPPOE_SESSION:
        if len(data) < offset + 8:
            return None
        ppp_protocol = struct.unpack_from("!H", data, offset + 6)[0]
        ethertype = {PPP_IPV4: ETHERTYPE_IPV4, PPP_IPV6: ETHERTYPE_IPV6}.get(
            ppp_protocol, 0
        )
        offset += 8
    return ethertype, offset


def _bsd_loopback_payload(data: bytes, byte_order: str) -> tuple[int, int] | None:
    if len(data) < 4:
        return None
    family = struct.unpack_from(byte_order + "I", data)[0]
    if byte_order == "<" and family > 0xFFFF:
        # The NULL header is in the capturing host's byte order, which the
        # file does not record: a value this large means big-endian.
        family = struct.unpack_from(">I", data)[0]
    if family == BSD_AF_INET:
        return ETHERTYPE_IPV4, 4
    if family in BSD_AF_INET6:
        return ETHERTYPE_IPV6, 4
    return 0, 4


def _raw_ip_payload(data: bytes) -> tuple[int, int] | None:
    if not data:
        return None
    version = data[0] >> 4
    ethertype = {4: ETHERTYPE_IPV4, 6: ETHERTYPE_IPV6}.get(version, 0)
    return ethertype, 0


def network_layer(linktype: int, data: bytes) -> tuple[int, int] | None:
    """Find the network layer of a frame: (ethertype, offset), or None.

    An ethertype of 0 means a protocol other than IPv4 and IPv6. None means
    the frame is too short for its link header or the link type is unknown.
    """
    if linktype == LINKTYPE_ETHERNET:
        return _ethernet_payload(data)
    if linktype in (LINKTYPE_RAW, DLT_RAW_LINUX, DLT_RAW_OPENBSD):
        return _raw_ip_payload(data)
    if linktype == LINKTYPE_IPV4:
        return ETHERTYPE_IPV4, 0
    if linktype == LINKTYPE_IPV6:
        return ETHERTYPE_IPV6, 0
    if linktype == LINKTYPE_NULL:
        return _bsd_loopback_payload(data, "<")
    if linktype == LINKTYPE_LOOP:
        return _bsd_loopback_payload(data, ">")
    if linktype == LINKTYPE_LINUX_SLL and len(data) >= 16:
        return struct.unpack_from("!H", data, 14)[0], 16
    if linktype == LINKTYPE_LINUX_SLL2 and len(data) >= 20:
        return struct.unpack_from("!H", data, 0)[0], 20
    return None


def _parse_ip(ethertype: int, data: bytes) -> dpkt.Packet | None:
    try:
        if ethertype == ETHERTYPE_IPV4:
            ip = dpkt.ip.IP(data)
            if ip.offset or ip.mf:
                return None
            return ip
        if ethertype == ETHERTYPE_IPV6:
            return dpkt.ip6.IP6(data)
    except (dpkt.UnpackError, struct.error):
        return None
    return None


def decode_frame(frame: Frame) -> Segment | Datagram | None:
    """Decode a frame to a TCP segment or UDP datagram, or None for anything else."""
    located = network_layer(frame.linktype, frame.data)
    if located is None:
        return None
    ethertype, offset = located
    ip = _parse_ip(ethertype, frame.data[offset:])
    if ip is None:
        return None

    transport = ip.data
    src = str(ipaddress.ip_address(ip.src))
    dst = str(ipaddress.ip_address(ip.dst))
    if isinstance(transport, dpkt.tcp.TCP):
        return Segment(
            frame.number,
            frame.timestamp,
            src,
            transport.sport,
            dst,
            transport.dport,
            transport.seq,
            transport.ack,
            transport.flags,
            bytes(transport.data),
            max(0, frame.wire_length - len(frame.data)),
        )
    if isinstance(transport, dpkt.udp.UDP):
        return Datagram(
            frame.number,
            frame.timestamp,
            src,
            transport.sport,
            dst,
            transport.dport,
            bytes(transport.data),
        )
    return None
