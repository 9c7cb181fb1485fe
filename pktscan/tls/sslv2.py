"""Decoders of the SSL 2.0 messages a server sends first: SERVER-HELLO, ERROR.

Each SSL 2.0 record carries one message (SSL 2.0 draft, draft-hickman-
netscape-ssl-00), so these decoders take a record body::

    SERVER-HELLO: msg_type(1)=4 | session_id_hit(1) | certificate_type(1)
                  | server_version(2) | certificate_length(2)
                  | cipher_specs_length(2) | connection_id_length(2)
                  | certificate | cipher_specs (3 bytes each) | connection_id
    ERROR:        msg_type(1)=0 | error_code(2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pktscan.errors import PeerProtocolError
from pktscan.tls.constants import SSLv2MessageType
from pktscan.tls.wire import ByteReader

SSLV2_CIPHER_SPEC_LEN: Final = 3
MIN_CONNECTION_ID_LEN: Final = 16  # SSL 2.0 draft: CONNECTION-ID 16..32 bytes
MAX_CONNECTION_ID_LEN: Final = 32


@dataclass(frozen=True, slots=True)
class SSLv2ServerHello:
    """An SSL 2.0 SERVER-HELLO; `certificate` is the server's DER certificate.

    `certificate_offset` is the stream offset of the certificate's first
    byte. A server that resumes a session (session_id_hit 1) sends no
    certificate, and `certificate` is empty.
    """

    offset: int
    session_id_hit: int
    certificate_type: int
    server_version: int
    certificate: bytes
    certificate_offset: int
    cipher_specs: tuple[int, ...]
    connection_id: bytes


@dataclass(frozen=True, slots=True)
class SSLv2Error:
    """An SSL 2.0 ERROR message, such as NO-CIPHER-ERROR (0x0001)."""

    offset: int
    error_code: int


def _check(
    condition: bool, message: str, *, offset: int, field: str, value: int, limit: object
) -> None:
    if not condition:
        raise PeerProtocolError(
            message, offset=offset, field=field, value=value, limit=limit
        )


def decode_sslv2_server_hello(body: bytes, offset: int) -> SSLv2ServerHello:
    """Decode a SERVER-HELLO record body that starts at stream `offset`.

    Raises:
        PeerProtocolError: wrong msg_type, lengths that run past the body
            or break the draft's limits, or bytes left over.
    """
    reader = ByteReader(body, offset)
    msg_type = reader.uint(1, "msg_type")
    _check(
        msg_type == SSLv2MessageType.SERVER_HELLO,
        f"SSL 2.0 msg_type {msg_type} at offset {offset} is not SERVER-HELLO (4)",
        offset=offset,
        field="msg_type",
        value=msg_type,
        limit=4,
    )
    session_id_hit = reader.uint(1, "session_id_hit")
    certificate_type = reader.uint(1, "certificate_type")
    server_version = reader.uint(2, "server_version")
    certificate_len = reader.uint(2, "certificate_length")
    specs_offset = reader.stream_offset()
    specs_len = reader.uint(2, "cipher_specs_length")
    connection_offset = reader.stream_offset()
    connection_id_len = reader.uint(2, "connection_id_length")

    _check(
        specs_len % SSLV2_CIPHER_SPEC_LEN == 0,
        f"cipher_specs_length {specs_len} at offset {specs_offset} is not a "
        "multiple of 3",
        offset=specs_offset,
        field="cipher_specs_length",
        value=specs_len,
        limit="multiple of 3",
    )
    _check(
        MIN_CONNECTION_ID_LEN <= connection_id_len <= MAX_CONNECTION_ID_LEN,
        f"connection_id_length {connection_id_len} at offset {connection_offset} "
        "is outside 16..32",
        offset=connection_offset,
        field="connection_id_length",
        value=connection_id_len,
        limit="16..32",
    )

    certificate_offset = reader.stream_offset()
    certificate = reader.read(certificate_len, "certificate")
    specs = reader.read(specs_len, "cipher_specs")
    connection_id = reader.read(connection_id_len, "connection_id")
    reader.expect_end("SERVER-HELLO")
    cipher_specs = tuple(
        int.from_bytes(specs[i : i + SSLV2_CIPHER_SPEC_LEN], "big")
        for i in range(0, len(specs), SSLV2_CIPHER_SPEC_LEN)
    )
    return SSLv2ServerHello(
        offset,
        session_id_hit,
        certificate_type,
        server_version,
        certificate,
        certificate_offset,
        cipher_specs,
        connection_id,
    )


def decode_sslv2_error(body: bytes, offset: int) -> SSLv2Error:
    """Decode an ERROR record body that starts at stream `offset`."""
    reader = ByteReader(body, offset)
    msg_type = reader.uint(1, "msg_type")
    _check(
        msg_type == SSLv2MessageType.ERROR,
        f"SSL 2.0 msg_type {msg_type} at offset {offset} is not ERROR (0)",
        offset=offset,
        field="msg_type",
        value=msg_type,
        limit=0,
    )
    error_code = reader.uint(2, "error_code")
    reader.expect_end("ERROR")
    return SSLv2Error(offset, error_code)
