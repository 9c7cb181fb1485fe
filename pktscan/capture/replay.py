"""Replay a capture's TLS connections through the scanner's handshake codec.

Each TCP connection whose client opens with a ClientHello (TLS record or
SSLv2-compatible format), or whose server opens with a TLS handshake
record, is a TLS flow. The server's reassembled bytes are fed to the same
`HandshakeReader` that the kernel engine feeds from its socket, so a
capture gives the attempt records and certificate chains that a scan of
the same servers would have written.

The reader is fed the server's stream up to its first gap, because bytes
after a gap cannot be placed. When the reader is not done at the end of
those bytes, the transport reason passed to `HandshakeReader.finish` comes
from the server's flags: "reset" after its RST, "eof" after its FIN, and
"timeout" when the capture shows neither.

Connections are grouped into one `PortResult` per server address and
port, in the order of their first packet. The state is "closed" when the
server only answered with RST, "filtered" when it never answered, and
"open" otherwise. As in a scan, the chain is the one from the first TLS
flow that brought a certificate, while every TLS flow is listed in
`TlsResult.attempts`. A connection whose client opens with an HTTP request
gives the `HttpResult`. The result's time is that of the target's last
packet, so the inventory judges certificate validity at the time of the
capture. Names come from the capture's DNS answers: the first A or AAAA
query that returned the address, and the first PTR answer for it, on every
port of the address, as a scan puts it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from pktscan.capture.decode import TH_FIN, TH_RST
from pktscan.capture.flows import (
    Connection,
    ConnectionKind,
    DnsExchange,
    FlowSet,
    Side,
    flows_from_file,
)
from pktscan.capture.reader import Damage
from pktscan.capture.tlsview import HTTP_METHODS
from pktscan.certs import decode_chain
from pktscan.grab.http import parse_response_head
from pktscan.results import AttemptRecord, HttpResult, PortResult, TlsResult
from pktscan.tls.client import HandshakeOutcome, HandshakeReader
from pktscan.tls.constants import ContentType, HandshakeType, SSLv2MessageType
from pktscan.tls.sets import classify_client_hello

TLS_RECORD_HEADER_LEN: Final = 5
HANDSHAKE_HEADER_LEN: Final = 4
SSL2_HEADER_LEN: Final = 2
# AttemptRecord.set_number of a hello that none of the four protocol sets
# produced, such as a browser's.
FOREIGN_SET: Final = 0
DNS_TYPE_A: Final = 1
DNS_TYPE_PTR: Final = 12
DNS_TYPE_AAAA: Final = 28

HelloFormat = Literal["sslv2", "tls"]
StopReason = Literal["eof", "reset", "timeout"]


@dataclass(frozen=True, slots=True)
class ReplayedFlow:
    """One TLS connection of a capture and what the codec made of it.

    Attributes:
        connection: the reassembled TCP connection.
        hello_format: "sslv2" for an SSLv2-compatible ClientHello, else "tls".
        set_number: the protocol set that produced the ClientHello, or
            `FOREIGN_SET` (0) when none did or the hello was not captured.
        stop: the transport reason given to the reader, or None when the
            reader was done before the server's bytes ran out.
        outcome: the reader's summary of the server's reply.
    """

    connection: Connection
    hello_format: HelloFormat
    set_number: int
    stop: StopReason | None
    outcome: HandshakeOutcome

    @property
    def target(self) -> str:
        """The server as ``address:port``, IPv6 addresses in brackets."""
        return _target_text(self.connection.server)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """Everything a replay of one capture produced.

    Attributes:
        path: the capture file, as given.
        frames: frames read.
        flows: TLS flows, ordered by their first packet.
        results: one result per server address and port, in order of the
            first connection to it.
        damage: where reading stopped early, if it did.
    """

    path: str
    frames: int
    flows: tuple[ReplayedFlow, ...]
    results: tuple[PortResult, ...]
    damage: Damage | None = None

    def certificates(self) -> set[bytes]:
        """Return the DER of every certificate of every flow's chain."""
        return {der for flow in self.flows for der in flow.outcome.chain}


def _target_text(server: tuple[str, int]) -> str:
    address, port = server
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def hello_format_of(client_data: bytes) -> HelloFormat | None:
    """Tell the format of the ClientHello that opens a client stream.

    Returns:
        "sslv2" for an SSLv2-compatible CLIENT-HELLO (2-byte header with the
        high bit set, then message type 1), "tls" for a TLS handshake record
        that starts with a ClientHello, None for anything else.
    """
    if len(client_data) > SSL2_HEADER_LEN and client_data[0] & 0x80:
        if client_data[SSL2_HEADER_LEN] == SSLv2MessageType.CLIENT_HELLO:
            return "sslv2"
        return None
    if len(client_data) <= TLS_RECORD_HEADER_LEN:
        return None
    if not _is_handshake_record(client_data):
        return None
    first_message = client_data[TLS_RECORD_HEADER_LEN]
    return "tls" if first_message == HandshakeType.client_hello else None


def _is_handshake_record(data: bytes) -> bool:
    return data[0] == ContentType.handshake and data[1] == 3


def client_hello_bytes(client_data: bytes) -> bytes | None:
    """Return the records that carry the client stream's first ClientHello.

    For the SSLv2-compatible format that is the first record. For TLS it is
    every record up to the one that completes the ClientHello message, since
    a large hello may span several records.

    Returns:
        The prefix of `client_data` to send, or None when the stream does
        not open with a complete ClientHello.
    """
    hello_format = hello_format_of(client_data)
    if hello_format == "sslv2":
        length = ((client_data[0] & 0x7F) << 8) | client_data[1]
        end = SSL2_HEADER_LEN + length
        return client_data[:end] if len(client_data) >= end else None
    if hello_format is None:
        return None
    handshake = bytearray()
    offset = 0
    while offset + TLS_RECORD_HEADER_LEN <= len(client_data):
        if not _is_handshake_record(client_data[offset:]):
            return None
        length = int.from_bytes(client_data[offset + 3 : offset + 5], "big")
        end = offset + TLS_RECORD_HEADER_LEN + length
        if end > len(client_data):
            return None
        handshake += client_data[offset + TLS_RECORD_HEADER_LEN : end]
        offset = end
        if len(handshake) >= HANDSHAKE_HEADER_LEN:
            needed = HANDSHAKE_HEADER_LEN + int.from_bytes(handshake[1:4], "big")
            if len(handshake) >= needed:
                return client_data[:offset]
    return None


def _server_opens_tls(server_data: bytes) -> bool:
    return len(server_data) >= TLS_RECORD_HEADER_LEN and _is_handshake_record(
        server_data
    )


def _stop_reason(connection: Connection) -> StopReason:
    server_flags = 0
    for event in connection.events:
        if event.sender is Side.SERVER:
            server_flags |= event.flags
    if server_flags & TH_RST:
        return "reset"
    if server_flags & TH_FIN:
        return "eof"
    return "timeout"


def replay_connection(connection: Connection) -> ReplayedFlow | None:
    """Feed one connection's server bytes to a `HandshakeReader`.

    Returns:
        The replayed flow, or None when the connection is not TLS: its client
        does not open with a ClientHello and its server does not open with a
        TLS handshake record.
    """
    client_data = connection.client_stream.data
    server_data = connection.server_stream.data
    hello_format = hello_format_of(client_data)
    if hello_format is None:
        if not _server_opens_tls(server_data):
            return None
        hello_format = "tls"
    set_number = classify_client_hello(client_data) or FOREIGN_SET

    reader = HandshakeReader(hello_format)
    reader.feed(server_data)
    stop = None if reader.done else _stop_reason(connection)
    return ReplayedFlow(connection, hello_format, set_number, stop, reader.finish(stop))


def _attempt_record(flow: ReplayedFlow) -> AttemptRecord:
    outcome = flow.outcome
    detail = outcome.error
    if outcome.outcome == "non_tls":
        detail = outcome.first_bytes.hex()
    return AttemptRecord(
        set_number=flow.set_number,
        outcome=outcome.outcome,
        version=outcome.version_name,
        cipher=outcome.cipher_name,
        alert=outcome.alert_name,
        detail=detail,
        source_port=flow.connection.client[1],
    )


@dataclass(slots=True)
class _Names:
    """Forward names by address and PTR names by reverse name, first seen."""

    forward: dict[str, str]
    reverse: dict[str, str]

    @classmethod
    def from_dns(cls, dns: Iterable[DnsExchange]) -> _Names:
        names = cls({}, {})
        for exchange in dns:
            if exchange.qtype in (DNS_TYPE_A, DNS_TYPE_AAAA):
                for address in exchange.answers:
                    names.forward.setdefault(address, exchange.name)
            elif exchange.qtype == DNS_TYPE_PTR and exchange.answers:
                names.reverse.setdefault(exchange.name, exchange.answers[0])
        return names

    def of(self, address: str) -> tuple[str | None, str | None]:
        """Return the forward name that resolved to `address`, and its PTR."""
        reverse = ipaddress.ip_address(address).reverse_pointer
        return self.forward.get(address), self.reverse.get(reverse)


def _tls_result(flows: list[ReplayedFlow]) -> TlsResult:
    tls = TlsResult(attempts=[_attempt_record(flow) for flow in flows])
    for flow in flows:
        outcome = flow.outcome
        if outcome.chain:
            tls.set_number = flow.set_number
            tls.version = outcome.version_name
            tls.cipher = outcome.cipher_name
            tls.chain = decode_chain(outcome.chain)
            tls.key_exchange = (
                dict(outcome.key_exchange) if outcome.key_exchange else None
            )
            break
    return tls


def _http_result(connections: list[Connection]) -> HttpResult | None:
    for connection in connections:
        if not connection.client_stream.data.startswith(HTTP_METHODS):
            continue
        if connection.server_stream.data:
            return parse_response_head(connection.server_stream.data)
        return HttpResult(None, None, error="closed without an answer")
    return None


def _state(connections: list[Connection]) -> str:
    kinds = {connection.kind for connection in connections}
    if kinds - {ConnectionKind.CLOSED, ConnectionKind.UNANSWERED}:
        return "open"
    if ConnectionKind.CLOSED in kinds:
        return "closed"
    return "filtered"


def _port_result(
    connections: list[Connection], flows: list[ReplayedFlow], names: _Names
) -> PortResult:
    address, port = connections[0].server
    name, ptr = names.of(address)
    state = _state(connections)
    return PortResult(
        ip=address,
        port=port,
        state=state,
        name=name,
        # A scan looks up the PTR of an address once some port of it
        # responded, and puts it on every port of that address, filtered
        # ones included. The capture contains the PTR answer only then.
        ptr=ptr,
        tls=_tls_result(flows) if flows else None,
        http=_http_result(connections),
        time=max(connection.events[-1].timestamp for connection in connections),
    )


def replay_flows(flows: FlowSet, path: str = "") -> ReplayReport:
    """Replay every TLS connection of a capture; see the module docstring."""
    replayed: list[ReplayedFlow] = []
    connections: dict[tuple[str, int], list[Connection]] = {}
    tls_flows: dict[tuple[str, int], list[ReplayedFlow]] = {}
    for connection in flows.connections:
        connections.setdefault(connection.server, []).append(connection)
        flow = replay_connection(connection)
        if flow is not None:
            replayed.append(flow)
            tls_flows.setdefault(connection.server, []).append(flow)
    names = _Names.from_dns(flows.dns)
    results = tuple(
        _port_result(target_connections, tls_flows.get(server, []), names)
        for server, target_connections in connections.items()
    )
    return ReplayReport(path, flows.frames, tuple(replayed), results, flows.damage)


def replay_file(path: Path) -> ReplayReport:
    """Read a capture file and replay its TLS connections.

    Raises:
        CaptureError: the file cannot be opened or is not a capture.
    """
    return replay_flows(flows_from_file(path), str(path))
