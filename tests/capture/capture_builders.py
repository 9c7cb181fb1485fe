"""Build capture files for the capture tests, packet by packet, with dpkt.

`CaptureBuilder` numbers packets as they are added (1-based, like the
reader), so tests can assert exact packet numbers. `Conversation` tracks
sequence numbers for one TCP connection. `scan_target` writes the scanner's
documented sequence for one target, with switches for the broken variants.
"""

from __future__ import annotations

import gzip
import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from pktscan.tls.sets import build_set_hello

SCANNER = "198.18.0.1"
TARGET = "198.18.0.2"
RESOLVER = "198.18.0.53"
START_TIME = 1_700_000_000.0
STEP_S = 0.001

LINKTYPE_ETHERNET = 1
SYN, ACK, FIN, RST, PSH = (
    dpkt.tcp.TH_SYN,
    dpkt.tcp.TH_ACK,
    dpkt.tcp.TH_FIN,
    dpkt.tcp.TH_RST,
    dpkt.tcp.TH_PUSH,
)


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def handshake(message_type: int, body: bytes) -> bytes:
    """Return a handshake message: type(1), length(3), body."""
    return bytes([message_type]) + u24(len(body)) + body


def record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    """Return a TLS record: type(1), version(2), length(2), body."""
    return bytes([content_type]) + u16(version) + u16(len(body)) + body


def server_hello() -> bytes:
    body = (
        u16(0x0303)  # server_version TLS 1.2
        + bytes(32)  # random
        + b"\x00"  # session_id length 0
        + u16(0xC02F)  # cipher_suite
        + b"\x00"  # compression_method null
    )
    return handshake(2, body)


def certificate_message(der: bytes) -> bytes:
    entry = u24(len(der)) + der
    return handshake(11, u24(len(entry)) + entry)


def certificate_flight(der_len: int = 900) -> bytes:
    """Return ServerHello, Certificate, ServerHelloDone in one handshake record."""
    der = bytes((i * 7) & 0xFF for i in range(der_len))
    messages = server_hello() + certificate_message(der) + handshake(14, b"")
    return record(22, messages)


def alert_flight(description: int = 40) -> bytes:
    """Return a fatal alert record (default handshake_failure)."""
    return record(21, bytes([2, description]))


def ip_packet(src: str, dst: str, transport: dpkt.Packet, proto: int) -> dpkt.Packet:
    if ":" in src:
        packet = dpkt.ip6.IP6(
            src=ipaddress.IPv6Address(src).packed,
            dst=ipaddress.IPv6Address(dst).packed,
            nxt=proto,
            hlim=64,
            data=transport,
            plen=len(transport),
        )
        return packet
    return dpkt.ip.IP(
        src=ipaddress.IPv4Address(src).packed,
        dst=ipaddress.IPv4Address(dst).packed,
        p=proto,
        ttl=64,
        data=transport,
    )


@dataclass
class CaptureBuilder:
    """Packets in order, each as (timestamp, IP packet bytes)."""

    packets: list[tuple[float, bytes]] = field(default_factory=list)
    time: float = START_TIME

    def add_ip(self, packet: dpkt.Packet) -> int:
        self.packets.append((self.time, bytes(packet)))
        # Whole microseconds from the start, so pcap's microsecond timestamps
        # store each time exactly.
        self.time = START_TIME + len(self.packets) * STEP_S
        return len(self.packets)

    def tcp(
        self,
        src: tuple[str, int],
        dst: tuple[str, int],
        flags: int,
        seq: int,
        ack: int = 0,
        payload: bytes = b"",
    ) -> int:
        segment = dpkt.tcp.TCP(
            sport=src[1],
            dport=dst[1],
            seq=seq % 2**32,
            ack=ack % 2**32,
            flags=flags,
            win=65535,
            data=payload,
        )
        return self.add_ip(ip_packet(src[0], dst[0], segment, dpkt.ip.IP_PROTO_TCP))

    def udp(self, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> int:
        datagram = dpkt.udp.UDP(sport=src[1], dport=dst[1], data=payload)
        datagram.ulen = len(datagram)
        return self.add_ip(ip_packet(src[0], dst[0], datagram, dpkt.ip.IP_PROTO_UDP))

    def frames(self, linktype: int = LINKTYPE_ETHERNET) -> list[tuple[float, bytes]]:
        return [(ts, frame_for(linktype, packet)) for ts, packet in self.packets]

    def write(self, path: Path, linktype: int = LINKTYPE_ETHERNET) -> Path:
        """Write a classic little-endian microsecond pcap."""
        with path.open("wb") as handle:
            writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=linktype)
            for timestamp, frame in self.frames(linktype):
                writer.writepkt(frame, timestamp)
        return path

    def write_gzip(self, path: Path) -> Path:
        plain = self.write(path.with_suffix(".plain"))
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        return path


def frame_for(linktype: int, packet: bytes) -> bytes:
    """Wrap an IP packet in the link header of a link type."""
    version = packet[0] >> 4
    ethertype = 0x0800 if version == 4 else 0x86DD
    if linktype == LINKTYPE_ETHERNET:
        return (
            b"\x02\x00\x00\x00\x00\x02"
            + b"\x02\x00\x00\x00\x00\x01"
            + u16(ethertype)
            + packet
        )
    if linktype == 0:  # NULL, little-endian host
        family = 2 if version == 4 else 30
        return struct.pack("<I", family) + packet
    if linktype == 101:  # raw IP
        return packet
    if linktype == 113:  # Linux SLL: packet type 4 = sent by us
        return (
            struct.pack("!HHH8sH", 4, 1, 6, b"\x02" * 6 + b"\0\0", ethertype) + packet
        )
    if linktype == 276:  # Linux SLL2
        return struct.pack("!HHiHBB8s", ethertype, 0, 2, 1, 4, 6, b"\x02" * 8) + packet
    raise ValueError(f"no frame builder for link type {linktype}")


def pppoe_frame(packet: bytes) -> bytes:
    """Wrap an IPv4 packet in Ethernet + PPPoE session + PPP."""
    ppp = u16(0x0021) + packet
    pppoe = bytes([0x11, 0x00]) + u16(0x069D) + u16(len(ppp)) + ppp
    return b"\x02" * 6 + b"\x04" * 6 + u16(0x8864) + pppoe


@dataclass
class Conversation:
    """One TCP connection's sequence numbers."""

    builder: CaptureBuilder
    client: tuple[str, int]
    server: tuple[str, int]
    client_isn: int = 1000
    server_isn: int = 5000
    client_next: int = 0
    server_next: int = 0

    def __post_init__(self) -> None:
        self.client_next = self.client_isn + 1
        self.server_next = self.server_isn + 1

    def syn(self) -> int:
        return self.builder.tcp(self.client, self.server, SYN, self.client_isn)

    def syn_ack(self) -> int:
        return self.builder.tcp(
            self.server, self.client, SYN | ACK, self.server_isn, self.client_next
        )

    def server_rst_ack(self) -> int:
        return self.builder.tcp(
            self.server, self.client, RST | ACK, 0, self.client_next
        )

    def client_ack(self) -> int:
        return self.builder.tcp(
            self.client, self.server, ACK, self.client_next, self.server_next
        )

    def server_ack(self) -> int:
        return self.builder.tcp(
            self.server, self.client, ACK, self.server_next, self.client_next
        )

    def client_data(self, payload: bytes, flags: int = PSH | ACK) -> int:
        number = self.builder.tcp(
            self.client, self.server, flags, self.client_next, self.server_next, payload
        )
        self.client_next += len(payload)
        return number

    def server_segment(self, offset: int, payload: bytes) -> int:
        """Send server bytes at a stream offset, without moving server_next."""
        return self.builder.tcp(
            self.server,
            self.client,
            PSH | ACK,
            self.server_isn + 1 + offset,
            self.client_next,
            payload,
        )

    def server_data(self, payload: bytes) -> int:
        number = self.server_segment(self.server_next - self.server_isn - 1, payload)
        self.server_next += len(payload)
        return number

    def client_rst(self, with_ack: bool = True) -> int:
        flags = RST | ACK if with_ack else RST
        return self.builder.tcp(
            self.client, self.server, flags, self.client_next, self.server_next
        )

    def client_fin(self) -> int:
        number = self.builder.tcp(
            self.client, self.server, FIN | ACK, self.client_next, self.server_next
        )
        self.client_next += 1
        return number

    def server_fin(self) -> int:
        number = self.builder.tcp(
            self.server, self.client, FIN | ACK, self.server_next, self.client_next
        )
        self.server_next += 1
        return number


def dns_exchange(
    builder: CaptureBuilder, name: str, qtype: int, answer: str, query_id: int
) -> tuple[int, int]:
    """Add a DNS query and its one-record answer; return both packet numbers."""
    question = dpkt.dns.DNS.Q(name=name, type=qtype, cls=1)
    query = dpkt.dns.DNS(id=query_id, qd=[question], rd=1)
    response = dpkt.dns.DNS(
        id=query_id, qd=[question], op=dpkt.dns.DNS_RA, qr=dpkt.dns.DNS_R
    )
    rr = dpkt.dns.DNS.RR(name=name, type=qtype, cls=1, ttl=60)
    if qtype == dpkt.dns.DNS_A:
        rr.ip = ipaddress.IPv4Address(answer).packed
        rr.rlen = 4
    else:
        rr.ptrname = answer
    response.an = [rr]
    client = (SCANNER, 40000 + query_id)
    query_number = builder.udp(client, (RESOLVER, 53), bytes(query))
    response_number = builder.udp((RESOLVER, 53), client, bytes(response))
    return query_number, response_number


@dataclass
class AttemptPlan:
    """One attempt of `scan_target`."""

    set_number: int
    certificate: bool = True
    close: str = "rst"  # rst, fin or none
    hello: bytes | None = None


@dataclass
class ScanNumbers:
    """Packet numbers that `scan_target` produced, for exact assertions."""

    probe_syn: int = 0
    attempts: list[dict[str, int]] = field(default_factory=list)


def probe_open(builder: CaptureBuilder, port: int, server: tuple[str, int]) -> int:
    probe = Conversation(builder, (SCANNER, port), server, client_isn=77, server_isn=88)
    number = probe.syn()
    probe.syn_ack()
    probe.client_rst(with_ack=False)
    probe.client_rst(with_ack=False)  # the kernel's own RST for the SYN/ACK
    return number


def run_attempt(
    builder: CaptureBuilder, plan: AttemptPlan, port: int, server: tuple[str, int]
) -> dict[str, int]:
    """Add one attempt connection; return its packet numbers by name."""
    conversation = Conversation(
        builder, (SCANNER, port), server, client_isn=port * 1000, server_isn=port * 7
    )
    numbers = {"syn": conversation.syn()}
    conversation.syn_ack()
    conversation.client_ack()
    hello = plan.hello or build_set_hello(plan.set_number, bytes(range(32)))
    numbers["hello"] = conversation.client_data(hello)
    conversation.server_ack()
    flight = certificate_flight() if plan.certificate else alert_flight()
    numbers["flight"] = conversation.server_data(flight)
    conversation.client_ack()
    if plan.close == "rst":
        numbers["close"] = conversation.client_rst()
    elif plan.close == "fin":
        numbers["close"] = conversation.client_fin()
        conversation.server_fin()
        numbers["last"] = conversation.client_ack()
    numbers["last"] = numbers.get("last", len(builder.packets))
    return numbers


def scan_target(
    builder: CaptureBuilder,
    attempts: list[AttemptPlan],
    *,
    server: tuple[str, int] = (TARGET, 443),
    name: str | None = "www.lab.test",
    ptr: bool = True,
) -> ScanNumbers:
    """Add the scanner's documented sequence for one target."""
    numbers = ScanNumbers()
    if name is not None:
        dns_exchange(builder, name, dpkt.dns.DNS_A, server[0], 1)
    numbers.probe_syn = probe_open(builder, 61000, server)
    if ptr:
        reverse = ipaddress.ip_address(server[0]).reverse_pointer
        dns_exchange(builder, reverse, dpkt.dns.DNS_PTR, name or "host.lab.test", 2)
    for index, plan in enumerate(attempts):
        numbers.attempts.append(run_attempt(builder, plan, 50001 + index, server))
    return numbers
