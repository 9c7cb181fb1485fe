"""Tests of handshake reassembly and the handshake message decoders."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tls_bytes import extension, feedings, handshake, hx, record, u16, u24, vec

from pktscan.errors import PeerProtocolError
from pktscan.tls.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    MAX_CERTIFICATES,
    Certificate,
    HandshakeAssembler,
    HandshakeMessage,
    HelloRetryRequest,
    ServerHello,
    decode_certificate,
    decode_certificate_request,
    decode_certificate_status,
    decode_server_hello,
    expect_empty,
)
from pktscan.tls.record import RecordReader, TlsRecord

RANDOM = bytes(range(32))
SESSION_ID = bytes(range(100, 132))

SERVER_HELLO_BODY = b"".join(
    [
        hx("0303"),  # server_version TLS 1.2
        RANDOM,
        vec(1, SESSION_ID),
        hx("c02f"),  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        hx("00"),  # compression null
        vec(
            2,
            extension(0xFF01, vec(1)),  # renegotiation_info, empty
            extension(0x0017),  # extended_master_secret
            extension(0x0023),  # session_ticket
            extension(0x0010, vec(2, vec(1, b"h2"))),  # ALPN: h2
            extension(0x000B, vec(1, hx("00 01"))),  # ec_point_formats
            extension(0x0005),  # status_request
            extension(0x7777, b"?"),  # unknown, kept raw
        ),
    ]
)

CERT_A = b"\x30\x03\x02\x01\x01"  # DER-shaped bytes; the decoder does not parse
CERT_B = b"\x30\x04\x02\x02\x01\x02"
CERTIFICATE_BODY = vec(3, vec(3, CERT_A), vec(3, CERT_B))


def message(msg_type: int, body: bytes, offset: int = 0) -> HandshakeMessage:
    """A message as the assembler returns it, received in one piece."""
    return HandshakeMessage(offset, msg_type, body, ((0, offset + 4),))


def test_server_hello_every_extension() -> None:
    hello = decode_server_hello(message(2, SERVER_HELLO_BODY))
    assert isinstance(hello, ServerHello)
    assert hello.server_version == 0x0303
    assert hello.version == 0x0303
    assert hello.random == RANDOM
    assert hello.session_id == SESSION_ID
    assert hello.cipher_suite == 0xC02F
    assert hello.compression_method == 0
    assert hello.renegotiation_info == b""
    assert hello.extended_master_secret
    assert hello.session_ticket
    assert hello.status_request
    assert hello.alpn_protocol == b"h2"
    assert hello.ec_point_formats == (0, 1)
    assert hello.selected_version is None
    assert [e.extension_type for e in hello.extensions] == [
        0xFF01,
        0x0017,
        0x0023,
        0x0010,
        0x000B,
        0x0005,
        0x7777,
    ]
    assert hello.extensions[-1].data == b"?"
    # type(2) len(2) version(2) random(32) sid(1+32) suite(2) comp(1) extlen(2)
    assert hello.extensions[0].offset == 4 + 2 + 32 + 33 + 2 + 1 + 2


def test_ssl3_server_hello_without_extensions() -> None:
    body = hx("0300") + RANDOM + vec(1) + hx("0035 00")
    hello = decode_server_hello(message(2, body))
    assert isinstance(hello, ServerHello)
    assert hello.version == 0x0300
    assert hello.extensions == ()


def test_tls13_server_hello() -> None:
    key = bytes(range(32))
    body = b"".join(
        [
            hx("0303") + RANDOM + vec(1, SESSION_ID) + hx("1301 00"),
            vec(
                2,
                extension(0x002B, hx("0304")),  # supported_versions
                extension(0x0033, hx("001d"), vec(2, key)),  # key_share x25519
            ),
        ]
    )
    hello = decode_server_hello(message(2, body))
    assert isinstance(hello, ServerHello)
    assert hello.version == 0x0304
    assert hello.server_version == 0x0303
    assert hello.key_share_group == 0x001D
    assert hello.key_share == key


def test_tls13_draft18_server_hello() -> None:
    # Draft 18 layout: version, random, cipher_suite, extensions; no
    # session_id or compression_method. Bytes as arkime_tls13.pcap has them.
    key = bytes(range(32))
    body = b"".join(
        [
            hx("7f12") + RANDOM + hx("1301"),  # draft 18, TLS_AES_128_GCM_SHA256
            vec(2, extension(0x0028, hx("001d"), vec(2, key))),  # draft key_share
        ]
    )
    hello = decode_server_hello(message(2, body))
    assert isinstance(hello, ServerHello)
    assert hello.version == 0x7F12
    assert hello.random == RANDOM
    assert hello.session_id == b""
    assert hello.cipher_suite == 0x1301
    assert hello.compression_method == 0
    assert [e.extension_type for e in hello.extensions] == [0x0028]
    assert hello.key_share is None


def test_tls13_draft22_server_hello_has_session_id() -> None:
    # From draft 22 on, the RFC 8446 layout: the session_id is read.
    body = hx("7f16") + RANDOM + vec(1, SESSION_ID) + hx("1301 00") + vec(2)
    hello = decode_server_hello(message(2, body))
    assert isinstance(hello, ServerHello)
    assert hello.session_id == SESSION_ID


def test_hello_retry_request() -> None:
    body = b"".join(
        [
            hx("0303") + HELLO_RETRY_REQUEST_RANDOM + vec(1, SESSION_ID),
            hx("1302 00"),
            vec(
                2,
                extension(0x002B, hx("0304")),
                extension(0x0033, hx("0017")),  # selected_group secp256r1
                extension(0x002C, vec(2, b"cookie")),
            ),
        ]
    )
    request = decode_server_hello(message(2, body, offset=7))
    assert isinstance(request, HelloRetryRequest)
    assert request.offset == 7
    assert request.cipher_suite == 0x1302
    assert request.selected_version == 0x0304
    assert request.selected_group == 0x0017
    assert request.cookie == b"cookie"


@pytest.mark.parametrize(
    "extension_bytes",
    [
        extension(0x0005, b""),  # status_request (found by scripts/fuzz-tls)
        extension(0x0017, b""),  # extended_master_secret
        extension(0xFF01, vec(1)),  # renegotiation_info
    ],
)
def test_hello_retry_keeps_foreign_extension_raw(extension_bytes: bytes) -> None:
    body = (
        hx("0303")
        + HELLO_RETRY_REQUEST_RANDOM
        + vec(1)
        + hx("1301 00")
        + vec(2, extension(0x002B, hx("0304")), extension_bytes)
    )
    request = decode_server_hello(message(2, body))
    assert isinstance(request, HelloRetryRequest)
    assert request.selected_version == 0x0304
    assert [e.extension_type for e in request.extensions] == [
        0x002B,
        int.from_bytes(extension_bytes[:2], "big"),
    ]


def test_duplicate_extension_first_counts() -> None:
    body = (
        hx("0303")
        + RANDOM
        + vec(1)
        + hx("c02f 00")
        + vec(
            2, extension(0x000B, vec(1, hx("00"))), extension(0x000B, vec(1, hx("01")))
        )
    )
    hello = decode_server_hello(message(2, body))
    assert isinstance(hello, ServerHello)
    assert hello.ec_point_formats == (0,)
    assert len(hello.extensions) == 2


def test_certificate_chain() -> None:
    certificate = decode_certificate(message(11, CERTIFICATE_BODY, offset=100))
    assert certificate == Certificate(
        100, (CERT_A, CERT_B), (104 + 3 + 3, 104 + 3 + 3 + len(CERT_A) + 3)
    )


def test_tls13_certificate() -> None:
    body = vec(1) + vec(
        3, vec(3, CERT_A), vec(2), vec(3, CERT_B), vec(2, hx("0005 0000"))
    )
    certificate = decode_certificate(message(11, body), tls13=True)
    assert certificate.certificates == (CERT_A, CERT_B)
    assert certificate.request_context == b""


def test_certificate_status() -> None:
    status = decode_certificate_status(message(22, hx("01") + vec(3, b"ocsp")))
    assert (status.status_type, status.response) == (1, b"ocsp")


@pytest.mark.parametrize(
    ("version", "body", "schemes"),
    [
        (0x0301, vec(1, hx("01 40")) + vec(2, vec(2, b"CA1"), vec(2, b"CA2")), None),
        (
            0x0303,
            vec(1, hx("01"))
            + vec(2, hx("0401 0804"))
            + vec(2, vec(2, b"CA1"), vec(2, b"CA2")),
            (0x0401, 0x0804),
        ),
    ],
)
def test_certificate_request(
    version: int, body: bytes, schemes: tuple[int, ...] | None
) -> None:
    request = decode_certificate_request(message(13, body), version)
    assert request.signature_algorithms == schemes
    assert request.certificate_authorities == (b"CA1", b"CA2")
    assert request.certificate_types[0] == 1


# Reassembly


def flight_records(fragment_size: int) -> bytes:
    """ServerHello, Certificate and ServerHelloDone cut into records."""
    messages = (
        handshake(2, SERVER_HELLO_BODY)
        + handshake(11, CERTIFICATE_BODY)
        + handshake(14)
    )
    chunks = [
        messages[i : i + fragment_size] for i in range(0, len(messages), fragment_size)
    ]
    return b"".join(record(0x16, 0x0303, chunk) for chunk in chunks)


@pytest.mark.parametrize("fragment_size", [1, 3, 7, 50, 10_000])
def test_reassembly_across_records(fragment_size: int) -> None:
    stream = flight_records(fragment_size)
    records = RecordReader().feed(stream)
    assembler = HandshakeAssembler()
    messages: list[HandshakeMessage] = []
    for item in records:
        assert isinstance(item, TlsRecord)
        messages += assembler.feed(item.fragment, item.fragment_offset)
    assert [m.msg_type for m in messages] == [2, 11, 14]
    assert assembler.buffered == 0
    for item in messages:
        assert stream[item.offset] == item.msg_type
    certificate = decode_certificate(messages[1])
    assert certificate.certificates == (CERT_A, CERT_B)
    for der, offset in zip(
        certificate.certificates, certificate.certificate_offsets, strict=True
    ):
        assert stream[offset] == der[0]


def test_reassembly_every_split() -> None:
    stream = handshake(2, SERVER_HELLO_BODY) + handshake(14)
    for chunks in feedings(stream):
        assembler = HandshakeAssembler()
        out: list[HandshakeMessage] = []
        position = 0
        for chunk in chunks:
            out += assembler.feed(chunk, position)
            position += len(chunk)
        assert [(m.offset, m.msg_type, m.body) for m in out] == [
            (0, 2, SERVER_HELLO_BODY),
            (4 + len(SERVER_HELLO_BODY), 14, b""),
        ]


def test_message_length_limit() -> None:
    assembler = HandshakeAssembler(max_message_len=100)
    with pytest.raises(PeerProtocolError) as info:
        assembler.feed(hx("0b") + u24(101), 40)
    assert str(info.value) == "handshake message length 101 at offset 41 exceeds 100"
    assert (info.value.field, info.value.value, info.value.limit) == (
        "handshake length",
        101,
        100,
    )


def test_messages_before_oversized_one_are_kept() -> None:
    assembler = HandshakeAssembler(max_message_len=100)
    hello_done = handshake(14, b"")
    # ServerHelloDone (4 bytes), then a header claiming 101 bytes.
    (message,) = assembler.feed(hello_done + hx("0b") + u24(101), 40)
    assert (message.offset, message.msg_type, message.body) == (40, 14, b"")
    with pytest.raises(PeerProtocolError) as info:
        assembler.feed(b"", 0)
    assert str(info.value) == "handshake message length 101 at offset 45 exceeds 100"


def test_message_limit_default_allows_big_chain() -> None:
    body = vec(3, vec(3, bytes(100_000)))
    (item,) = HandshakeAssembler().feed(handshake(11, body), 0)
    assert decode_certificate(item).certificates == (bytes(100_000),)


# Malformed messages: (id, decoder, body, message, field)

too_many = vec(3, *[vec(3, b"x")] * (MAX_CERTIFICATES + 1))

MALFORMED = [
    (
        "server-hello-truncated",
        lambda m: decode_server_hello(m),
        hx("0303") + RANDOM[:10],
        "random at offset 6 needs 32 bytes, only 10 remain",
        "random",
    ),
    (
        "session-id-too-long",
        lambda m: decode_server_hello(m),
        hx("0303") + RANDOM + vec(1, bytes(33)) + hx("002f 00"),
        "session_id length 33 at offset 38 is outside 0..32",
        "session_id length",
    ),
    (
        "extensions-trailing-bytes",
        lambda m: decode_server_hello(m),
        hx("0303") + RANDOM + vec(1) + hx("002f 00") + vec(2) + hx("ff"),
        "1 unexpected bytes after extensions at offset 44",
        "extensions",
    ),
    (
        "alpn-two-names",
        lambda m: decode_server_hello(m),
        hx("0303")
        + RANDOM
        + vec(1)
        + hx("002f 00")
        + vec(2, extension(0x0010, vec(2, vec(1, b"h2"), vec(1, b"h3")))),
        "3 unexpected bytes after protocol_name_list (exactly one name) at offset 53",
        "protocol_name_list (exactly one name)",
    ),
    (
        "extended-master-secret-with-data",
        lambda m: decode_server_hello(m),
        hx("0303") + RANDOM + vec(1) + hx("002f 00") + vec(2, extension(0x0017, b"x")),
        "1 unexpected bytes after extended_master_secret at offset 48",
        "extended_master_secret",
    ),
    (
        "certificate-list-overrun",
        lambda m: decode_certificate(m),
        u24(10) + vec(3, b"abc"),
        "certificate_list at offset 7 needs 10 bytes, only 6 remain",
        "certificate_list",
    ),
    (
        "empty-certificate",
        lambda m: decode_certificate(m),
        vec(3, vec(3)),
        "empty ASN.1Cert at offset 7",
        "ASN.1Cert length",
    ),
    (
        "too-many-certificates",
        lambda m: decode_certificate(m),
        too_many,
        f"certificate_list at offset 0 has more than {MAX_CERTIFICATES} certificates",
        "certificate_list",
    ),
    (
        "certificate-trailing-bytes",
        lambda m: decode_certificate(m),
        CERTIFICATE_BODY + b"!",
        f"1 unexpected bytes after certificate_list at offset "
        f"{4 + len(CERTIFICATE_BODY)}",
        "certificate_list",
    ),
    (
        "empty-ocsp-response",
        lambda m: decode_certificate_status(m),
        hx("01") + u24(0),
        "OCSPResponse length 0 at offset 5 is below the minimum of 1",
        "OCSPResponse length",
    ),
    (
        "odd-signature-algorithms",
        lambda m: decode_certificate_request(m, 0x0303),
        vec(1, hx("01")) + vec(2, hx("0401 08")) + vec(2),
        "supported_signature_algorithms length 3 at offset 0 is odd",
        "supported_signature_algorithms length",
    ),
    (
        "server-hello-done-with-body",
        lambda m: expect_empty(m, "ServerHelloDone"),
        hx("00"),
        "1 unexpected bytes after ServerHelloDone at offset 4",
        "ServerHelloDone",
    ),
]


@pytest.mark.parametrize(
    ("decode", "body", "text", "field"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_messages(decode, body: bytes, text: str, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PeerProtocolError) as info:
        decode(message(0, body))
    assert str(info.value) == text
    assert info.value.field == field


@given(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=32),
    st.integers(0, 0xFFFF),
    st.lists(
        st.tuples(st.integers(0x4000, 0xFEFF), st.binary(max_size=30)), max_size=5
    ),
)
def test_server_hello_round_trip(
    random: bytes, session_id: bytes, suite: int, extensions: list[tuple[int, bytes]]
) -> None:
    body = hx("0303") + random + vec(1, session_id) + u16(suite) + hx("00")
    body += vec(2, *[extension(t, d) for t, d in extensions])
    hello = decode_server_hello(message(2, body))
    assert hello.cipher_suite == suite
    assert hello.session_id == session_id
    assert [(e.extension_type, e.data) for e in hello.extensions] == extensions


@given(st.integers(0, 255), st.binary(max_size=200))
def test_decoders_return_or_raise(msg_type: int, body: bytes) -> None:
    item = message(msg_type, body)
    for decode in (
        decode_server_hello,
        decode_certificate,
        decode_certificate_status,
        lambda m: decode_certificate_request(m, 0x0303),
        lambda m: decode_certificate_request(m, 0x0301),
        lambda m: decode_certificate(m, tls13=True),
    ):
        with contextlib.suppress(PeerProtocolError):
            decode(item)
