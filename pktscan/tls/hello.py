"""ClientHello builders: the TLS record format and the SSLv2-compatible one.

Every field of a hello is a dataclass field; every length on the wire is
computed from the content, never written by hand. The builders take the
32-byte random (or the SSL 2.0 challenge) as an argument because this
package has no random source: the driver passes `os.urandom(32)`.

TLS record format (RFC 5246 6.2.1 and 7.4.1.2)::

    record:     type(1)=22 | version(2) | length(2)
    handshake:  msg_type(1)=1 | length(3)
    body:       client_version(2) | random(32)
                | session_id_length(1) | session_id
                | cipher_suites_length(2) | cipher_suites (2 bytes each)
                | compression_methods_length(1) | compression_methods
                | [extensions_length(2) | extensions]

SSLv2-compatible format (RFC 6101 appendix E, RFC 5246 appendix E.2)::

    header:     0x80 | length_high, length_low  (2 bytes, high bit set)
    message:    msg_type(1)=1 | version(2)
                | cipher_spec_length(2) | session_id_length(2)
                | challenge_length(2)
                | cipher_specs (3 bytes each) | session_id | challenge
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from pktscan.tls.constants import (
    CertificateStatusType,
    CompressionMethod,
    ContentType,
    ExtensionType,
    HandshakeType,
    SSLv2MessageType,
)

RANDOM_LEN: Final = 32
MAX_SESSION_ID_LEN: Final = 32  # RFC 5246 7.4.1.2
SSLV2_SESSION_ID_LEN: Final = 16  # SSL 2.0 draft, SERVER-HELLO
MIN_CHALLENGE_LEN: Final = 16  # SSL 2.0 draft, CLIENT-HELLO
MAX_CHALLENGE_LEN: Final = 32
MAX_SSLV2_RECORD_LEN: Final = 0x7FFF  # 15-bit length of the 2-byte header
MAX_TLS_PLAINTEXT_LEN: Final = 2**14  # RFC 5246 6.2.1
MAX_HOST_NAME_LEN: Final = 255  # RFC 6066 3: HostName<1..2^16-1>, DNS caps it

# Handshake message lengths that a known F5 BIG-IP bug drops (RFC 7685 1).
F5_BAD_LENGTHS: Final = range(256, 512)
F5_PADDED_LEN: Final = 512


def _u8(value: int) -> bytes:
    return struct.pack("!B", value)


def _u16(value: int) -> bytes:
    return struct.pack("!H", value)


def _u24(value: int) -> bytes:
    return struct.pack("!I", value)[1:]


def _vector(length_bytes: int, body: bytes) -> bytes:
    """Prefix `body` with its length in `length_bytes` bytes, big-endian."""
    if len(body) >= 1 << (8 * length_bytes):
        raise ValueError(
            f"vector of {len(body)} bytes does not fit a {length_bytes}-byte length"
        )
    return len(body).to_bytes(length_bytes, "big") + body


def _check_u16s(name: str, values: Iterable[int]) -> None:
    for value in values:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"{name} value {value!r} is not a 16-bit code point")


@dataclass(frozen=True, slots=True)
class Extension:
    """One hello extension: type and the opaque extension_data."""

    extension_type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_u16s("extension_type", [self.extension_type])

    def to_bytes(self) -> bytes:
        """Encode as extension_type(2) | length(2) | extension_data."""
        return _u16(self.extension_type) + _vector(2, self.data)


def server_name(host_name: str) -> Extension:
    """Build server_name (RFC 6066 3) with one host_name entry.

    A trailing dot is dropped and a non-ASCII name is IDNA-encoded. IP
    literals are rejected because RFC 6066 3 does not permit them in
    HostName.
    """
    name = host_name.rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise ValueError(f"server name {host_name!r} is an IP address; SNI takes names")
    try:
        encoded = name.encode("idna")
    except UnicodeError as error:
        raise ValueError(f"server name {host_name!r} is invalid: {error}") from None
    if not 0 < len(encoded) <= MAX_HOST_NAME_LEN:
        raise ValueError(f"server name {host_name!r} must be 1-255 bytes")
    entry = _u8(0) + _vector(2, encoded)  # name_type 0 = host_name
    return Extension(ExtensionType.server_name, _vector(2, entry))


def supported_groups(groups: Iterable[int]) -> Extension:
    """Build supported_groups (RFC 8422 5.1.1, RFC 7919)."""
    values = list(groups)
    _check_u16s("named group", values)
    body = b"".join(_u16(group) for group in values)
    return Extension(ExtensionType.supported_groups, _vector(2, body))


def ec_point_formats(formats: Iterable[int]) -> Extension:
    """Build ec_point_formats (RFC 8422 5.1.2)."""
    body = bytes(formats)
    return Extension(ExtensionType.ec_point_formats, _vector(1, body))


def signature_algorithms(schemes: Iterable[int]) -> Extension:
    """Build signature_algorithms (RFC 5246 7.4.1.4.1, RFC 8446 4.2.3)."""
    values = list(schemes)
    _check_u16s("signature scheme", values)
    body = b"".join(_u16(scheme) for scheme in values)
    return Extension(ExtensionType.signature_algorithms, _vector(2, body))


def renegotiation_info(renegotiated_connection: bytes = b"") -> Extension:
    """Build renegotiation_info (RFC 5746 3.2); empty on an initial hello."""
    return Extension(
        ExtensionType.renegotiation_info, _vector(1, renegotiated_connection)
    )


def extended_master_secret() -> Extension:
    """Build extended_master_secret (RFC 7627 5.1), which has no data."""
    return Extension(ExtensionType.extended_master_secret)


def session_ticket(ticket: bytes = b"") -> Extension:
    """Build SessionTicket (RFC 5077 3.2); empty requests a new ticket."""
    return Extension(ExtensionType.session_ticket, ticket)


def status_request() -> Extension:
    """Build status_request for OCSP (RFC 6066 8), no responder ids or exts."""
    body = _u8(CertificateStatusType.ocsp) + _vector(2, b"") + _vector(2, b"")
    return Extension(ExtensionType.status_request, body)


def padding(length: int) -> Extension:
    """Build padding (RFC 7685) with `length` zero bytes of data."""
    if length < 0:
        raise ValueError(f"padding length {length} is negative")
    return Extension(ExtensionType.padding, bytes(length))


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A ClientHello in the TLS record format, fields in wire order.

    `extensions` None leaves the extensions block out entirely, as SSL 3.0
    hellos do; an empty tuple writes an empty block (two zero bytes).
    """

    record_version: int
    client_version: int
    random: bytes
    cipher_suites: tuple[int, ...]
    session_id: bytes = b""
    compression_methods: tuple[int, ...] = (CompressionMethod.null,)
    extensions: tuple[Extension, ...] | None = None

    def __post_init__(self) -> None:
        _check_u16s("version", [self.record_version, self.client_version])
        _check_u16s("cipher suite", self.cipher_suites)
        if len(self.random) != RANDOM_LEN:
            raise ValueError(f"random must be 32 bytes, got {len(self.random)}")
        if len(self.session_id) > MAX_SESSION_ID_LEN:
            raise ValueError(f"session id of {len(self.session_id)} bytes exceeds 32")
        if not self.cipher_suites:
            raise ValueError("a ClientHello needs at least one cipher suite")
        if not self.compression_methods:
            raise ValueError("a ClientHello needs at least one compression method")

    def body_bytes(self) -> bytes:
        """Encode the ClientHello body, without handshake or record header."""
        suites = b"".join(_u16(suite) for suite in self.cipher_suites)
        parts = [
            _u16(self.client_version),
            self.random,
            _vector(1, self.session_id),
            _vector(2, suites),
            _vector(1, bytes(self.compression_methods)),
        ]
        if self.extensions is not None:
            encoded = b"".join(ext.to_bytes() for ext in self.extensions)
            parts.append(_vector(2, encoded))
        return b"".join(parts)

    def handshake_bytes(self) -> bytes:
        """Encode the handshake message: msg_type(1) | length(3) | body."""
        body = self.body_bytes()
        return _u8(HandshakeType.client_hello) + _u24(len(body)) + body

    def to_bytes(self) -> bytes:
        """Encode the complete record, ready to write to the socket."""
        message = self.handshake_bytes()
        if len(message) > MAX_TLS_PLAINTEXT_LEN:
            raise ValueError(f"ClientHello of {len(message)} bytes exceeds one record")
        header = _u8(ContentType.handshake) + _u16(self.record_version)
        return header + _vector(2, message)


def pad_for_f5(hello: ClientHello) -> ClientHello:
    """Return `hello` with a padding extension if its length needs one.

    Some F5 BIG-IP load balancers drop a ClientHello whose handshake message
    (the record body) is 256-511 bytes long (RFC 7685 section 1). Such a
    hello gets a padding extension that brings it to at least 512 bytes. The
    padding carries at least one byte, because some servers reject an empty
    extension in the last position. Hellos without extensions are returned
    unchanged, since adding an extensions block could break SSL 3.0 servers.
    """
    if hello.extensions is None:
        return hello
    length = len(hello.handshake_bytes())
    if length not in F5_BAD_LENGTHS:
        return hello
    extension_header_len = 4
    data_len = max(F5_PADDED_LEN - length - extension_header_len, 1)
    return replace(hello, extensions=(*hello.extensions, padding(data_len)))


@dataclass(frozen=True, slots=True)
class SSLv2ClientHello:
    """An SSL 2.0 CLIENT-HELLO, the SSLv2-compatible hello format.

    `cipher_specs` are 3-byte values: SSL 2.0 cipher kinds as they are, and
    TLS cipher suites as 0x00XXXX (RFC 5246 E.2).
    """

    version: int
    cipher_specs: tuple[int, ...]
    challenge: bytes
    session_id: bytes = b""

    def __post_init__(self) -> None:
        _check_u16s("version", [self.version])
        for spec in self.cipher_specs:
            if not 0 <= spec <= 0xFFFFFF:
                raise ValueError(f"cipher spec {spec!r} is not a 3-byte value")
        if not MIN_CHALLENGE_LEN <= len(self.challenge) <= MAX_CHALLENGE_LEN:
            raise ValueError(
                f"challenge must be 16-32 bytes, got {len(self.challenge)}"
            )
        if self.session_id and len(self.session_id) != SSLV2_SESSION_ID_LEN:
            raise ValueError("an SSL 2.0 session id is empty or 16 bytes long")
        if not self.cipher_specs:
            raise ValueError("a CLIENT-HELLO needs at least one cipher spec")

    def message_bytes(self) -> bytes:
        """Encode the CLIENT-HELLO message, without the record header."""
        specs = b"".join(spec.to_bytes(3, "big") for spec in self.cipher_specs)
        return b"".join(
            [
                _u8(SSLv2MessageType.CLIENT_HELLO),
                _u16(self.version),
                _u16(len(specs)),
                _u16(len(self.session_id)),
                _u16(len(self.challenge)),
                specs,
                self.session_id,
                self.challenge,
            ]
        )

    def to_bytes(self) -> bytes:
        """Encode the 2-byte-header record, ready to write to the socket."""
        message = self.message_bytes()
        if len(message) > MAX_SSLV2_RECORD_LEN:
            raise ValueError(f"CLIENT-HELLO of {len(message)} bytes exceeds a record")
        return _u16(0x8000 | len(message)) + message


def check_random(random: bytes) -> bytes:
    """Return `random` as bytes, raising TypeError or ValueError unless 32 bytes."""
    if not isinstance(random, bytes | bytearray):
        raise TypeError(f"random must be bytes, got {type(random).__name__}")
    if len(random) != RANDOM_LEN:
        raise ValueError(f"random must be 32 bytes, got {len(random)}")
    return bytes(random)


__all__ = [
    "ClientHello",
    "Extension",
    "SSLv2ClientHello",
    "check_random",
    "ec_point_formats",
    "extended_master_secret",
    "pad_for_f5",
    "padding",
    "renegotiation_info",
    "server_name",
    "session_ticket",
    "signature_algorithms",
    "status_request",
    "supported_groups",
]
