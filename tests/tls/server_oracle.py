"""Decode a server's reply three ways, into the same comparable fields.

`decode_ours` runs the reply through pktscan's codec (records, handshake
reassembly and the message decoders), `decode_tshark` walks the layers of
`tshark -T json`, and `decode_scapy` walks scapy's `TLS`/`SSLv2` layers.
These three return a `Fields`: the records in wire order as
(content type, version, length), and the messages in wire order as small
dicts that contain only what the three can all report:

- handshake: `type`; ServerHello `version`, `cipher_suite`,
  `session_id_length`, `extensions` (types in order); Certificate
  `certificates` (SHA-256 prefixes of each DER); ServerKeyExchange
  `named_group` or `p_len`;
- alert: `alert` = (level, description);
- SSL 2.0: `sslv2` = msg_type, `cipher_specs`, `certificates`.

Handshake messages are read only up to the first ChangeCipherSpec record,
and SSL 2.0 messages only from the first record: what follows is encrypted.
An SSL 2.0 record's content type is "sslv2". `decode_events` turns a
`HandshakeReader`'s events into the same messages.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
from scapy.layers.tls.record import TLS
from scapy.layers.tls.record_sslv2 import SSLv2
from scapy.packet import Raw

from pktscan.errors import PeerProtocolError
from pktscan.tls import events as ev
from pktscan.tls.events import Event
from pktscan.tls.keyexchange import ServerKeyExchange, decode_server_key_exchange
from pktscan.tls.messages import (
    FIRST_TLS13_DRAFT_VERSION,
    LAST_SHORT_HELLO_DRAFT_VERSION,
    HandshakeAssembler,
    HandshakeMessage,
    HelloRetryRequest,
    ServerHello,
    decode_certificate,
    decode_server_hello,
)
from pktscan.tls.record import SSLv2Record, TlsRecord, parse_records
from pktscan.tls.sslv2 import SSLv2ServerHello, decode_sslv2_server_hello

SERVER_ADDRESS = "198.18.0.2"
CLIENT_ADDRESS = "198.18.0.1"
SERVER_PORT = 443
CLIENT_PORT = 40000
MSS = 1460  # bytes of TCP payload per segment, as on Ethernet
DIGEST_LEN = 16  # hex digits of SHA-256 kept per certificate

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
SSLV2_ERROR = 0
SSLV2_SERVER_HELLO = 4
HANDSHAKE_SERVER_HELLO = 2
HANDSHAKE_CERTIFICATE = 11
HANDSHAKE_SERVER_KEY_EXCHANGE = 12
TLS13 = 0x0304

# (our name, tshark field, number base) of the ServerHello fields compared.
SERVER_HELLO_FIELDS = (
    ("version", "tls.handshake.version", 16),
    ("cipher_suite", "tls.handshake.ciphersuite", 16),
    ("session_id_length", "tls.handshake.session_id_length", 10),
)

Record = tuple[int | str, int, int]  # content type, version, length
Message = dict[str, object]


@dataclass(slots=True)
class Fields:
    """What one decoder made of a reply: records and messages in wire order."""

    records: list[Record] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


def digest(der: bytes) -> str:
    """Return the first hex digits of a certificate's SHA-256, enough to tell it."""
    return hashlib.sha256(der).hexdigest()[:DIGEST_LEN]


# Synthetic capture


def write_server_pcap(data: bytes, path: Path) -> None:
    """Write `data` as one TCP connection's server side, in MSS segments.

    The connection opens with a three-way handshake so that tshark
    dissects a whole stream. Sequence numbers run on from the SYN-ACK.
    """
    client_seq, server_seq = 1000, 5000
    syn, ack = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK
    frames = [
        _frame(False, client_seq, 0, syn),
        _frame(True, server_seq, client_seq + 1, syn | ack),
        _frame(False, client_seq + 1, server_seq + 1, ack),
    ]
    for start in range(0, len(data), MSS):
        chunk = data[start : start + MSS]
        seq = server_seq + 1 + start
        frames.append(_frame(True, seq, client_seq + 1, ack | dpkt.tcp.TH_PUSH, chunk))

    with path.open("wb") as out:
        writer = dpkt.pcap.Writer(out)
        for number, frame in enumerate(frames):
            writer.writepkt(frame, ts=1.0 + number / 1000)


def _frame(
    from_server: bool, seq: int, ack: int, flags: int, payload: bytes = b""
) -> bytes:
    """Build one Ethernet frame of the connection, in either direction."""
    server = (socket.inet_aton(SERVER_ADDRESS), SERVER_PORT)
    client = (socket.inet_aton(CLIENT_ADDRESS), CLIENT_PORT)
    (src, sport), (dst, dport) = (server, client) if from_server else (client, server)
    tcp = dpkt.tcp.TCP(
        sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535
    )
    tcp.data = payload
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
    ip.len = len(ip.pack_hdr()) + len(bytes(tcp))
    ether = dpkt.ethernet.Ethernet(
        src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip
    )
    return bytes(ether)


# pktscan


def decode_ours(data: bytes) -> Fields:
    """Decode a server's bytes with pktscan's codec, up to the first error."""
    fields = Fields()
    assembler = HandshakeAssembler()
    state: dict[str, int] = {}
    encrypted = False
    for record in _records(data):
        if isinstance(record, SSLv2Record):
            fields.records.append(("sslv2", 2, len(record.body) + record.padding_len))
            if not encrypted:
                fields.messages.append(_sslv2_message(record))
            encrypted = True
            continue
        fields.records.append(
            (record.content_type, record.version, len(record.fragment))
        )
        if record.content_type == CONTENT_CHANGE_CIPHER_SPEC:
            encrypted = True
        if encrypted:
            continue
        try:
            fields.messages.extend(_record_messages(record, assembler, state))
        except PeerProtocolError as error:
            fields.messages.append({"error": str(error)})
            encrypted = True
    return fields


def _records(data: bytes) -> list[TlsRecord | SSLv2Record]:
    try:
        return list(parse_records(data).records)
    except PeerProtocolError as error:
        end = error.offset or 0
        if end <= 0 or end >= len(data):
            return []
        return _records(data[:end])


def _sslv2_message(record: SSLv2Record) -> Message:
    msg_type = record.body[0]
    if msg_type != SSLV2_SERVER_HELLO:
        return {"sslv2": msg_type}
    return _sslv2_hello_fields(
        decode_sslv2_server_hello(record.body, record.fragment_offset)
    )


def _sslv2_hello_fields(hello: SSLv2ServerHello) -> Message:
    return {
        "sslv2": SSLV2_SERVER_HELLO,
        "cipher_specs": hello.cipher_specs,
        "certificates": (digest(hello.certificate),) if hello.certificate else (),
    }


def _record_messages(
    record: TlsRecord, assembler: HandshakeAssembler, state: dict[str, int]
) -> Iterator[Message]:
    if record.content_type == CONTENT_ALERT:
        fragment = record.fragment
        for start in range(0, len(fragment) - 1, 2):
            yield {"alert": (fragment[start], fragment[start + 1])}
    elif record.content_type == CONTENT_HANDSHAKE:
        for message in assembler.feed(record.fragment, record.fragment_offset):
            yield _handshake_fields(message, state)


def _handshake_fields(message: HandshakeMessage, state: dict[str, int]) -> Message:
    if message.msg_type == HANDSHAKE_SERVER_HELLO:
        hello = decode_server_hello(message)
        if isinstance(hello, ServerHello):
            state["suite"], state["version"] = hello.cipher_suite, hello.version
        return _server_hello_fields(hello)
    if message.msg_type == HANDSHAKE_CERTIFICATE:
        tls13 = state.get("version") == TLS13
        certificate = decode_certificate(message, tls13=tls13)
        chain = tuple(digest(der) for der in certificate.certificates)
        return {"type": message.msg_type, "certificates": chain}
    if message.msg_type == HANDSHAKE_SERVER_KEY_EXCHANGE and "suite" in state:
        exchange = decode_server_key_exchange(message, state["suite"], state["version"])
        return {"type": message.msg_type, **_key_exchange_fields(exchange)}
    return {"type": message.msg_type}


def _server_hello_fields(hello: ServerHello | HelloRetryRequest) -> Message:
    out: Message = {"type": HANDSHAKE_SERVER_HELLO}
    if isinstance(hello, ServerHello):
        out["version"] = hello.server_version
    else:
        out["version"] = hello.legacy_version
    out["cipher_suite"] = hello.cipher_suite
    if not _is_short_draft_hello(hello):
        out["session_id_length"] = len(hello.session_id)
    out["extensions"] = tuple(e.extension_type for e in hello.extensions)
    return out


def _key_exchange_fields(exchange: ServerKeyExchange) -> Message:
    out: Message = {}
    if exchange.named_group is not None:
        out["named_group"] = exchange.named_group
    if exchange.dh_p is not None:
        out["p_len"] = len(exchange.dh_p)
    return out


def _is_short_draft_hello(hello: ServerHello | HelloRetryRequest) -> bool:
    """Return whether a TLS 1.3 draft ServerHello lacks session_id on the wire."""
    if not isinstance(hello, ServerHello):
        return False
    version = hello.server_version
    return FIRST_TLS13_DRAFT_VERSION <= version <= LAST_SHORT_HELLO_DRAFT_VERSION


# tshark


def as_list(value: Any) -> list[Any]:
    """tshark's JSON gives one value bare and repeated values as a list."""
    return value if isinstance(value, list) else [value]


def tshark_records(layer: Any) -> Iterator[dict[str, Any]]:
    """Yield every `tls.record` dict under a tshark layer, in document order."""
    if isinstance(layer, list):
        for item in layer:
            yield from tshark_records(item)
    elif isinstance(layer, dict):
        if "tls.record.version" in layer:
            yield layer
            return
        for value in layer.values():
            yield from tshark_records(value)


def decode_tshark(records: list[dict[str, Any]]) -> Fields:
    """Turn tshark's `tls.record` dicts for one server stream into `Fields`."""
    fields = Fields()
    encrypted = False
    for record in records:
        content = record.get("tls.record.content_type") or record.get(
            "tls.record.opaque_type"
        )
        version = int(record["tls.record.version"], 16)
        # tshark 4.0 gives an encrypted SSL 2.0 record no length field.
        length = int(record.get("tls.record.length", -1))
        if content is None:
            fields.records.append(("sslv2", version, length))
            if not encrypted:
                fields.messages.append(_tshark_sslv2(record))
            encrypted = True
            continue
        fields.records.append((int(content), version, length))
        if int(content) == CONTENT_CHANGE_CIPHER_SPEC:
            encrypted = True
        if not encrypted:
            fields.messages.extend(_tshark_messages(record))
    return fields


def _tshark_sslv2(record: dict[str, Any]) -> Message:
    msg_type = int(record["tls.handshake.type"])
    if msg_type != SSLV2_SERVER_HELLO:
        return {"sslv2": msg_type}
    specs = record.get("tls.handshake.ciphersuites", {}).get("tls.handshake.cipherspec")
    certificate = record.get("tls.handshake.certificate")
    return {
        "sslv2": msg_type,
        "cipher_specs": tuple(int(s, 16) for s in as_list(specs or [])),
        "certificates": (_hex_digest(certificate),) if certificate else (),
    }


def _hex_digest(value: str) -> str:
    return digest(bytes.fromhex(value.replace(":", "")))


def _tshark_messages(record: dict[str, Any]) -> Iterator[Message]:
    for alert in as_list(record.get("tls.alert_message", [])):
        if isinstance(alert, dict):
            level = int(alert["tls.alert_message.level"])
            yield {"alert": (level, int(alert["tls.alert_message.desc"]))}
    for message in as_list(record.get("tls.handshake", [])):
        if isinstance(message, dict) and "tls.handshake.type" in message:
            yield _tshark_handshake(message)


def _tshark_handshake(message: dict[str, Any]) -> Message:
    msg_type = int(message["tls.handshake.type"])
    out: Message = {"type": msg_type}
    if msg_type == HANDSHAKE_SERVER_HELLO:
        for name, key, base in SERVER_HELLO_FIELDS:
            if key in message:
                out[name] = int(message[key], base)
        out["extensions"] = tuple(
            int(extension["tls.handshake.extension.type"])
            for key, value in message.items()
            if key.startswith("Extension:")
            for extension in as_list(value)
        )
    elif msg_type == HANDSHAKE_CERTIFICATE:
        chain = message.get("tls.handshake.certificates", {})
        ders = as_list(chain.get("tls.handshake.certificate", []))
        out["certificates"] = tuple(_hex_digest(der) for der in ders)
    elif msg_type == HANDSHAKE_SERVER_KEY_EXCHANGE:
        out.update(_tshark_key_exchange(message))
    return out


def _tshark_key_exchange(message: dict[str, Any]) -> Message:
    out: Message = {}
    for key, value in message.items():
        if not isinstance(value, dict):
            continue
        if (
            key.startswith("EC Diffie-Hellman")
            and "tls.handshake.server_named_curve" in value
        ):
            out["named_group"] = int(value["tls.handshake.server_named_curve"], 16)
        if key.startswith("Diffie-Hellman") and "tls.handshake.p_len" in value:
            out["p_len"] = int(value["tls.handshake.p_len"])
    return out


# scapy


def decode_scapy(data: bytes, hello_format: str) -> Fields:
    """Decode a server's bytes with scapy's `TLS` or `SSLv2` layer."""
    fields = Fields()
    if hello_format == "sslv2" and data[:1] and data[0] & 0x80:
        _scapy_sslv2(SSLv2(data), fields)  # type: ignore[no-untyped-call]
        return fields
    layer: Any = TLS(data)  # type: ignore[no-untyped-call]
    encrypted = False
    while isinstance(layer, TLS):
        fields.records.append((layer.type, layer.version, layer.len))
        if layer.type == CONTENT_CHANGE_CIPHER_SPEC:
            encrypted = True
        if not encrypted:
            fields.messages.extend(_scapy_message(m) for m in layer.msg)
        layer = layer.payload
    if isinstance(layer, Raw):
        # Bytes that scapy left out of its record layers, counted.
        fields.records.append(("undecoded", 0, len(bytes(layer))))
    return fields


def _scapy_sslv2(layer: Any, fields: Fields) -> None:
    fields.records.append(("sslv2", 2, layer.len))
    for message in layer.msg:
        out: Message = {"sslv2": message.msgtype}
        if message.msgtype == SSLV2_SERVER_HELLO:
            out["cipher_specs"] = tuple(message.ciphers)
            cert = message.cert
            out["certificates"] = (digest(bytes(cert.der)),) if cert else ()
        fields.messages.append(out)


def _scapy_message(message: Any) -> Message:
    name = type(message).__name__
    if isinstance(message, Raw):
        return {"undecoded": len(bytes(message))}
    if name == "TLSAlert":
        return {"alert": (message.level, message.descr)}
    out: Message = {"type": message.msgtype}
    if name == "TLSServerHello":
        out["version"] = message.version
        out["cipher_suite"] = message.cipher
        out["session_id_length"] = message.sidlen
        out["extensions"] = tuple(e.type for e in message.ext or ())
    elif name == "TLSCertificate":
        out["certificates"] = tuple(digest(bytes(c.der)) for _, c in message.certs)
    elif name == "TLSServerKeyExchange":
        params = message.params
        if hasattr(params, "named_curve"):
            out["named_group"] = params.named_curve
        if hasattr(params, "dh_plen"):
            out["p_len"] = params.dh_plen
    return out


# HandshakeReader


def decode_events(events: Iterable[Event]) -> list[Message]:
    """Turn a `HandshakeReader`'s events into the messages `decode_ours` gives.

    Events that report no message (ChangeCipherSpec, non-TLS bytes, protocol
    errors) are left out.
    """
    messages: list[Message] = []
    for event in events:
        message = _event_message(event)
        if message is not None:
            messages.append(message)
    return messages


def _event_message(event: Event) -> Message | None:
    simple = {
        ev.CertificateStatusReceived: 22,
        ev.CertificateRequestReceived: 13,
        ev.ServerHelloDoneReceived: 14,
        ev.HelloRequestReceived: 0,
    }
    if type(event) in simple:
        return {"type": simple[type(event)]}
    if isinstance(event, ev.ServerHelloReceived | ev.HelloRetryRequestReceived):
        hello = (
            event.server_hello
            if isinstance(event, ev.ServerHelloReceived)
            else event.request
        )
        return _server_hello_fields(hello)
    if isinstance(event, ev.CertificateReceived):
        chain = tuple(digest(der) for der in event.chain)
        return {"type": HANDSHAKE_CERTIFICATE, "certificates": chain}
    if isinstance(event, ev.ServerKeyExchangeReceived):
        fields = _key_exchange_fields(event.key_exchange)
        return {"type": HANDSHAKE_SERVER_KEY_EXCHANGE, **fields}
    if isinstance(event, ev.HandshakeMessageReceived):
        return {"type": event.msg_type}
    if isinstance(event, ev.AlertReceived):
        return {"alert": (event.level, event.description)}
    if isinstance(event, ev.SSLv2ServerHelloReceived):
        return _sslv2_hello_fields(event.server_hello)
    if isinstance(event, ev.SSLv2ErrorReceived):
        return {"sslv2": SSLV2_ERROR}
    return None
