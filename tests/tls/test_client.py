"""Tests of HandshakeReader on real recorded flights and crafted replies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from tls_bytes import extension, feedings, handshake, hx, record, sslv2_record, vec

from pktscan.tls import events as ev
from pktscan.tls.client import (
    MAX_EVENTS,
    MAX_FLIGHT_BYTES,
    HandshakeOutcome,
    HandshakeReader,
)
from pktscan.tls.messages import MAX_HANDSHAKE_MESSAGE_LEN

FLIGHTS = Path(__file__).parent / "flights"
MANIFEST = json.loads((FLIGHTS / "manifest.json").read_text())
RANDOM = bytes(range(32))


def leaf_sha256(pem_name: str) -> str:
    cert = x509.load_pem_x509_certificate((FLIGHTS / pem_name).read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


CA_SHA256 = leaf_sha256("ca.pem")


def read(
    hello_format: str, chunks: list[bytes], reason: str | None = "eof"
) -> HandshakeOutcome:
    reader = HandshakeReader(hello_format)  # type: ignore[arg-type]
    for chunk in chunks:
        reader.feed(chunk)
    return reader.finish(reason)  # type: ignore[arg-type]


# Expected results of each recorded flight: outcome, version, cipher, key
# exchange, number of certificates.
EXPECTED = {
    "openssl-tls12-ecdhe-rsa": (
        "certificate",
        "TLSv1.2",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        {
            "kind": "ECDHE",
            "group": "x25519",
            "signature_algorithm": "rsa_pss_rsae_sha256",
        },
        2,
    ),
    "openssl-tls12-dhe-rsa": (
        "certificate",
        "TLSv1.2",
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        {
            "kind": "DHE",
            "prime_bits": 2048,
            "generator": 2,
            "signature_algorithm": "rsa_pss_rsae_sha256",
        },
        2,
    ),
    "openssl-tls12-ecdsa": (
        "certificate",
        "TLSv1.2",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        {
            "kind": "ECDHE",
            "group": "x25519",
            "signature_algorithm": "ecdsa_secp256r1_sha256",
        },
        2,
    ),
    "openssl-tls10-set2": (
        "certificate",
        "TLSv1.0",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        {"kind": "ECDHE", "group": "x25519"},
        2,
    ),
    "openssl-tls10-sslv2-hello": (
        "certificate",
        "TLSv1.0",
        "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        {"kind": "DHE", "prime_bits": 2048, "generator": 2},
        2,
    ),
    "openssl-big-chain": (
        "certificate",
        "TLSv1.2",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        {
            "kind": "ECDHE",
            "group": "x25519",
            "signature_algorithm": "rsa_pss_rsae_sha256",
        },
        2,
    ),
    "openssl-tls13-only-alert": ("alert", None, None, None, 0),
    "openssl-tls13": (
        "no_certificate",
        "TLSv1.3",
        "TLS_AES_128_GCM_SHA256",
        {"kind": "ECDHE", "group": "x25519"},
        0,
    ),
    "tlslite-ssl3": (
        "certificate",
        "SSLv3",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        {"kind": "RSA"},
        1,
    ),
    "scapy-sslv2": (
        "certificate",
        "SSLv2",
        "SSL_CK_RC4_128_WITH_MD5",
        {"kind": "RSA"},
        1,
    ),
}


def test_manifest_matches_expectations() -> None:
    assert sorted(entry["name"] for entry in MANIFEST) == sorted(EXPECTED)


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["name"] for e in MANIFEST])
def test_recorded_flight(entry: dict[str, object]) -> None:
    data = (FLIGHTS / f"{entry['name']}.bin").read_bytes()
    outcome = read(str(entry["hello_format"]), [data])
    expected = EXPECTED[str(entry["name"])]
    assert outcome.outcome == expected[0]
    assert outcome.version_name == expected[1]
    assert outcome.cipher_name == expected[2]
    assert outcome.key_exchange == expected[3]
    assert len(outcome.chain) == expected[4]
    assert outcome.first_bytes == data[:64]
    assert outcome.error is None
    if outcome.chain:
        assert hashlib.sha256(outcome.chain[0]).hexdigest() == leaf_sha256(
            str(entry["cert"])
        )
    if len(outcome.chain) == 2:
        assert hashlib.sha256(outcome.chain[1]).hexdigest() == CA_SHA256


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["name"] for e in MANIFEST])
def test_recorded_flight_every_split(entry: dict[str, object]) -> None:
    data = (FLIGHTS / f"{entry['name']}.bin").read_bytes()
    whole = read(str(entry["hello_format"]), [data])
    ways = feedings(data)
    if len(data) > 5000:
        ways = ways[:2] + ways[2::97]  # whole, byte by byte, every 97th split
    for chunks in ways:
        outcome = read(str(entry["hello_format"]), chunks)
        assert outcome == whole


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["name"] for e in MANIFEST])
def test_recorded_flight_trailing_bytes(entry: dict[str, object]) -> None:
    data = (FLIGHTS / f"{entry['name']}.bin").read_bytes()
    whole = read(str(entry["hello_format"]), [data])
    with_garbage = read(str(entry["hello_format"]), [data + b"\xff" * 40])
    assert with_garbage.outcome == whole.outcome
    assert with_garbage.chain == whole.chain


def test_big_chain_spans_records() -> None:
    data = (FLIGHTS / "openssl-big-chain.bin").read_bytes()
    reader = HandshakeReader("tls")
    events = reader.feed(data)
    (certificate,) = [e for e in events if isinstance(e, ev.CertificateReceived)]
    assert sum(len(der) for der in certificate.chain) > 2**14
    leaf_offset = certificate.certificate.certificate_offsets[0]
    assert data[leaf_offset : leaf_offset + 4] == certificate.chain[0][:4]


def test_recorded_alert_fields() -> None:
    data = (FLIGHTS / "openssl-tls13-only-alert.bin").read_bytes()
    outcome = read("tls", [data])
    assert (outcome.alert_level, outcome.alert_description) == (2, 70)
    assert outcome.alert_name == "protocol_version"


# Crafted replies

LEAF = b"\x30\x03\x02\x01\x07"
SERVER_HELLO = handshake(
    2,
    hx("0303") + RANDOM + vec(1) + hx("c02f 00"),  # ECDHE_RSA AES_128_GCM
    vec(2, extension(0xFF01, vec(1))),
)
CERTIFICATE = handshake(11, vec(3, vec(3, LEAF)))
KEY_EXCHANGE = handshake(
    12, hx("03 001d") + vec(1, bytes(32)) + hx("0804") + vec(2, bytes(16))
)
DONE = handshake(14)
FATAL_ALERT = record(0x15, 0x0303, hx("02 28"))  # handshake_failure
WARNING_NAME = record(0x15, 0x0301, hx("01 70"))  # warning unrecognized_name


def flight(*messages: bytes) -> bytes:
    return record(0x16, 0x0303, *messages)


def test_full_flight_done() -> None:
    reader = HandshakeReader("tls")
    events = reader.feed(flight(SERVER_HELLO, CERTIFICATE, KEY_EXCHANGE, DONE))
    assert [type(e) for e in events] == [
        ev.ServerHelloReceived,
        ev.CertificateReceived,
        ev.ServerKeyExchangeReceived,
        ev.ServerHelloDoneReceived,
    ]
    assert [e.offset for e in events] == [
        5,
        5 + len(SERVER_HELLO),
        5 + len(SERVER_HELLO) + len(CERTIFICATE),
        5 + len(SERVER_HELLO) + len(CERTIFICATE) + len(KEY_EXCHANGE),
    ]
    assert reader.done
    assert reader.certificate_complete
    assert reader.feed(FATAL_ALERT) == []  # ignored after done
    assert reader.finish().outcome == "certificate"


def test_chain_kept_after_alert() -> None:
    outcome = read("tls", [flight(SERVER_HELLO, CERTIFICATE), FATAL_ALERT])
    assert outcome.outcome == "certificate"
    assert outcome.chain == (LEAF,)
    assert outcome.alert_name == "handshake_failure"


def test_chain_kept_after_garbage() -> None:
    outcome = read("tls", [flight(SERVER_HELLO, CERTIFICATE), b"\x99garbage"])
    assert outcome.outcome == "certificate"
    assert outcome.error == "record content_type 153 at offset 69 is not 20-26"
    assert isinstance(outcome.events[-1], ev.ProtocolErrorRaised)


@pytest.mark.parametrize("reason", ["eof", "reset", "timeout"])
def test_chain_kept_after_transport_end(reason: str) -> None:
    outcome = read("tls", [flight(SERVER_HELLO, CERTIFICATE)], reason)
    assert outcome.outcome == "certificate"


def test_warning_alert_before_server_hello() -> None:
    reader = HandshakeReader("tls")
    reader.feed(WARNING_NAME)
    assert not reader.done
    reader.feed(flight(SERVER_HELLO, CERTIFICATE, DONE))
    outcome = reader.finish()
    assert outcome.outcome == "certificate"
    assert outcome.alert_name == "unrecognized_name"
    assert outcome.alert_level == 1


def test_warning_alert_only_then_eof() -> None:
    assert read("tls", [WARNING_NAME], "eof").outcome == "alert"


def test_close_notify_ends_attempt() -> None:
    reader = HandshakeReader("tls")
    reader.feed(record(0x15, 0x0303, hx("01 00")))
    assert reader.done
    assert reader.finish().outcome == "alert"


@pytest.mark.parametrize(
    ("chunks", "reason", "expected"),
    [
        ([], "eof", "closed"),
        ([], "reset", "reset"),
        ([], "timeout", "timeout"),
        ([], None, "closed"),
        ([flight(SERVER_HELLO)[:20]], "eof", "truncated"),
        ([flight(SERVER_HELLO)[:3]], "reset", "truncated"),
        ([flight(SERVER_HELLO)], "timeout", "truncated"),
        ([flight(SERVER_HELLO, CERTIFICATE[:9])], "eof", "truncated"),
    ],
    ids=[
        "eof",
        "reset",
        "timeout",
        "none",
        "partial",
        "header",
        "sh-only",
        "half-cert",
    ],
)
def test_transport_endings(chunks: list[bytes], reason: str, expected: str) -> None:
    assert read("tls", chunks, reason).outcome == expected


def test_sslv2_hello_answered_by_tls_alert() -> None:
    outcome = read("sslv2", [FATAL_ALERT])
    assert outcome.outcome == "alert"
    assert outcome.alert_description == 40


def test_sslv2_error() -> None:
    outcome = read("sslv2", [sslv2_record(hx("00 0001"))])
    assert outcome.outcome == "alert"
    assert outcome.alert_level is None
    assert outcome.alert_name == "NO_CIPHER_ERROR"


def test_sslv2_reply_to_tls_hello() -> None:
    outcome = read("tls", [sslv2_record(hx("00 0001"))])
    assert outcome.outcome == "protocol_error"
    assert outcome.error == "SSL 2.0 record at offset 0 in reply to a TLS-format hello"


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 400 Bad Request\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", b"220 ready\r\n"],
)
def test_non_tls(reply: bytes) -> None:
    reader = HandshakeReader("sslv2")
    (event,) = reader.feed(reply)
    assert isinstance(event, ev.NonTlsReceived)
    assert reader.done
    outcome = reader.finish()
    assert outcome.outcome == "non_tls"
    assert outcome.first_bytes == reply[:64]


def test_anonymous_dh_no_certificate() -> None:
    hello = handshake(2, hx("0303") + RANDOM + vec(1) + hx("0034 00"))  # DH_anon
    dh_params = vec(2, b"\xff" * 64) + vec(2, hx("02")) + vec(2, b"\x01" * 64)
    outcome = read("tls", [flight(hello, handshake(12, dh_params), DONE)])
    assert outcome.outcome == "no_certificate"
    assert outcome.key_exchange == {"kind": "DHE", "prime_bits": 512, "generator": 2}


def test_hello_retry_request_no_certificate() -> None:
    hrr_random = bytes.fromhex(
        "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
    )
    body = hx("0303") + hrr_random + vec(1) + hx("1301 00")
    body += vec(2, extension(0x002B, hx("0304")), extension(0x0033, hx("0017")))
    reader = HandshakeReader("tls")
    (event,) = reader.feed(flight(handshake(2, body)))
    assert isinstance(event, ev.HelloRetryRequestReceived)
    assert reader.done
    assert reader.finish().outcome == "no_certificate"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (flight(CERTIFICATE), "certificate at offset 5 before ServerHello"),
        (
            flight(SERVER_HELLO, SERVER_HELLO),
            f"second ServerHello at offset {5 + len(SERVER_HELLO)}",
        ),
        (
            flight(SERVER_HELLO, handshake(14, b"x")),
            f"1 unexpected bytes after ServerHelloDone at offset "
            f"{5 + len(SERVER_HELLO) + 4}",
        ),
        (
            record(0x17, 0x0303, b"data"),
            "application_data record at offset 0 before the handshake completed",
        ),
    ],
    ids=["cert-first", "two-hellos", "done-with-body", "app-data"],
)
def test_protocol_errors(reply: bytes, error: str) -> None:
    outcome = read("tls", [reply])
    assert outcome.outcome == "protocol_error"
    assert outcome.error == error


def test_fragmented_alert() -> None:
    reader = HandshakeReader("tls")
    assert reader.feed(record(0x15, 0x0303, hx("02"))) == []
    (alert,) = reader.feed(record(0x15, 0x0303, hx("28")))
    assert alert == ev.AlertReceived(5, 2, 40)


def test_unknown_values_stay_ints() -> None:
    hello = handshake(2, hx("0399") + RANDOM + vec(1) + hx("abcd 00"))
    outcome = read("tls", [flight(hello, CERTIFICATE, DONE)])
    assert outcome.outcome == "certificate"
    assert outcome.version == 0x0399
    assert outcome.version_name == "unknown(0x0399)"
    assert outcome.cipher_name == "unknown(0xabcd)"
    assert outcome.key_exchange is None


def test_bad_hello_format() -> None:
    with pytest.raises(ValueError, match="hello_format 'dtls'"):
        HandshakeReader("dtls")  # type: ignore[arg-type]


@settings(max_examples=300)
@given(
    st.sampled_from(["tls", "sslv2"]),
    st.lists(st.binary(max_size=64), max_size=8),
    st.sampled_from(["eof", "reset", "timeout", None]),
)
def test_reader_never_raises(
    hello_format: str, chunks: list[bytes], reason: str | None
) -> None:
    outcome = read(hello_format, chunks, reason)
    assert outcome.outcome in {
        "certificate",
        "no_certificate",
        "alert",
        "reset",
        "closed",
        "timeout",
        "non_tls",
        "truncated",
        "protocol_error",
    }


@settings(max_examples=200)
@given(st.data())
def test_reader_never_raises_on_mutated_flights(data: st.DataObject) -> None:
    entry = data.draw(st.sampled_from(MANIFEST))
    flight_bytes = bytearray((FLIGHTS / f"{entry['name']}.bin").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(flight_bytes) - 1))
        flight_bytes[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(flight_bytes)))
    outcome = read(entry["hello_format"], [bytes(flight_bytes[:cut])])
    assert isinstance(outcome, HandshakeOutcome)


@pytest.mark.parametrize(
    ("group", "key_exchange"),
    [
        (0x001D, {"kind": "ECDHE", "group": "x25519"}),
        (0x0100, {"kind": "DHE", "group": "ffdhe2048"}),
        (0x11EC, {"kind": "ECDHE+MLKEM", "group": "X25519MLKEM768"}),
    ],
)
def test_tls13_key_share_kind(group: int, key_exchange: dict[str, object]) -> None:
    body = hx("0303") + RANDOM + vec(1) + hx("1301 00")
    share = extension(0x0033, group.to_bytes(2, "big"), vec(2, bytes(32)))
    body += vec(2, extension(0x002B, hx("0304")), share)
    reader = HandshakeReader("tls")
    reader.feed(flight(handshake(2, body)))
    assert reader.done
    outcome = reader.finish()
    assert outcome.outcome == "no_certificate"
    assert outcome.version_name == "TLSv1.3"
    assert outcome.key_exchange == key_exchange


@pytest.mark.parametrize(
    "body",
    [
        # Draft 18: version, random, cipher_suite, extensions, then encryption.
        hx("7f12") + RANDOM + hx("1301") + vec(2, extension(0x0028, bytes(36))),
        # Draft 28: the RFC 8446 layout, with the draft in supported_versions.
        hx("0303") + RANDOM + vec(1) + hx("1301 00")
        + vec(2, extension(0x002B, hx("7f1c"))),
    ],
    ids=["draft-18", "draft-28"],
)  # fmt: skip
def test_tls13_draft_server_hello_ends_flight(body: bytes) -> None:
    encrypted = record(23, 0x0303, bytes(32))  # application_data follows
    reader = HandshakeReader("tls")
    (event,) = reader.feed(flight(handshake(2, body)) + encrypted)
    assert isinstance(event, ev.ServerHelloReceived)
    assert reader.done
    assert reader.finish().outcome == "no_certificate"


# Floods: a reply that never ends its flight is cut off, not buffered.


def test_warning_alert_flood_ends_attempt() -> None:
    reader = HandshakeReader("tls")
    fed = 0
    while not reader.done and fed < 10_000:
        reader.feed(WARNING_NAME)
        fed += 1
    outcome = reader.finish()
    assert fed == MAX_EVENTS + 1
    assert outcome.outcome == "protocol_error"
    assert outcome.error == (
        f"the server sent more than {MAX_EVENTS} records and messages without "
        # The last alert's description follows its 5-byte record header.
        f"ending its flight (the last at offset {MAX_EVENTS * len(WARNING_NAME) + 5})"
    )
    assert len(outcome.events) == MAX_EVENTS + 2


def test_endless_bytes_end_attempt() -> None:
    reader = HandshakeReader("tls")
    # Handshake messages of an unknown type (0x63), each of the maximum
    # length, without end: each one completes, so only the byte cap stops
    # the reply.
    size = MAX_HANDSHAKE_MESSAGE_LEN
    message = bytes([0x63]) + size.to_bytes(3, "big") + bytes(size)
    stream = message * 5
    chunks = [stream[i : i + 16_000] for i in range(0, len(stream), 16_000)]
    fed = 0
    for fragment in chunks:
        if reader.done:
            break
        reader.feed(record(0x16, 0x0303, fragment))
        fed += 1
    outcome = reader.finish()
    assert fed * (16_000 + 5) > MAX_FLIGHT_BYTES
    assert (fed - 1) * (16_000 + 5) <= MAX_FLIGHT_BYTES
    assert outcome.outcome == "protocol_error"
    assert (outcome.error or "").startswith(
        f"the server sent more than {MAX_FLIGHT_BYTES} bytes without ending"
    )


def test_chain_kept_when_flood_follows() -> None:
    reader = HandshakeReader("tls")
    reader.feed(flight(SERVER_HELLO, CERTIFICATE))
    for _ in range(MAX_EVENTS + 5):
        reader.feed(WARNING_NAME)
    outcome = reader.finish()
    assert reader.done
    assert outcome.outcome == "certificate"
    assert outcome.chain == (LEAF,)
