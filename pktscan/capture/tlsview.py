"""Name the TLS, SSL 2.0 and HTTP messages in reassembled TCP streams.

This view only locates and names messages, because the byte-level codec
lives in `pktscan.tls`. It gives the checker the protocol set of each
ClientHello and whether the server's flight carried a certificate, and it
gives the ladder diagram a label per record.

```
TLS record (RFC 5246 6.2.1)          SSL 2.0 record, 2-byte header
+------+---------+--------+          +-+---------------+------+-----
| type | version | length |          |1| length (15 b) | type | body
|  1   |    2    |   2    |          +-+---------------+------+-----
+------+---------+--------+          first byte has the high bit set
```

Handshake messages (type:1, length:3, body) are collected across handshake
records until a ChangeCipherSpec, since after it records are encrypted. A
certificate has arrived when a complete Certificate message, or an SSL 2.0
SERVER-HELLO with a non-empty certificate, is in the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from pktscan.tls.constants import (
    AlertDescription,
    ContentType,
    HandshakeType,
    SSLv2MessageType,
    name_of,
)
from pktscan.tls.sets import classify_client_hello

TLS_RECORD_HEADER_LEN = 5
SSL2_HEADER_LEN = 2
HANDSHAKE_HEADER_LEN = 4
SSL2_SERVER_HELLO_FIXED_LEN = 11
HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"OPTIONS ", b"DELETE ")


@dataclass(frozen=True, slots=True)
class Message:
    """One named message at a stream offset.

    Attributes:
        offset: stream offset of the record (or request line) that contains
            its first byte.
        name: the label, for example "ServerHello" or "Alert(handshake_failure)".
    """

    offset: int
    name: str


@dataclass(frozen=True, slots=True)
class StreamView:
    """The messages that one direction of a connection carried.

    Attributes:
        protocol: "tls", "sslv2", "http", "other" or "empty".
        messages: named messages in stream order.
        hello_set: for a client stream that opens with a ClientHello, the
            protocol set that produced it, or None when no set did.
        client_hello: the client stream opens with a ClientHello.
        certificate_offset: stream offset of the record that completed the
            certificate, or None.
        alert: name of the first cleartext alert, or None.
        certificate_end: stream offset just past the certificate's last
            byte, or None. The packet that brought the bytes before it last
            is the one that completed the certificate.
    """

    protocol: str
    messages: tuple[Message, ...]
    hello_set: int | None = None
    client_hello: bool = False
    certificate_offset: int | None = None
    alert: str | None = None
    certificate_end: int | None = None


def _camel(name: str) -> str:
    if name.startswith("unknown("):
        return name
    return "".join(part.capitalize() for part in name.split("_"))


def _is_tls_record(data: bytes, offset: int) -> bool:
    header = data[offset : offset + 3]
    return len(header) == 3 and 20 <= header[0] <= 26 and header[1] == 3


def _is_sslv2(data: bytes) -> bool:
    return len(data) >= 3 and data[0] & 0x80 != 0


def view_stream(data: bytes, *, from_client: bool) -> StreamView:
    """Name the messages of one direction's reassembled bytes."""
    if not data:
        return StreamView("empty", ())
    if from_client and data.startswith(HTTP_METHODS):
        request_line = data.split(b"\r\n", 1)[0][:60].decode("latin-1")
        return StreamView("http", (Message(0, f"HTTP {request_line}"),))
    if data.startswith(b"HTTP/"):
        status_line = data.split(b"\r\n", 1)[0][:60].decode("latin-1")
        return StreamView("http", (Message(0, status_line),))
    if _is_tls_record(data, 0):
        return _view_tls(data, from_client)
    if _is_sslv2(data):
        return _view_sslv2(data, from_client)
    return StreamView("other", (Message(0, f"data ({len(data)} bytes)"),))


def _view_sslv2(data: bytes, from_client: bool) -> StreamView:
    length = ((data[0] & 0x7F) << 8) | data[1]
    message_type = data[2]
    name = f"SSLv2 {name_of(SSLv2MessageType, message_type).replace('_', '-')}"
    body = data[SSL2_HEADER_LEN : SSL2_HEADER_LEN + length]
    complete = len(body) == length
    if from_client and message_type == SSLv2MessageType.CLIENT_HELLO:
        hello_set = classify_client_hello(data)
        label = _hello_label("SSLv2 format, ", hello_set)
        return StreamView("sslv2", (Message(0, label),), hello_set, True)
    certificate_offset = None
    if message_type == SSLv2MessageType.SERVER_HELLO and complete:
        # body: type, session_id_hit, certificate_type, version:2,
        # certificate_length:2, cipher_specs_length:2, connection_id_length:2
        fixed = body[:SSL2_SERVER_HELLO_FIXED_LEN]
        if len(fixed) == SSL2_SERVER_HELLO_FIXED_LEN and fixed[5:7] != b"\0\0":
            certificate_offset = 0
    if not complete:
        name += " (incomplete)"
    messages = [Message(0, name)]
    end = length + SSL2_HEADER_LEN
    if end < len(data):
        messages.append(Message(end, f"SSLv2 records ({len(data) - end} bytes)"))
    return StreamView(
        "sslv2",
        tuple(messages),
        certificate_offset=certificate_offset,
        certificate_end=end if certificate_offset is not None else None,
    )


def _hello_label(prefix: str, hello_set: int | None) -> str:
    set_text = f"set {hello_set}" if hello_set is not None else "no protocol set"
    return f"ClientHello ({prefix}{set_text})"


@dataclass(slots=True)
class _TlsWalk:
    from_client: bool
    messages: list[Message]
    handshake: bytearray
    handshake_offsets: list[int]
    encrypted: bool = False
    certificate_offset: int | None = None
    certificate_end: int | None = None
    alert: str | None = None
    client_hello: bool = False


def _view_tls(data: bytes, from_client: bool) -> StreamView:
    walk = _TlsWalk(from_client, [], bytearray(), [])
    offset = 0
    while offset + TLS_RECORD_HEADER_LEN <= len(data):
        if not _is_tls_record(data, offset):
            walk.messages.append(
                Message(offset, f"non-TLS bytes ({len(data) - offset})")
            )
            break
        content_type = data[offset]
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        body = data[offset + TLS_RECORD_HEADER_LEN : offset + 5 + length]
        if len(body) < length:
            walk.messages.append(
                Message(offset, _record_name(content_type) + " (incomplete)")
            )
            break
        _walk_record(walk, offset, content_type, body)
        offset += TLS_RECORD_HEADER_LEN + length
    if walk.handshake and not walk.encrypted:
        pending = _camel(name_of(HandshakeType, walk.handshake[0]))
        walk.messages.append(
            Message(walk.handshake_offsets[0], pending + " (incomplete)")
        )
    hello_set = classify_client_hello(data) if walk.client_hello else None
    if walk.client_hello:
        first = walk.messages[0]
        walk.messages[0] = Message(first.offset, _hello_label("", hello_set))
    return StreamView(
        "tls",
        tuple(walk.messages),
        hello_set,
        walk.client_hello,
        walk.certificate_offset,
        walk.alert,
        walk.certificate_end,
    )


def _record_name(content_type: int) -> str:
    return _camel(name_of(ContentType, content_type))


def _walk_record(walk: _TlsWalk, offset: int, content_type: int, body: bytes) -> None:
    if content_type == ContentType.change_cipher_spec:
        walk.messages.append(Message(offset, "ChangeCipherSpec"))
        walk.encrypted = True
    elif content_type == ContentType.alert:
        _walk_alert(walk, offset, body)
    elif content_type == ContentType.handshake and not walk.encrypted:
        _walk_handshake(walk, offset, body)
    elif content_type == ContentType.handshake:
        walk.messages.append(Message(offset, "EncryptedHandshakeMessage"))
    else:
        walk.messages.append(Message(offset, _record_name(content_type)))


def _walk_alert(walk: _TlsWalk, offset: int, body: bytes) -> None:
    if walk.encrypted or len(body) != 2:
        walk.messages.append(Message(offset, "EncryptedAlert"))
        return
    name = f"Alert({name_of(AlertDescription, body[1])})"
    walk.alert = walk.alert or name
    walk.messages.append(Message(offset, name))


def _walk_handshake(walk: _TlsWalk, offset: int, body: bytes) -> None:
    walk.handshake += body
    walk.handshake_offsets += [offset] * len(body)
    while len(walk.handshake) >= HANDSHAKE_HEADER_LEN:
        message_length = int.from_bytes(walk.handshake[1:4], "big")
        end = HANDSHAKE_HEADER_LEN + message_length
        if len(walk.handshake) < end:
            return
        message_type = walk.handshake[0]
        start_offset = walk.handshake_offsets[0]
        name = _camel(name_of(HandshakeType, message_type))
        walk.messages.append(Message(start_offset, name))
        if message_type == HandshakeType.client_hello and walk.from_client:
            walk.client_hello = walk.client_hello or len(walk.messages) == 1
        is_certificate = message_type == HandshakeType.certificate
        if is_certificate and not walk.from_client and walk.certificate_offset is None:
            walk.certificate_offset = offset
            # Bytes left in the buffer after this message all come from the
            # current record, because earlier records only held its start.
            unread = len(walk.handshake) - end
            walk.certificate_end = offset + TLS_RECORD_HEADER_LEN + len(body) - unread
        del walk.handshake[:end]
        del walk.handshake_offsets[:end]
