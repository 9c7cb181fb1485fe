"""IP datagrams for the raw engine: build any TCP segment, parse received ones.

The prober's templates (`pktscan.net.packet`) cover SYN and RST without
payload. The raw engine also sends ACKs that carry a request, so it builds
whole datagrams here: an IPv4 (RFC 791) or IPv6 (RFC 8200) header, then the
TCP header (RFC 9293 section 3.1), options and payload. Checksums are the
one's complement sum of RFC 1071, computed over native-order 16-bit words
and byte-swapped at the end on little-endian hosts; RFC 1071 section 2(B)
shows that the sum is independent of byte order in this way.

Received datagrams are cut to the IP total length (or IPv6 payload length),
because an Ethernet frame padded to 60 bytes reaches an AF_PACKET socket
with its padding still attached.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass

from pktscan.net.usertcp import (
    TCP_OPTION_MSS,
    TCP_OPTION_NOP,
    TCP_OPTION_WINDOW_SCALE,
    InboundSegment,
    OutboundSegment,
)

IPPROTO_TCP = 6
IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
TCP_HEADER_LEN = 20
TTL = 64
IPV4_DONT_FRAGMENT = 0x4000
TCP_OPTION_END = 0

_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPV6_HEADER = struct.Struct("!IHBB16s16s")
_TCP_HEADER = struct.Struct("!HHIIBBHHH")
_LITTLE_ENDIAN = sys.byteorder == "little"


def internet_checksum(*parts: bytes) -> int:
    """Return the RFC 1071 checksum of the concatenated parts.

    Every part but the last must have an even length.
    """
    data = b"".join(parts)
    if len(data) % 2:
        data += b"\x00"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if _LITTLE_ENDIAN:
        total = ((total & 0xFF) << 8) | (total >> 8)
    return ~total & 0xFFFF


def build_datagram(
    source: bytes,
    destination: bytes,
    source_port: int,
    destination_port: int,
    segment: OutboundSegment,
    *,
    ip_id: int = 0,
) -> bytes:
    """Build an IPv4 or IPv6 datagram carrying `segment`, checksums filled.

    Args:
        source, destination: packed addresses, both 4 or both 16 bytes.
        ip_id: the IPv4 identification; unused for IPv6.
    """
    if len(source) != len(destination) or len(source) not in (4, 16):
        raise ValueError(
            f"addresses must both be 4 or 16 bytes, not {len(source)}"
            f" and {len(destination)}"
        )
    options = segment.options
    if len(options) % 4:
        options += bytes(4 - len(options) % 4)
    header_len = TCP_HEADER_LEN + len(options)
    tcp_len = header_len + len(segment.payload)
    header = _TCP_HEADER.pack(
        source_port,
        destination_port,
        segment.sequence,
        segment.acknowledgment,
        (header_len // 4) << 4,
        segment.flags,
        segment.window,
        0,
        0,
    )
    if len(source) == 4:
        pseudo = source + destination + struct.pack("!xBH", IPPROTO_TCP, tcp_len)
    else:
        pseudo = source + destination + struct.pack("!I3xB", tcp_len, IPPROTO_TCP)
    checksum = internet_checksum(pseudo, header, options, segment.payload)
    tcp = header[:16] + struct.pack("!H", checksum) + header[18:]

    if len(source) == 4:
        ip = _IPV4_HEADER.pack(
            0x45,
            0,
            IPV4_HEADER_LEN + tcp_len,
            ip_id,
            IPV4_DONT_FRAGMENT,
            TTL,
            IPPROTO_TCP,
            0,
            source,
            destination,
        )
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    else:
        ip = _IPV6_HEADER.pack(6 << 28, tcp_len, IPPROTO_TCP, TTL, source, destination)
    return b"".join((ip, tcp, options, segment.payload))


@dataclass(frozen=True, slots=True)
class ReceivedSegment:
    """A TCP segment read from the wire, with the addresses and ports.

    `source` is the server's packed address, `destination` ours.
    """

    source: bytes
    destination: bytes
    source_port: int
    destination_port: int
    segment: InboundSegment

    @property
    def source_text(self) -> str:
        """The server's address as inet_ntop writes it."""
        family = socket.AF_INET if len(self.source) == 4 else socket.AF_INET6
        return socket.inet_ntop(family, self.source)


def parse_datagram(packet: bytes) -> ReceivedSegment | None:
    """Parse an IP datagram carrying a TCP segment, or return None.

    None means not a segment the engine can use: another protocol, a
    fragment, IPv6 extension headers, or a length that does not fit.
    """
    if len(packet) < IPV4_HEADER_LEN:
        return None
    version = packet[0] >> 4
    if version == 4:
        header_len = (packet[0] & 0x0F) * 4
        total_len, fragment = struct.unpack_from("!H2xH", packet, 2)
        if packet[9] != IPPROTO_TCP or fragment & 0x3FFF or header_len < 20:
            return None
        source, destination = packet[12:16], packet[16:20]
    elif version == 6:
        if len(packet) < IPV6_HEADER_LEN or packet[6] != IPPROTO_TCP:
            return None
        header_len = IPV6_HEADER_LEN
        total_len = IPV6_HEADER_LEN + struct.unpack_from("!H", packet, 4)[0]
        source, destination = packet[8:24], packet[24:40]
    else:
        return None
    if total_len > len(packet) or total_len < header_len + TCP_HEADER_LEN:
        return None

    tcp = header_len
    fields = _TCP_HEADER.unpack_from(packet, tcp)
    data_offset = (fields[4] >> 4) * 4
    if data_offset < TCP_HEADER_LEN or tcp + data_offset > total_len:
        return None
    mss, window_scale = _read_options(packet[tcp + TCP_HEADER_LEN : tcp + data_offset])
    segment = InboundSegment(
        sequence=fields[2],
        acknowledgment=fields[3],
        flags=fields[5],
        window=fields[6],
        payload=bytes(packet[tcp + data_offset : total_len]),
        mss=mss,
        window_scale=window_scale,
    )
    return ReceivedSegment(
        bytes(source), bytes(destination), fields[0], fields[1], segment
    )


def _read_options(options: bytes) -> tuple[int | None, int | None]:
    """Return the MSS and window scale options, each None when absent."""
    mss = window_scale = None
    offset = 0
    while offset < len(options):
        kind = options[offset]
        if kind == TCP_OPTION_END:
            break
        if kind == TCP_OPTION_NOP:
            offset += 1
            continue
        if offset + 1 >= len(options):
            break
        length = options[offset + 1]
        if length < 2 or offset + length > len(options):
            break
        if kind == TCP_OPTION_MSS and length == 4:
            mss = struct.unpack_from("!H", options, offset + 2)[0]
        elif kind == TCP_OPTION_WINDOW_SCALE and length == 3:
            window_scale = options[offset + 2]
        offset += length
    return mss, window_scale
