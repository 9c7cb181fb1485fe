"""Hand-built ClientHellos and response parsers for the lab's server tests.

Independent of pktscan.tls on purpose: the lab is checked with its own
bytes, so a bug in the scanner's codec cannot hide a bug in the lab.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

SSL2 = 0x0002
SSL3 = 0x0300
TLS10 = 0x0301
TLS12 = 0x0303

HANDSHAKE = 22
ALERT = 21
CLIENT_HELLO = 1
SERVER_HELLO = 2
CERTIFICATE = 11
SERVER_HELLO_DONE = 14
SSL2_CLIENT_HELLO = 1
SSL2_SERVER_HELLO = 4

# TLS_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_256_CBC_SHA,
# TLS_RSA_WITH_3DES_EDE_CBC_SHA (RFC 5246 appendix A.5): RSA key exchange
# suites every lab TLS and SSL 3.0 server accepts.
RSA_SUITES = (0x002F, 0x0035, 0x000A)
# SSL_CK_RC4_128_WITH_MD5 and SSL_CK_DES_192_EDE3_CBC_WITH_MD5 (SSL 2.0
# draft, appendix A), then the TLS suites above as 3-byte specs 0x00XXXX
# (RFC 5246 appendix E.2).
SSL2_CIPHER_SPECS = (0x010080, 0x0700C0, *RSA_SUITES)


def _u16(value: int) -> bytes:
    return struct.pack("!H", value)


def _u24(value: int) -> bytes:
    return struct.pack("!I", value)[1:]


def sslv2_client_hello(version: int = TLS10) -> bytes:
    """Build an SSLv2-format CLIENT-HELLO offering `version` and below."""
    cipher_specs = b"".join(_u24(spec) for spec in SSL2_CIPHER_SPECS)
    challenge = os.urandom(16)
    body = (
        bytes([SSL2_CLIENT_HELLO])
        + _u16(version)
        + _u16(len(cipher_specs))  # cipher_spec_length
        + _u16(0)  # session_id_length
        + _u16(len(challenge))  # challenge_length
        + cipher_specs
        + challenge
    )
    # 2-byte record header: high bit set, 15-bit length, no padding.
    return _u16(0x8000 | len(body)) + body


def server_name_extension(host_name: str) -> bytes:
    """Build a server_name extension (RFC 6066 section 3) for one name."""
    name = host_name.encode("ascii")
    entry = b"\x00" + _u16(len(name)) + name  # name_type host_name
    server_name_list = _u16(len(entry)) + entry
    return _u16(0) + _u16(len(server_name_list)) + server_name_list


def tls_client_hello(
    client_version: int,
    *,
    extensions: bytes | None = None,
    record_version: int = TLS10,
    suites: tuple[int, ...] = RSA_SUITES,
) -> bytes:
    """Build a ClientHello record; extensions=None leaves out the block."""
    cipher_suites = b"".join(_u16(suite) for suite in suites)
    body = (
        _u16(client_version)
        + os.urandom(32)  # random
        + b"\x00"  # session_id, empty
        + _u16(len(cipher_suites))
        + cipher_suites
        + b"\x01\x00"  # compression_methods: null only
    )
    if extensions is not None:
        body += _u16(len(extensions)) + extensions
    handshake = bytes([CLIENT_HELLO]) + _u24(len(body)) + body
    return bytes([HANDSHAKE]) + _u16(record_version) + _u16(len(handshake)) + handshake


@dataclass(frozen=True)
class ServerFlight:
    """What a server sent back to one hello, as far as the lab tests need.

    Attributes:
        format: "sslv2", "tls", "alert" or "other".
        version: server version from the SERVER-HELLO or ServerHello.
        certificates: DER certificates in the order sent.
        records: number of records the Certificate message spanned.
        alert: (level, description) when the server sent an alert.
    """

    format: str
    version: int | None = None
    certificates: tuple[bytes, ...] = ()
    records: int = 0
    alert: tuple[int, int] | None = None


def sslv2_server_hello_length(data: bytes) -> int | None:
    """Total length of the SSLv2 record at the start of `data`, if known."""
    if len(data) < 2:
        return None
    return 2 + (((data[0] & 0x7F) << 8) | data[1])


def parse_sslv2_server_hello(data: bytes) -> ServerFlight:
    """Parse an SSLv2 SERVER-HELLO record (2-byte header) and its certificate."""
    body = data[2:]
    # msg_type, session_id_hit, certificate_type, server_version,
    # certificate_length, cipher_specs_length, connection_id_length
    msg_type, _, _, version, cert_length, _, _ = struct.unpack("!BBBHHHH", body[:11])
    if msg_type != SSL2_SERVER_HELLO:
        return ServerFlight("other")
    certificate = body[11 : 11 + cert_length]
    return ServerFlight("sslv2", version, (certificate,), 1)


def _tls_records(data: bytes) -> list[tuple[int, bytes]]:
    records = []
    offset = 0
    while offset + 5 <= len(data):
        content_type = data[offset]
        (length,) = struct.unpack("!H", data[offset + 3 : offset + 5])
        if offset + 5 + length > len(data):
            break
        records.append((content_type, data[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return records


def parse_tls_flight(data: bytes) -> tuple[ServerFlight, bool]:
    """Parse TLS records up to the Certificate message.

    Returns the flight and whether it is complete: the certificates are in,
    or the server sent an alert.
    """
    stream = b""
    # Stream offsets where each handshake record's bytes start.
    record_starts: list[int] = []
    version = None
    for content_type, body in _tls_records(data):
        if content_type == ALERT and len(body) >= 2:
            return ServerFlight("alert", alert=(body[0], body[1])), True
        if content_type != HANDSHAKE:
            return ServerFlight("other"), True
        record_starts.append(len(stream))
        stream += body
        offset = 0
        while offset + 4 <= len(stream):
            msg_type = stream[offset]
            length = int.from_bytes(stream[offset + 1 : offset + 4], "big")
            end = offset + 4 + length
            if end > len(stream):
                break
            message = stream[offset + 4 : end]
            if msg_type == SERVER_HELLO:
                (version,) = struct.unpack("!H", message[:2])
            elif msg_type == CERTIFICATE:
                spanned = sum(
                    1
                    for index, start in enumerate(record_starts)
                    if start < end
                    and (
                        index + 1 == len(record_starts)
                        or record_starts[index + 1] > offset
                    )
                )
                flight = ServerFlight("tls", version, _certificates(message), spanned)
                return flight, True
            offset = end
    return ServerFlight("tls", version), False


def _certificates(message: bytes) -> tuple[bytes, ...]:
    total = int.from_bytes(message[:3], "big")
    certificates = []
    offset = 3
    while offset < 3 + total:
        length = int.from_bytes(message[offset : offset + 3], "big")
        certificates.append(message[offset + 3 : offset + 3 + length])
        offset += 3 + length
    return tuple(certificates)


def parse_flight(data: bytes) -> tuple[ServerFlight, bool]:
    """Parse whatever the server sent; returns (flight, complete)."""
    if not data:
        return ServerFlight("other"), False
    if data[0] & 0x80:
        length = sslv2_server_hello_length(data)
        if length is None or len(data) < length:
            return ServerFlight("sslv2"), False
        return parse_sslv2_server_hello(data[:length]), True
    return parse_tls_flight(data)
