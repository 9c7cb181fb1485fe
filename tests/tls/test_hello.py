"""Tests of the ClientHello dataclasses and extension builders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.tls.record import TLS
from tls_bytes import extension, handshake, hx, record, sslv2_record, u16, vec

from pktscan.tls import hello as h

RANDOM = bytes(range(32))


def test_minimal_hello_bytes() -> None:
    hello = h.ClientHello(0x0301, 0x0303, RANDOM, (0x002F,))
    assert hello.to_bytes() == record(
        0x16,
        0x0301,
        handshake(
            0x01,
            hx("0303"),  # client_version
            RANDOM,
            vec(1),  # session_id
            vec(2, hx("002f")),  # TLS_RSA_WITH_AES_128_CBC_SHA
            vec(1, hx("00")),  # null compression
        ),
    )


def test_empty_extensions_block() -> None:
    hello = h.ClientHello(0x0301, 0x0303, RANDOM, (0x002F,), extensions=())
    assert hello.to_bytes().endswith(hx("01 00 00 00"))


def test_every_field_settable() -> None:
    hello = h.ClientHello(
        record_version=0x0302,
        client_version=0x0302,
        random=RANDOM,
        cipher_suites=(0xC02F, 0x1301),
        session_id=bytes(range(16)),
        compression_methods=(1, 0),
        extensions=(h.Extension(0xABCD, b"xy"),),
    )
    assert hello.to_bytes() == record(
        0x16,
        0x0302,
        handshake(
            0x01,
            hx("0302"),
            RANDOM,
            vec(1, bytes(range(16))),
            vec(2, hx("c02f 1301")),
            vec(1, hx("01 00")),  # DEFLATE, null
            vec(2, extension(0xABCD, b"xy")),
        ),
    )


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (
            lambda: h.server_name("a.test"),
            extension(0, vec(2, hx("00"), vec(2, b"a.test"))),
        ),
        (lambda: h.supported_groups([29, 23]), extension(10, vec(2, hx("001d 0017")))),
        (lambda: h.ec_point_formats([0, 1]), extension(11, vec(1, hx("00 01")))),
        (lambda: h.signature_algorithms([0x0805]), extension(13, vec(2, hx("0805")))),
        (lambda: h.renegotiation_info(), extension(0xFF01, hx("00"))),
        (lambda: h.extended_master_secret(), extension(23)),
        (lambda: h.session_ticket(), extension(35)),
        (lambda: h.status_request(), extension(5, hx("01 0000 0000"))),
        (lambda: h.padding(3), extension(21, hx("000000"))),
    ],
)
def test_extension_builders(builder, expected: bytes) -> None:  # type: ignore[no-untyped-def]
    assert builder().to_bytes() == expected


def test_idna_server_name() -> None:
    data = h.server_name("bücher.test").data
    assert data.endswith(b"xn--bcher-kva.test")


def test_pad_for_f5_pads_to_512() -> None:
    # 4 + 2 + 32 + 1 + 2 + 2 * 120 + 2 + 2 = 285 bytes: inside 256-511.
    hello = h.ClientHello(0x0301, 0x0303, RANDOM, tuple(range(1, 121)), extensions=())
    assert len(hello.handshake_bytes()) == 285
    padded = h.pad_for_f5(hello)
    assert len(padded.handshake_bytes()) == 512
    assert padded.extensions == (h.padding(512 - 285 - 4),)


@pytest.mark.parametrize(("suite_count", "unchanged"), [(100, True), (236, True)])
def test_pad_for_f5_outside_range(suite_count: int, unchanged: bool) -> None:
    hello = h.ClientHello(0x0301, 0x0303, RANDOM, (0x2F,) * suite_count, extensions=())
    assert (h.pad_for_f5(hello) == hello) is unchanged


def test_pad_for_f5_leaves_extensionless_hello() -> None:
    hello = h.ClientHello(0x0300, 0x0300, RANDOM, (0x2F,) * 120)
    assert h.pad_for_f5(hello) is hello


def test_sslv2_hello_bytes() -> None:
    hello = h.SSLv2ClientHello(0x0002, (0x010080, 0x00002F), bytes(16))
    assert hello.to_bytes() == sslv2_record(
        hx("01"),  # CLIENT-HELLO
        hx("0002"),  # version SSL 2.0
        u16(6),  # cipher_spec_length
        u16(0),  # session_id_length
        u16(16),  # challenge_length
        hx("010080 00002f"),
        bytes(16),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"random": bytes(31)}, "random must be 32 bytes, got 31"),
        ({"session_id": bytes(33)}, "session id of 33 bytes exceeds 32"),
        ({"cipher_suites": ()}, "at least one cipher suite"),
        ({"cipher_suites": (0x10000,)}, "cipher suite value 65536"),
        ({"compression_methods": ()}, "at least one compression method"),
        ({"client_version": -1}, "version value -1"),
    ],
)
def test_client_hello_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "record_version": 0x0301,
        "client_version": 0x0303,
        "random": RANDOM,
        "cipher_suites": (0x2F,),
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        h.ClientHello(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"challenge": bytes(15)}, "challenge must be 16-32 bytes, got 15"),
        ({"challenge": bytes(33)}, "challenge must be 16-32 bytes, got 33"),
        ({"cipher_specs": ()}, "at least one cipher spec"),
        ({"cipher_specs": (0x1000000,)}, "is not a 3-byte value"),
        ({"session_id": bytes(8)}, "empty or 16 bytes"),
    ],
)
def test_sslv2_hello_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "version": 0x0301,
        "cipher_specs": (0x010080,),
        "challenge": bytes(32),
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        h.SSLv2ClientHello(**fields)  # type: ignore[arg-type]


def test_oversized_hello_rejected() -> None:
    hello = h.ClientHello(
        0x0301, 0x0303, RANDOM, (0x2F,), extensions=(h.padding(2**14),)
    )
    with pytest.raises(ValueError, match="exceeds one record"):
        hello.to_bytes()


@given(
    client_version=st.integers(0, 0xFFFF),
    random=st.binary(min_size=32, max_size=32),
    session_id=st.binary(max_size=32),
    suites=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=60),
    extensions=st.lists(
        st.tuples(st.integers(0x4000, 0xFEFF), st.binary(max_size=40)), max_size=6
    ),
)
def test_scapy_parses_built_hellos(
    client_version: int,
    random: bytes,
    session_id: bytes,
    suites: list[int],
    extensions: list[tuple[int, bytes]],
) -> None:
    hello = h.ClientHello(
        0x0301,
        client_version,
        random,
        tuple(suites),
        session_id=session_id,
        extensions=tuple(h.Extension(t, d) for t, d in extensions),
    )
    parsed = TLS(hello.to_bytes()).msg[0]
    assert parsed.version == client_version
    assert parsed.sid == session_id
    assert parsed.ciphers == suites
    assert [(e.type, e.len) for e in parsed.ext or []] == [
        (t, len(d)) for t, d in extensions
    ]
