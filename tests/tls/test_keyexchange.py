"""Tests of the ServerKeyExchange decoder."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tls_bytes import hx, u16, vec

from pktscan.errors import PeerProtocolError
from pktscan.tls.keyexchange import decode_server_key_exchange
from pktscan.tls.messages import HandshakeMessage

PRIME_1024 = b"\xff" * 128  # 1024 bits; the decoder does not test primality
POINT = hx("04") + bytes(range(64))  # uncompressed P-256 point shape
SIGNATURE = bytes(range(1, 65))


def message(body: bytes) -> HandshakeMessage:
    return HandshakeMessage(0, 12, body, ((0, 4),))


DHE_PARAMS = vec(2, PRIME_1024) + vec(2, hx("02")) + vec(2, bytes(range(1, 129)))
ECDHE_PARAMS = hx("03 0017") + vec(1, POINT)  # named_curve secp256r1


def test_dhe_tls12() -> None:
    body = DHE_PARAMS + hx("0401") + vec(2, SIGNATURE)  # rsa_pkcs1_sha256
    decoded = decode_server_key_exchange(message(body), 0x009E, 0x0303)
    assert decoded.kind == "DHE"
    assert decoded.prime_bits == 1024
    assert decoded.dh_g == hx("02")
    assert decoded.dh_ys == bytes(range(1, 129))
    assert decoded.signature_algorithm == 0x0401
    assert decoded.signature == SIGNATURE
    assert decoded.summary() == {
        "kind": "DHE",
        "prime_bits": 1024,
        "generator": 2,
        "signature_algorithm": "rsa_pkcs1_sha256",
    }


def test_dhe_tls10_no_signature_algorithm() -> None:
    body = DHE_PARAMS + vec(2, SIGNATURE)
    decoded = decode_server_key_exchange(message(body), 0x0033, 0x0301)
    assert decoded.signature_algorithm is None
    assert decoded.signature == SIGNATURE


def test_ecdhe_named_curve() -> None:
    body = ECDHE_PARAMS + hx("0403") + vec(2, SIGNATURE)
    decoded = decode_server_key_exchange(message(body), 0xC02B, 0x0303)
    assert decoded.kind == "ECDHE"
    assert decoded.curve_type == 3
    assert decoded.named_group == 0x0017
    assert decoded.point == POINT
    assert decoded.summary() == {
        "kind": "ECDHE",
        "group": "secp256r1",
        "signature_algorithm": "ecdsa_secp256r1_sha256",
    }


def test_ecdhe_explicit_curve_left_raw() -> None:
    body = hx("01") + bytes(40)
    decoded = decode_server_key_exchange(message(body), 0xC013, 0x0301)
    assert decoded.curve_type == 1
    assert decoded.named_group is None
    assert decoded.summary() == {"kind": "ECDHE", "curve_type": "explicit_prime"}


def test_anonymous_dh_has_no_signature() -> None:
    decoded = decode_server_key_exchange(message(DHE_PARAMS), 0x0034, 0x0303)
    assert decoded.kind == "DHE"
    assert decoded.signature is None


def test_rsa_export() -> None:
    body = vec(2, b"\xc0" + bytes(63)) + vec(2, hx("010001")) + vec(2, SIGNATURE)
    decoded = decode_server_key_exchange(message(body), 0x0003, 0x0300)
    assert decoded.kind == "RSA_EXPORT"
    assert decoded.summary() == {"kind": "RSA_EXPORT", "modulus_bits": 512}


@pytest.mark.parametrize("suite", [0x008C, 0xABCD, 0xC035])
def test_psk_and_unknown_suites_kept_raw(suite: int) -> None:
    decoded = decode_server_key_exchange(message(b"hint"), suite, 0x0303)
    assert decoded.kind == "unknown"
    assert decoded.raw == b"hint"


@pytest.mark.parametrize(
    ("body", "suite", "text", "field"),
    [
        (
            vec(2, PRIME_1024),
            0x0033,
            "dh_g length at offset 134 needs 2 bytes, only 0 remain",
            "dh_g length",
        ),
        (
            u16(0),
            0x0033,
            "dh_p length 0 at offset 4 is below the minimum of 1",
            "dh_p length",
        ),
        (
            ECDHE_PARAMS + hx("0403") + vec(2, SIGNATURE) + hx("00"),
            0xC02B,
            "1 unexpected bytes after ServerKeyExchange signature at offset 141",
            "ServerKeyExchange signature",
        ),
        (
            hx("03 0017") + vec(1),
            0xC02F,
            "point length 0 at offset 7 is below the minimum of 1",
            "point length",
        ),
        (
            DHE_PARAMS + hx("00"),
            0x0034,
            "1 unexpected bytes after ServerKeyExchange params at offset 267",
            "ServerKeyExchange params",
        ),
    ],
    ids=["dh-g-missing", "dh-p-empty", "trailing", "empty-point", "anon-trailing"],
)
def test_malformed_key_exchange(body: bytes, suite: int, text: str, field: str) -> None:
    with pytest.raises(PeerProtocolError) as info:
        decode_server_key_exchange(message(body), suite, 0x0303)
    assert str(info.value) == text
    assert info.value.field == field


@given(
    st.binary(max_size=300),
    st.sampled_from([0x0033, 0x009E, 0xC02F, 0x0003, 0x0034, 0xC018, 0x002F]),
    st.sampled_from([0x0300, 0x0301, 0x0303]),
)
def test_arbitrary_bodies_return_or_raise(
    body: bytes, suite: int, version: int
) -> None:
    with contextlib.suppress(PeerProtocolError):
        decode_server_key_exchange(message(body), suite, version)
