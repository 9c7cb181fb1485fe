"""SYN and RST packet templates patched in place, and parsing of TCP responses.

scapy builds each template once, and no scapy call runs per packet. For each
packet, the send loop writes the addresses, ports, sequence number and
timestamp into a bytearray. It adds their 16-bit words to a checksum
precomputed over the constant bytes, which works because the one's
complement sum is commutative and associative (RFC 1071). The packets are IP
datagrams without a link-layer header, as an AF_PACKET SOCK_DGRAM socket and
an IPPROTO_RAW socket both take them.

SYN template (IPv4; IPv6 has a 40-byte header without checksum)::

    offset  field
    0       IPv4 header, 20 bytes: TTL 64, DF, ID and checksum patched,
            source at 12, destination at 16
    20      TCP source port | destination port
    24      sequence number (the SYN cookie)
    28      acknowledgment number (0)
    32      data offset 10 | flags SYN | window 64240
    36      checksum | urgent pointer
    40      MSS 1460 | SACK permitted | timestamp (TSval patched, TSecr 0)
            | NOP | window scale 7, in the order Linux 6.18 sends them
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

IPPROTO_TCP = 6
IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

TCP_OPTION_END = 0
TCP_OPTION_NOP = 1
TCP_OPTION_TIMESTAMP = 8

SYN_WINDOW = 64240
SYN_TTL = 64


def _ones_complement_sum(data: bytes | bytearray) -> int:
    """Return the unfolded sum of data's big-endian 16-bit words."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@dataclass(frozen=True, slots=True)
class _Layout:
    """Offsets of the patched fields in a template."""

    version: int
    ip_header_len: int
    source: int
    destination: int
    ip_checksum: int | None
    ip_id: int | None
    tcp: int
    timestamp: int | None


class PacketTemplate:
    """A TCP packet built once by scapy, filled per packet without scapy.

    The base checksums cover every byte that `fill` does not write, with the
    patched fields zeroed; `fill` adds the words of the new values.
    """

    def __init__(self, version: int, flags: str, *, with_options: bool) -> None:
        self.version = version
        self.packet = bytearray(_build_with_scapy(version, flags, with_options))
        self.layout = _find_layout(bytes(self.packet), version)
        layout = self.layout
        tcp_len = len(self.packet) - layout.tcp
        # scapy filled in the checksums, which must be zero in the base sums.
        if layout.ip_checksum is not None:
            struct.pack_into("!H", self.packet, layout.ip_checksum, 0)
        struct.pack_into("!H", self.packet, layout.tcp + 16, 0)

        if layout.ip_checksum is not None:
            self.ip_base = _ones_complement_sum(self.packet[: layout.tcp])
        else:
            self.ip_base = 0
        # TCP pseudo-header (RFC 793 section 3.1, RFC 8200 section 8.1)
        # without the addresses, which fill adds.
        self.tcp_base = IPPROTO_TCP + tcp_len
        self.tcp_base += _ones_complement_sum(self.packet[layout.tcp :])

    def fill(
        self,
        source: bytes,
        destination: bytes,
        source_port: int,
        destination_port: int,
        sequence: int,
        *,
        ip_id: int = 0,
        timestamp: int = 0,
    ) -> bytearray:
        """Write the variable fields and both checksums; return the packet.

        The returned bytearray is the template's own buffer, overwritten by
        the next call, so send it before filling again.

        Args:
            source: our address, 4 or 16 packed bytes.
            destination: the target's address, packed like `source`.
            sequence: the TCP sequence number, 0 to 2**32 - 1.
            ip_id: the IPv4 identification; unused for IPv6.
            timestamp: the TSval of the timestamp option, if the template
                has one.
        """
        packet = self.packet
        layout = self.layout
        tcp = layout.tcp
        packet[layout.source : layout.source + len(source)] = source
        packet[layout.destination : layout.destination + len(destination)] = destination
        address_sum = _address_sum(source) + _address_sum(destination)

        if layout.ip_checksum is not None and layout.ip_id is not None:
            ip_sum = _fold(self.ip_base + address_sum + ip_id)
            _U16.pack_into(packet, layout.ip_id, ip_id)
            _U16.pack_into(packet, layout.ip_checksum, ~ip_sum & 0xFFFF)

        _PORTS_SEQUENCE.pack_into(packet, tcp, source_port, destination_port, sequence)
        tcp_sum = self.tcp_base + address_sum + source_port + destination_port
        tcp_sum += (sequence >> 16) + (sequence & 0xFFFF)
        if layout.timestamp is not None:
            _U32.pack_into(packet, layout.timestamp, timestamp)
            tcp_sum += (timestamp >> 16) + (timestamp & 0xFFFF)
        _U16.pack_into(packet, tcp + 16, ~_fold(tcp_sum) & 0xFFFF)
        return packet


_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PORTS_SEQUENCE = struct.Struct("!HHI")
_IPV6_WORDS = struct.Struct("!8H")


def _address_sum(address: bytes) -> int:
    """Return the unfolded sum of a packed address's 16-bit words."""
    if len(address) == 4:
        value = int.from_bytes(address, "big")
        return (value >> 16) + (value & 0xFFFF)
    return sum(_IPV6_WORDS.unpack(address))


def _build_with_scapy(version: int, flags: str, with_options: bool) -> bytes:
    """Build the template bytes with every patched field zero."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    options: list[tuple[str, object]] = []
    if with_options:
        options = [
            ("MSS", 1460),
            ("SAckOK", b""),
            ("Timestamp", (0, 0)),
            ("NOP", None),
            ("WScale", 7),
        ]
    window = SYN_WINDOW if "S" in flags else 0
    tcp = TCP(sport=0, dport=0, seq=0, ack=0, flags=flags, window=window)
    tcp.options = options
    if version == 4:
        return bytes(
            IP(src="0.0.0.0", dst="0.0.0.0", ttl=SYN_TTL, id=0, flags="DF") / tcp
        )
    return bytes(IPv6(src="::", dst="::", hlim=SYN_TTL) / tcp)


def _find_layout(packet: bytes, version: int) -> _Layout:
    if version == 4:
        header_len = (packet[0] & 0x0F) * 4
        tcp = header_len
        return _Layout(4, header_len, 12, 16, 10, 4, tcp, _find_timestamp(packet, tcp))
    tcp = IPV6_HEADER_LEN
    return _Layout(
        6, IPV6_HEADER_LEN, 8, 24, None, None, tcp, _find_timestamp(packet, tcp)
    )


def _find_timestamp(packet: bytes, tcp: int) -> int | None:
    """Return the offset of the TSval field, or None without the option."""
    option = _find_option(packet, tcp, TCP_OPTION_TIMESTAMP)
    return None if option is None else option + 2


def _find_option(packet: bytes, tcp: int, kind: int) -> int | None:
    """Return the offset of the first TCP option of this kind, or None."""
    end = tcp + (packet[tcp + 12] >> 4) * 4
    offset = tcp + 20
    while offset < min(end, len(packet)):
        current = packet[offset]
        if current == TCP_OPTION_END:
            return None
        if current == TCP_OPTION_NOP:
            offset += 1
            continue
        if offset + 1 >= end:
            return None
        length = packet[offset + 1]
        if length < 2:
            return None
        if current == kind:
            return offset if offset + length <= end else None
        offset += length
    return None


@dataclass(frozen=True, slots=True)
class TcpResponse:
    """The fields of a received TCP segment that the prober reads.

    `source` is the responding target, `destination` our address, both
    packed. `timestamp_echo` is the TSecr of a timestamp option, if any.
    """

    version: int
    source: bytes
    destination: bytes
    source_port: int
    destination_port: int
    sequence: int
    acknowledgment: int
    flags: int
    ttl: int
    timestamp_echo: int | None

    @property
    def source_text(self) -> str:
        """Text form of the responding address, as inet_ntop writes it."""
        family = socket.AF_INET if len(self.source) == 4 else socket.AF_INET6
        return socket.inet_ntop(family, self.source)


def parse_tcp_response(packet: bytes) -> TcpResponse | None:
    """Parse an IP datagram carrying a TCP segment.

    Returns None for anything else: another protocol, a non-first fragment,
    IPv6 extension headers, or a datagram too short for its headers. Such
    packets are not responses to a SYN probe.
    """
    if len(packet) < IPV4_HEADER_LEN:
        return None
    version = packet[0] >> 4
    if version == 4:
        header_len = (packet[0] & 0x0F) * 4
        fragment_offset = struct.unpack_from("!H", packet, 6)[0] & 0x1FFF
        if header_len < IPV4_HEADER_LEN or packet[9] != IPPROTO_TCP:
            return None
        if fragment_offset:
            return None
        ttl = packet[8]
        source, destination = packet[12:16], packet[16:20]
    elif version == 6:
        header_len = IPV6_HEADER_LEN
        if len(packet) < header_len or packet[6] != IPPROTO_TCP:
            return None
        ttl = packet[7]
        source, destination = packet[8:24], packet[24:40]
    else:
        return None

    tcp = header_len
    if len(packet) < tcp + 20:
        return None
    source_port, destination_port, sequence, acknowledgment = struct.unpack_from(
        "!HHII", packet, tcp
    )
    flags = packet[tcp + 13]
    echo: int | None = None
    if len(packet) >= tcp + (packet[tcp + 12] >> 4) * 4:
        option = _find_option(packet, tcp, TCP_OPTION_TIMESTAMP)
        if option is not None and packet[option + 1] == 10:
            echo = struct.unpack_from("!I", packet, option + 6)[0]
    return TcpResponse(
        version,
        bytes(source),
        bytes(destination),
        source_port,
        destination_port,
        sequence,
        acknowledgment,
        flags,
        ttl,
        echo,
    )
