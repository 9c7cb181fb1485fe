"""Tests of the SSL 2.0 SERVER-HELLO and ERROR decoders."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tls_bytes import hx, u16

from pktscan.errors import PeerProtocolError
from pktscan.tls.sslv2 import (
    SSLv2Error,
    SSLv2ServerHello,
    decode_sslv2_error,
    decode_sslv2_server_hello,
)

CERT = b"\x30\x03\x02\x01\x05"
CONNECTION_ID = bytes(range(16))


def server_hello(
    cert: bytes = CERT, specs: bytes = hx("010080 0700c0"), conn: bytes = CONNECTION_ID
) -> bytes:
    return b"".join(
        [
            hx("04"),  # SERVER-HELLO
            hx("00"),  # session_id_hit
            hx("01"),  # SSL_CT_X509_CERTIFICATE
            hx("0002"),  # server_version SSL 2.0
            u16(len(cert)),
            u16(len(specs)),
            u16(len(conn)),
            cert,
            specs,
            conn,
        ]
    )


def test_server_hello() -> None:
    assert decode_sslv2_server_hello(server_hello(), 2) == SSLv2ServerHello(
        offset=2,
        session_id_hit=0,
        certificate_type=1,
        server_version=0x0002,
        certificate=CERT,
        certificate_offset=13,
        cipher_specs=(0x010080, 0x0700C0),
        connection_id=CONNECTION_ID,
    )


def test_error() -> None:
    assert decode_sslv2_error(hx("00 0001"), 2) == SSLv2Error(2, 1)


@pytest.mark.parametrize(
    ("body", "text", "field"),
    [
        (
            server_hello(specs=hx("0100")),
            "cipher_specs_length 2 at offset 7 is not a multiple of 3",
            "cipher_specs_length",
        ),
        (
            server_hello(conn=bytes(15)),
            "connection_id_length 15 at offset 9 is outside 16..32",
            "connection_id_length",
        ),
        (
            server_hello(conn=bytes(33)),
            "connection_id_length 33 at offset 9 is outside 16..32",
            "connection_id_length",
        ),
        (
            server_hello() + b"!",
            "1 unexpected bytes after SERVER-HELLO at offset 38",
            "SERVER-HELLO",
        ),
        (
            server_hello()[:20],
            "cipher_specs at offset 16 needs 6 bytes, only 4 remain",
            "cipher_specs",
        ),
        (
            hx("05") + server_hello()[1:],
            "SSL 2.0 msg_type 5 at offset 0 is not SERVER-HELLO (4)",
            "msg_type",
        ),
    ],
    ids=["specs-not-3", "conn-id-15", "conn-id-33", "trailing", "truncated", "type"],
)
def test_malformed_server_hello(body: bytes, text: str, field: str) -> None:
    with pytest.raises(PeerProtocolError) as info:
        decode_sslv2_server_hello(body, 0)
    assert str(info.value) == text
    assert info.value.field == field


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (hx("00 00"), "error_code at offset 1 needs 2 bytes, only 1 remain"),
        (hx("00 0001 00"), "1 unexpected bytes after ERROR at offset 3"),
        (hx("04 0001"), "SSL 2.0 msg_type 4 at offset 0 is not ERROR (0)"),
    ],
)
def test_malformed_error(body: bytes, text: str) -> None:
    with pytest.raises(
        PeerProtocolError, match=text.replace("(", r"\(").replace(")", r"\)")
    ):
        decode_sslv2_error(body, 0)


@given(st.binary(max_size=1000), st.lists(st.integers(0, 0xFFFFFF), max_size=10))
def test_server_hello_round_trip(cert: bytes, specs: list[int]) -> None:
    wire_specs = b"".join(spec.to_bytes(3, "big") for spec in specs)
    decoded = decode_sslv2_server_hello(server_hello(cert, wire_specs), 0)
    assert decoded.certificate == cert
    assert decoded.cipher_specs == tuple(specs)


@given(st.binary(max_size=200))
def test_arbitrary_bodies_return_or_raise(body: bytes) -> None:
    with contextlib.suppress(PeerProtocolError):
        decode_sslv2_server_hello(body, 0)
    with contextlib.suppress(PeerProtocolError):
        decode_sslv2_error(body, 0)
