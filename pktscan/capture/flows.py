"""Group a capture's packets into TCP connections and DNS exchanges.

A TCP connection is keyed by its 4-tuple. A SYN with a new initial sequence
number on a 4-tuple whose connection already has a SYN starts a new
connection, so a SYN probe and a later connect() that reuse one source port
stay apart. The client is the side that sent the SYN; without a SYN in the
capture it is the receiver of a SYN/ACK, else the side with the higher port.

Each connection is classified from its flags alone:

| kind | client sent | server sent |
|---|---|---|
| probe | SYN(s), then RST(s) or nothing | SYN/ACK |
| closed | SYN(s) | RST |
| unanswered | SYN(s) | nothing |
| handshake | SYN, then an ACK, data or FIN | anything |
| partial | no SYN in the capture | anything |

DNS over UDP port 53 is parsed with dpkt. A response is matched to the
earliest unanswered query with the same client address and port, server
address, ID and question.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from pktscan.capture.decode import (
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    Datagram,
    Segment,
    decode_frame,
)
from pktscan.capture.reader import Damage, Frame, read_capture
from pktscan.capture.stream import Stream, StreamBuilder

DNS_PORT = 53


class Side(enum.Enum):
    """The end of a connection that sent a packet."""

    CLIENT = "client"
    SERVER = "server"


class ConnectionKind(enum.Enum):
    """The role of a connection, read from its flags (see the module table)."""

    PROBE = "probe"
    CLOSED = "closed"
    UNANSWERED = "unanswered"
    HANDSHAKE = "handshake"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class TcpEvent:
    """One TCP segment of a connection, seen from the connection's ends.

    Attributes:
        number: packet number in the file.
        timestamp: seconds since the epoch.
        sender: the side that sent it.
        flags: TCP flag bits.
        offset: stream offset of the first payload byte, or None when the
            segment lies before the sender's first captured byte.
        length: payload bytes captured.
        retransmission: all payload bytes (or this SYN) were seen before.
    """

    number: int
    timestamp: float
    sender: Side
    flags: int
    offset: int | None
    length: int
    retransmission: bool

    @property
    def flag_names(self) -> str:
        """Flags as text in the usual order, for example "SYN/ACK" or "RST"."""
        names = [
            name
            for bit, name in (
                (TH_SYN, "SYN"),
                (TH_FIN, "FIN"),
                (TH_RST, "RST"),
                (0x08, "PSH"),
                (TH_ACK, "ACK"),
            )
            if self.flags & bit
        ]
        return "/".join(names) or "none"


@dataclass(frozen=True, slots=True)
class Connection:
    """A TCP connection with both directions reassembled.

    Attributes:
        client, server: (address, port) of each end.
        kind: what its flags show it was.
        events: its segments in capture order.
        client_stream, server_stream: the bytes each side sent.
    """

    client: tuple[str, int]
    server: tuple[str, int]
    kind: ConnectionKind
    events: tuple[TcpEvent, ...]
    client_stream: Stream
    server_stream: Stream

    @property
    def first_number(self) -> int:
        """Packet number of the connection's first segment."""
        return self.events[0].number

    @property
    def last_number(self) -> int:
        """Packet number of the connection's last segment."""
        return self.events[-1].number


@dataclass(frozen=True, slots=True)
class DnsExchange:
    """A DNS query and its response, if one was captured.

    Attributes:
        query_number, response_number: packet numbers.
        client, server: addresses.
        name: the question name, without the trailing dot.
        qtype: question type (1 A, 28 AAAA, 12 PTR, ...).
        answers: A and AAAA addresses and PTR names of the answer section.
        rcode: the response code, or None without a response.
    """

    query_number: int
    query_timestamp: float
    client: str
    server: str
    name: str
    qtype: int
    response_number: int | None = None
    response_timestamp: float | None = None
    answers: tuple[str, ...] = ()
    rcode: int | None = None


@dataclass(frozen=True, slots=True)
class FlowSet:
    """Everything the checker needs from one capture.

    Attributes:
        connections: TCP connections, ordered by their first packet.
        dns: DNS exchanges, ordered by query packet.
        frames: frames read.
        undecoded: frames that were not IPv4/IPv6 TCP or UDP.
        damage: where reading stopped early, if it did.
        start_time: timestamp of the first frame, or None for no frames.
    """

    connections: tuple[Connection, ...]
    dns: tuple[DnsExchange, ...]
    frames: int
    undecoded: int
    damage: Damage | None = None
    start_time: float | None = None


@dataclass(slots=True)
class _ConnectionBuilder:
    client: tuple[str, int]
    server: tuple[str, int]
    events: list[TcpEvent] = field(default_factory=list)
    client_builder: StreamBuilder = field(default_factory=StreamBuilder)
    server_builder: StreamBuilder = field(default_factory=StreamBuilder)
    client_isn: int | None = None
    server_isn: int | None = None

    def add(self, segment: Segment) -> None:
        from_client = (segment.src, segment.sport) == self.client
        sender = Side.CLIENT if from_client else Side.SERVER
        builder = self.client_builder if from_client else self.server_builder
        retransmission = self._note_syn(segment, sender, builder)
        is_syn_ack = segment.flags & (TH_SYN | TH_ACK) == TH_SYN | TH_ACK
        if is_syn_ack and not from_client and self.client_builder.base is None:
            # Without the client's SYN, the SYN/ACK's acknowledgment number
            # still gives the client's first sequence number, so a lost first
            # client segment shows as a gap.
            self.client_builder.base = segment.ack
        offset: int | None = None
        length = len(segment.payload)
        if length or segment.missing:
            seq = segment.seq + (1 if segment.flags & TH_SYN else 0)
            offset = builder.relative(seq)
            retransmission = builder.add(
                seq, segment.payload, segment.number, segment.timestamp, segment.missing
            )
        self.events.append(
            TcpEvent(
                segment.number,
                segment.timestamp,
                sender,
                segment.flags,
                offset,
                length,
                retransmission,
            )
        )

    def _note_syn(self, segment: Segment, sender: Side, builder: StreamBuilder) -> bool:
        if not segment.flags & TH_SYN:
            return False
        isn = self.client_isn if sender is Side.CLIENT else self.server_isn
        if isn == segment.seq:
            return True
        if sender is Side.CLIENT:
            self.client_isn = segment.seq
        else:
            self.server_isn = segment.seq
        builder.add_syn(segment.seq)
        return False

    def starts_new(self, segment: Segment) -> bool:
        """Return True if this segment is a SYN that opens a new connection."""
        is_syn = segment.flags & (TH_SYN | TH_ACK) == TH_SYN
        if not is_syn or self.client_isn is None:
            return False
        return segment.seq != self.client_isn

    def build(self) -> Connection:
        return Connection(
            self.client,
            self.server,
            _classify(self.events),
            tuple(self.events),
            self.client_builder.build(),
            self.server_builder.build(),
        )


def _classify(events: list[TcpEvent]) -> ConnectionKind:
    client = [event for event in events if event.sender is Side.CLIENT]
    server = [event for event in events if event.sender is Side.SERVER]
    if not any(event.flags & (TH_SYN | TH_ACK) == TH_SYN for event in client):
        return ConnectionKind.PARTIAL
    completed = any(
        event.length
        or event.flags & TH_FIN
        or (event.flags & TH_ACK and not event.flags & (TH_RST | TH_SYN))
        for event in client
    )
    if completed:
        return ConnectionKind.HANDSHAKE
    if any(event.flags & TH_SYN and event.flags & TH_ACK for event in server):
        return ConnectionKind.PROBE
    if any(event.flags & TH_RST for event in server):
        return ConnectionKind.CLOSED
    return ConnectionKind.UNANSWERED


def _endpoints(segment: Segment) -> tuple[tuple[str, int], tuple[str, int]]:
    """Return (client, server) for the first segment of a connection."""
    source, destination = (segment.src, segment.sport), (segment.dst, segment.dport)
    flags = segment.flags & (TH_SYN | TH_ACK)
    if flags == TH_SYN:
        return source, destination
    if flags == TH_SYN | TH_ACK:
        return destination, source
    if segment.sport > segment.dport:
        return source, destination
    return destination, source


class _DnsMatcher:
    def __init__(self) -> None:
        self.exchanges: list[DnsExchange] = []
        self._pending: dict[tuple[str, int, str, int, str, int], int] = {}

    def add(self, datagram: Datagram) -> None:
        try:
            message = dpkt.dns.DNS(datagram.payload)
        except (dpkt.UnpackError, IndexError, ValueError, struct.error):
            return
        if not message.qd:
            return
        question = message.qd[0]
        name = question.name.rstrip(".").lower()
        if message.qr == dpkt.dns.DNS_Q:
            key = (datagram.src, datagram.sport, datagram.dst, message.id, name)
            self._pending[(*key, question.type)] = len(self.exchanges)
            self.exchanges.append(
                DnsExchange(
                    datagram.number,
                    datagram.timestamp,
                    datagram.src,
                    datagram.dst,
                    name,
                    question.type,
                )
            )
            return
        key = (datagram.dst, datagram.dport, datagram.src, message.id, name)
        index = self._pending.pop((*key, question.type), None)
        if index is None:
            return
        query = self.exchanges[index]
        self.exchanges[index] = DnsExchange(
            query.query_number,
            query.query_timestamp,
            query.client,
            query.server,
            query.name,
            query.qtype,
            datagram.number,
            datagram.timestamp,
            _answers(message),
            message.rcode,
        )


def _answers(message: dpkt.dns.DNS) -> tuple[str, ...]:
    values: list[str] = []
    for record in message.an:
        if record.type == dpkt.dns.DNS_A and len(record.rdata) == 4:
            values.append(str(ipaddress.IPv4Address(record.rdata)))
        elif record.type == dpkt.dns.DNS_AAAA and len(record.rdata) == 16:
            values.append(str(ipaddress.IPv6Address(record.rdata)))
        elif record.type == dpkt.dns.DNS_PTR:
            values.append(str(record.ptrname).rstrip(".").lower())
    return tuple(values)


def build_flows(frames: Iterable[Frame], damage: Damage | None = None) -> FlowSet:
    """Decode frames and group them into connections and DNS exchanges.

    Args:
        frames: frames in file order.
        damage: the reader's damage, copied into the result; pass the
            reader's `damage` after iterating, or use `flows_from_file`.
    """
    active: dict[tuple[tuple[str, int], tuple[str, int]], _ConnectionBuilder] = {}
    finished: list[_ConnectionBuilder] = []
    dns = _DnsMatcher()
    count = undecoded = 0
    start_time: float | None = None
    for frame in frames:
        count += 1
        if start_time is None:
            start_time = frame.timestamp
        packet = decode_frame(frame)
        if isinstance(packet, Segment):
            _add_segment(packet, active, finished)
        elif isinstance(packet, Datagram) and DNS_PORT in (packet.sport, packet.dport):
            dns.add(packet)
        elif packet is None:
            undecoded += 1
    builders = sorted([*finished, *active.values()], key=lambda b: b.events[0].number)
    return FlowSet(
        tuple(builder.build() for builder in builders),
        tuple(dns.exchanges),
        count,
        undecoded,
        damage,
        start_time,
    )


def _add_segment(
    segment: Segment,
    active: dict[tuple[tuple[str, int], tuple[str, int]], _ConnectionBuilder],
    finished: list[_ConnectionBuilder],
) -> None:
    ends = sorted([(segment.src, segment.sport), (segment.dst, segment.dport)])
    key = (ends[0], ends[1])
    builder = active.get(key)
    if builder is not None and builder.starts_new(segment):
        finished.append(builder)
        builder = None
    if builder is None:
        client, server = _endpoints(segment)
        builder = _ConnectionBuilder(client, server)
        active[key] = builder
    builder.add(segment)


def flows_from_file(path: Path) -> FlowSet:
    """Read a capture file and group its packets; damage ends reading early.

    Raises:
        CaptureError: the file cannot be opened or is not a capture.
    """
    with read_capture(path) as reader:
        flows = build_flows(reader)
        return dataclasses.replace(flows, damage=reader.damage)
