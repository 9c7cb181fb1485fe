"""Handshake message reassembly and the decoders of the server's flight.

Handshake messages (RFC 5246 7.4, RFC 8446 4) are a byte stream of their
own, carried in handshake records: one record may hold several messages,
and one message may span many records. `HandshakeAssembler` takes record
fragments and returns whole messages, each with the stream offset of every
piece of its body, so that decoders can point errors at exact bytes.

The decoders here cover ServerHello (and HelloRetryRequest), Certificate,
CertificateStatus, CertificateRequest, ServerHelloDone and HelloRequest;
`keyexchange.py` decodes ServerKeyExchange and `sslv2.py` the SSL 2.0
messages. Every decoder raises `PeerProtocolError` on bytes that break the
message's structure, and keeps values it does not know as plain ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pktscan.errors import PeerProtocolError
from pktscan.tls.constants import ProtocolVersion
from pktscan.tls.wire import ByteReader

HANDSHAKE_HEADER_LEN: Final = 4  # msg_type(1) | length(3)
# Our cap on one handshake message. The 24-bit length field allows 16 MiB;
# OpenSSL 3.0 caps a peer's certificate list at 100 KiB by default
# (SSL_CTX_set_max_cert_list), and this leaves room above that.
MAX_HANDSHAKE_MESSAGE_LEN: Final = 2**18
MAX_CERTIFICATES: Final = 64  # our cap on certificates in one chain
MAX_SESSION_ID_LEN: Final = 32  # RFC 5246 7.4.1.2
# TLS 1.3 drafts sent 0x7f00 + draft number as the version. Before draft 22 the
# ServerHello had no session_id or compression_method, and Wireshark's TLS
# dissector reads it so too. Draft 22 moved to the RFC 8446 layout.
FIRST_TLS13_DRAFT_VERSION: Final = 0x7F00
LAST_SHORT_HELLO_DRAFT_VERSION: Final = 0x7F15
LAST_TLS13_DRAFT_VERSION: Final = 0x7F1C  # draft 28, the last before RFC 8446

# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HELLO_RETRY_REQUEST_RANDOM: Final = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """One reassembled handshake message.

    `segments` pairs a position in `body` with the stream offset where the
    body's bytes from that position on were received.
    """

    offset: int
    msg_type: int
    body: bytes
    segments: tuple[tuple[int, int], ...]

    def reader(self) -> ByteReader:
        """Return a reader over the body that reports stream offsets."""
        return ByteReader(self.body, self.segments)


class HandshakeAssembler:
    """Reassembles handshake messages from handshake record fragments."""

    def __init__(self, max_message_len: int = MAX_HANDSHAKE_MESSAGE_LEN) -> None:
        self.max_message_len = max_message_len
        self._buffer = bytearray()
        self._segments: list[tuple[int, int]] = []
        self._pending_error: PeerProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Number of bytes of a message not yet complete."""
        return len(self._buffer)

    def feed(self, fragment: bytes, fragment_offset: int) -> list[HandshakeMessage]:
        """Add one record's fragment and return the messages it completes.

        Raises:
            PeerProtocolError: a message length exceeds `max_message_len`.
                When messages were completed before it in the same call,
                they are returned and the error is raised by the next call.
        """
        if self._pending_error is not None:
            raise self._pending_error
        if fragment:
            self._segments.append((len(self._buffer), fragment_offset))
            self._buffer += fragment
        messages: list[HandshakeMessage] = []
        while True:
            try:
                message = self._take_message()
            except PeerProtocolError as exc:
                if not messages:
                    raise
                # Messages completed before the bad one are returned first,
                # so that a chain already in hand is kept. The next call
                # raises the error.
                self._pending_error = exc
                return messages
            if message is None:
                return messages
            messages.append(message)

    def _stream_offset(self, position: int) -> int:
        reader = ByteReader(b"", self._segments or [(0, 0)])
        return reader.stream_offset(position)

    def _take_message(self) -> HandshakeMessage | None:
        if len(self._buffer) < HANDSHAKE_HEADER_LEN:
            return None
        msg_type = self._buffer[0]
        length = int.from_bytes(self._buffer[1:4], "big")
        if length > self.max_message_len:
            offset = self._stream_offset(1)
            raise PeerProtocolError(
                f"handshake message length {length} at offset {offset} exceeds "
                f"{self.max_message_len}",
                offset=offset,
                field="handshake length",
                value=length,
                limit=self.max_message_len,
            )
        end = HANDSHAKE_HEADER_LEN + length
        if len(self._buffer) < end:
            return None

        body = bytes(self._buffer[HANDSHAKE_HEADER_LEN:end])
        message = HandshakeMessage(
            offset=self._stream_offset(0),
            msg_type=msg_type,
            body=body,
            segments=self._slice_segments(HANDSHAKE_HEADER_LEN, end),
        )
        self._segments = list(self._slice_segments(end, len(self._buffer)))
        del self._buffer[:end]
        return message

    def _slice_segments(self, start: int, end: int) -> tuple[tuple[int, int], ...]:
        """Map buffer[start:end] to segments that start at position 0."""
        sliced = [(0, self._stream_offset(start))]
        for position, offset in self._segments:
            if start < position < end:
                sliced.append((position - start, offset))
        return tuple(sliced)


@dataclass(frozen=True, slots=True)
class HelloExtension:
    """One extension as received: type, data and stream offset of the type."""

    offset: int
    extension_type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ServerHello:
    """A ServerHello (RFC 5246 7.4.1.3, RFC 8446 4.1.3), fields in wire order.

    The extension fields are None (or False) when the extension is absent.
    A TLS 1.3 draft 21 or earlier sends no session_id or compression_method,
    so they are empty and 0 (null) here.
    """

    offset: int
    server_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[HelloExtension, ...]
    renegotiation_info: bytes | None = None
    extended_master_secret: bool = False
    session_ticket: bool = False
    status_request: bool = False
    alpn_protocol: bytes | None = None
    ec_point_formats: tuple[int, ...] | None = None
    selected_version: int | None = None
    key_share_group: int | None = None
    key_share: bytes | None = None

    @property
    def version(self) -> int:
        """Negotiated version: supported_versions if sent, else server_version."""
        if self.selected_version is not None:
            return self.selected_version
        return self.server_version

    @property
    def is_tls13(self) -> bool:
        """Whether the negotiated version is TLS 1.3 or one of its drafts."""
        version = self.version
        if FIRST_TLS13_DRAFT_VERSION <= version <= LAST_TLS13_DRAFT_VERSION:
            return True
        return version == ProtocolVersion.TLS_1_3


@dataclass(frozen=True, slots=True)
class HelloRetryRequest:
    """A TLS 1.3 HelloRetryRequest (RFC 8446 4.1.4)."""

    offset: int
    legacy_version: int
    session_id: bytes
    cipher_suite: int
    extensions: tuple[HelloExtension, ...]
    selected_version: int | None = None
    selected_group: int | None = None
    cookie: bytes | None = None


# Extensions a HelloRetryRequest may carry (RFC 8446 4.2): supported_versions,
# key_share and cookie. Others in an HRR are kept raw in `extensions` only.
HELLO_RETRY_EXTENSIONS: Final = frozenset({0x002B, 0x0033, 0x002C})


def _ext_server_hello_fields(
    ext_type: int, data: ByteReader, hello_retry: bool
) -> dict[str, object]:
    """Decode the data of one known extension into dataclass field values."""
    if hello_retry and ext_type not in HELLO_RETRY_EXTENSIONS:
        return {}
    empty = {
        0x0017: "extended_master_secret",
        0x0023: "session_ticket",
        0x0005: "status_request",
    }
    if ext_type in empty:
        data.expect_end(empty[ext_type])
        return {empty[ext_type]: True}
    if ext_type == 0xFF01:  # renegotiation_info
        value = data.vector(1, "renegotiated_connection")
        data.expect_end("renegotiation_info")
        return {"renegotiation_info": value}
    if ext_type == 0x000B:  # ec_point_formats
        formats = tuple(data.vector(1, "ec_point_format_list", minimum=1))
        data.expect_end("ec_point_formats")
        return {"ec_point_formats": formats}
    if ext_type == 0x0010:  # application_layer_protocol_negotiation
        names = data.sub(
            data.uint(2, "protocol_name_list length"), "protocol_name_list"
        )
        protocol = names.vector(1, "ProtocolName", minimum=1)
        names.expect_end("protocol_name_list (exactly one name)")
        data.expect_end("application_layer_protocol_negotiation")
        return {"alpn_protocol": protocol}
    if ext_type == 0x002B:  # supported_versions
        version = data.uint(2, "selected_version")
        data.expect_end("supported_versions")
        return {"selected_version": version}
    if ext_type == 0x0033:  # key_share
        group = data.uint(2, "key_share group")
        if hello_retry:
            data.expect_end("key_share")
            return {"selected_group": group}
        key = data.vector(2, "key_exchange", minimum=1)
        data.expect_end("key_share")
        return {"key_share_group": group, "key_share": key}
    if ext_type == 0x002C and hello_retry:  # cookie
        cookie = data.vector(2, "cookie", minimum=1)
        data.expect_end("cookie")
        return {"cookie": cookie}
    return {}


def _decode_extensions(
    reader: ByteReader, hello_retry: bool
) -> tuple[tuple[HelloExtension, ...], dict[str, object]]:
    if reader.remaining == 0:
        return (), {}  # SSL 3.0 and early TLS servers may omit the block
    block = reader.sub(reader.uint(2, "extensions length"), "extensions")
    reader.expect_end("extensions")
    extensions: list[HelloExtension] = []
    fields: dict[str, object] = {}
    seen: set[int] = set()
    while block.remaining:
        offset = block.stream_offset()
        ext_type = block.uint(2, "extension_type")
        data = block.sub(block.uint(2, "extension_data length"), "extension_data")
        extensions.append(HelloExtension(offset, ext_type, data.data))
        if ext_type in seen:
            continue  # RFC 5246 7.4.1.4 forbids repeats; the first one counts
        seen.add(ext_type)
        fields.update(_ext_server_hello_fields(ext_type, data, hello_retry))
    return tuple(extensions), fields


def decode_server_hello(message: HandshakeMessage) -> ServerHello | HelloRetryRequest:
    """Decode a ServerHello body, or a HelloRetryRequest if its random is the HRR value.

    Raises:
        PeerProtocolError: a length runs past the body, or bytes remain.
    """
    reader = message.reader()
    server_version = reader.uint(2, "server_version")
    random = reader.read(32, "random")
    if FIRST_TLS13_DRAFT_VERSION <= server_version <= LAST_SHORT_HELLO_DRAFT_VERSION:
        return _decode_draft_server_hello(message, reader, server_version, random)
    session_id = reader.vector(1, "session_id", maximum=MAX_SESSION_ID_LEN)
    cipher_suite = reader.uint(2, "cipher_suite")
    compression_method = reader.uint(1, "compression_method")
    hello_retry = random == HELLO_RETRY_REQUEST_RANDOM
    extensions, fields = _decode_extensions(reader, hello_retry)

    if hello_retry:
        return HelloRetryRequest(
            message.offset,
            server_version,
            session_id,
            cipher_suite,
            extensions,
            **fields,  # type: ignore[arg-type]
        )
    return ServerHello(
        message.offset,
        server_version,
        random,
        session_id,
        cipher_suite,
        compression_method,
        extensions,
        **fields,  # type: ignore[arg-type]
    )


def _decode_draft_server_hello(
    message: HandshakeMessage, reader: ByteReader, server_version: int, random: bytes
) -> ServerHello:
    """Decode the rest of a ServerHello from a TLS 1.3 draft up to 21."""
    cipher_suite = reader.uint(2, "cipher_suite")
    extensions, fields = _decode_extensions(reader, hello_retry=False)
    return ServerHello(
        message.offset,
        server_version,
        random,
        b"",
        cipher_suite,
        0,
        extensions,
        **fields,  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class Certificate:
    """A Certificate message: DER certificates, leaf first, as sent.

    `certificate_offsets` are the stream offsets of each certificate's
    first DER byte. `request_context` is set for TLS 1.3 only.
    """

    offset: int
    certificates: tuple[bytes, ...]
    certificate_offsets: tuple[int, ...]
    request_context: bytes | None = None


def decode_certificate(
    message: HandshakeMessage, *, tls13: bool = False
) -> Certificate:
    """Decode a Certificate body (RFC 5246 7.4.2, or RFC 8446 4.4.2 if tls13).

    Raises:
        PeerProtocolError: a length runs past the body, a certificate is
            empty, or the chain has more than MAX_CERTIFICATES entries.
    """
    reader = message.reader()
    context = reader.vector(1, "certificate_request_context") if tls13 else None
    chain = reader.sub(reader.uint(3, "certificate_list length"), "certificate_list")
    reader.expect_end("certificate_list")

    certificates: list[bytes] = []
    offsets: list[int] = []
    while chain.remaining:
        if len(certificates) == MAX_CERTIFICATES:
            raise PeerProtocolError(
                f"certificate_list at offset {message.offset} has more than "
                f"{MAX_CERTIFICATES} certificates",
                offset=chain.stream_offset(),
                field="certificate_list",
                value=len(certificates) + 1,
                limit=MAX_CERTIFICATES,
            )
        der = chain.sub(chain.uint(3, "ASN.1Cert length"), "ASN.1Cert")
        if not der.data:
            raise PeerProtocolError(
                f"empty ASN.1Cert at offset {der.stream_offset() - 3}",
                offset=der.stream_offset() - 3,
                field="ASN.1Cert length",
                value=0,
                limit=">=1",
            )
        offsets.append(der.stream_offset())
        certificates.append(der.data)
        if tls13:
            chain.vector(2, "CertificateEntry extensions")
    return Certificate(message.offset, tuple(certificates), tuple(offsets), context)


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """A CertificateStatus message (RFC 6066 8): usually an OCSP response."""

    offset: int
    status_type: int
    response: bytes


def decode_certificate_status(message: HandshakeMessage) -> CertificateStatus:
    """Decode a CertificateStatus body; a type other than ocsp is kept raw."""
    reader = message.reader()
    status_type = reader.uint(1, "status_type")
    if status_type != 1:
        status = reader.read(reader.remaining, "status")
        return CertificateStatus(message.offset, status_type, status)
    response = reader.vector(3, "OCSPResponse", minimum=1)
    reader.expect_end("CertificateStatus")
    return CertificateStatus(message.offset, status_type, response)


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """A TLS 1.0-1.2 CertificateRequest (RFC 5246 7.4.4).

    `signature_algorithms` is None before TLS 1.2, which lacks the field.
    """

    offset: int
    certificate_types: tuple[int, ...]
    signature_algorithms: tuple[int, ...] | None
    certificate_authorities: tuple[bytes, ...]


def decode_certificate_request(
    message: HandshakeMessage, version: int
) -> CertificateRequest:
    """Decode a CertificateRequest body of a TLS 1.0-1.2 or SSL 3.0 server."""
    reader = message.reader()
    types = tuple(reader.vector(1, "certificate_types", minimum=1))
    schemes: tuple[int, ...] | None = None
    if version >= ProtocolVersion.TLS_1_2:
        raw = reader.vector(2, "supported_signature_algorithms", minimum=2)
        if len(raw) % 2:
            raise PeerProtocolError(
                f"supported_signature_algorithms length {len(raw)} at offset "
                f"{message.offset} is odd",
                offset=message.offset,
                field="supported_signature_algorithms length",
                value=len(raw),
                limit="even",
            )
        schemes = tuple(
            int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)
        )
    names = reader.sub(
        reader.uint(2, "certificate_authorities length"), "certificate_authorities"
    )
    reader.expect_end("CertificateRequest")
    authorities = []
    while names.remaining:
        authorities.append(names.vector(2, "DistinguishedName", minimum=1))
    return CertificateRequest(message.offset, types, schemes, tuple(authorities))


def expect_empty(message: HandshakeMessage, name: str) -> None:
    """Raise PeerProtocolError unless the body is empty (ServerHelloDone...)."""
    message.reader().expect_end(name)
