"""Tests of the incremental record parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tls_bytes import feedings, hx, record, sslv2_record, sslv2_record3, u16

from pktscan.errors import PeerProtocolError
from pktscan.tls.record import (
    MAX_TLS_RECORD_LEN,
    NotTlsError,
    Record,
    RecordReader,
    SSLv2Record,
    TlsRecord,
    detect_framing,
    parse_records,
)

ALERT = record(0x15, 0x0303, hx("02 28"))  # fatal handshake_failure
HANDSHAKE = record(0x16, 0x0303, hx("0e 000000"))  # ServerHelloDone
SSLV2_ERROR = sslv2_record(hx("00 0001"))  # ERROR, NO-CIPHER-ERROR
SSLV2_HELLO = sslv2_record(
    hx("04 00 01 0002"),  # SERVER-HELLO, no session hit, X.509, SSL 2.0
    u16(3),  # certificate_length
    u16(3),  # cipher_specs_length
    u16(16),  # connection_id_length
    b"DER",
    hx("010080"),  # SSL_CK_RC4_128_WITH_MD5
    bytes(16),
)


def read_all(chunks: list[bytes]) -> list[Record]:
    reader = RecordReader()
    records: list[Record] = []
    for chunk in chunks:
        records += reader.feed(chunk)
    assert reader.buffered == 0
    return records


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (ALERT, [TlsRecord(0, 0x15, 0x0303, hx("02 28"))]),
        (
            HANDSHAKE + ALERT,
            [
                TlsRecord(0, 0x16, 0x0303, hx("0e 000000")),
                TlsRecord(9, 0x15, 0x0303, hx("02 28")),
            ],
        ),
        (SSLV2_ERROR, [SSLv2Record(0, 2, False, 0, hx("00 0001"))]),
        (
            SSLV2_HELLO + sslv2_record3(2, hx("06 aabb 0000")),
            [
                SSLv2Record(0, 2, False, 0, SSLV2_HELLO[2:]),
                SSLv2Record(len(SSLV2_HELLO), 3, False, 2, hx("06 aabb")),
            ],
        ),
    ],
    ids=["alert", "two-records", "sslv2-error", "sslv2-3-byte-header"],
)
def test_records_every_feeding(stream: bytes, expected: list[Record]) -> None:
    for chunks in feedings(stream):
        assert read_all(chunks) == expected


def test_trailing_partial_record_kept() -> None:
    stream = HANDSHAKE + ALERT[:4]
    batch = parse_records(stream)
    assert batch.records == (TlsRecord(0, 0x16, 0x0303, hx("0e 000000")),)
    assert batch.consumed == len(HANDSHAKE)
    assert batch.framing == "tls"


def test_stream_offset_carried() -> None:
    reader = RecordReader()
    reader.feed(HANDSHAKE)
    (alert,) = reader.feed(ALERT)
    assert alert.offset == len(HANDSHAKE)
    assert alert.fragment_offset == len(HANDSHAKE) + 5


@pytest.mark.parametrize(
    "data", [b"", hx("16"), hx("84"), hx("84 00")], ids=["empty", "1", "2a", "2b"]
)
def test_framing_needs_more(data: bytes) -> None:
    assert detect_framing(data) is None
    assert parse_records(data).records == ()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        b"220 mail.example.test ESMTP ready\r\n",
        b"220-FTP server ready\r\n",
        b"<html><body>bad request</body></html>",
        b"\x00\x00\x00\x00",
        hx("ff ff ff ff"),  # high bit set, but msg_type 0xff
        hx("80 05 00 0001"),  # ERROR with a wrong length (5, not 3)
        hx("80 05 04 0000"),  # SERVER-HELLO shorter than 11 bytes
        hx("16 02 00"),  # content type, but not version 3.x
    ],
)
def test_non_tls_replies(reply: bytes) -> None:
    with pytest.raises(NotTlsError, match=r"is not TLS or SSL 2\.0") as info:
        parse_records(reply, stream_offset=0)
    assert info.value.offset == 0
    assert info.value.field == "record header"
    assert info.value.value == reply[:16]


def test_ascii_never_sslv2() -> None:
    for first in range(0x20, 0x7F):
        data = bytes([first]) + b"\x05\x04" + bytes(20)
        with pytest.raises(NotTlsError):
            detect_framing(data)


MALFORMED = [
    (
        "tls-length-over-limit",
        hx("16 0303") + u16(MAX_TLS_RECORD_LEN + 1),
        None,
        f"record length {MAX_TLS_RECORD_LEN + 1} at offset 3 exceeds "
        f"{MAX_TLS_RECORD_LEN}",
        ("length", MAX_TLS_RECORD_LEN + 1, MAX_TLS_RECORD_LEN, 3),
    ),
    (
        "bad-content-type-later",
        HANDSHAKE + hx("30 0303 0001 00"),
        None,
        "record content_type 48 at offset 9 is not 20-26",
        ("content_type", 48, "20..26", 9),
    ),
    (
        "bad-version-later",
        HANDSHAKE + hx("16 0403 0001 00"),
        None,
        "record version 0x0403 at offset 10 is not 0x03XX",
        ("version", 0x0403, "0x0300..0x03ff", 10),
    ),
    (
        "empty-handshake-record",
        hx("16 0303 0000"),
        None,
        "empty handshake record at offset 0",
        ("length", 0, ">=1", 3),
    ),
    (
        "empty-alert-record",
        hx("15 0301 0000"),
        None,
        "empty alert record at offset 0",
        ("length", 0, ">=1", 3),
    ),
    (
        "sslv2-empty-record",
        SSLV2_ERROR + hx("80 00"),
        None,
        "SSL 2.0 record length 0 at offset 5 is empty or shorter than its "
        "padding of 0 bytes",
        ("record length", 0, ">=1", 5),
    ),
    (
        "sslv2-padding-over-length",
        hx("00 02 05 aabb"),
        "sslv2",
        "SSL 2.0 record length 2 at offset 0 is empty or shorter than its "
        "padding of 5 bytes",
        ("record length", 2, ">=5", 0),
    ),
]


@pytest.mark.parametrize(
    ("data", "framing", "message", "details"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_records(
    data: bytes,
    framing: str | None,
    message: str,
    details: tuple[str, object, object, int],
) -> None:
    with pytest.raises(PeerProtocolError) as info:
        parse_records(data, framing=framing)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert (
        info.value.field,
        info.value.value,
        info.value.limit,
        info.value.offset,
    ) == (details)


def test_empty_application_data_allowed() -> None:
    batch = parse_records(record(0x17, 0x0303))
    assert batch.records == (TlsRecord(0, 0x17, 0x0303, b""),)


def test_max_length_record_accepted() -> None:
    data = record(0x17, 0x0303, bytes(MAX_TLS_RECORD_LEN))
    assert parse_records(data).consumed == len(data)


tls_records = st.lists(
    st.tuples(
        st.integers(20, 26),
        st.integers(0x0300, 0x03FF),
        st.binary(min_size=1, max_size=300),
    ),
    min_size=1,
    max_size=8,
)


@given(tls_records, st.integers(0, 10**6))
def test_tls_round_trip(fields: list[tuple[int, int, bytes]], start: int) -> None:
    stream = b"".join(record(*item) for item in fields)
    batch = parse_records(stream, stream_offset=start)
    assert batch.consumed == len(stream)
    assert [(r.content_type, r.version, r.fragment) for r in batch.records] == fields  # type: ignore[union-attr]
    offsets = [r.offset for r in batch.records]
    assert offsets[0] == start


@given(st.lists(st.binary(min_size=1, max_size=400), min_size=1, max_size=5))
def test_sslv2_round_trip(bodies: list[bytes]) -> None:
    stream = SSLV2_ERROR + b"".join(sslv2_record(body) for body in bodies)
    records = parse_records(stream).records
    assert [r.body for r in records[1:]] == bodies  # type: ignore[union-attr]


@given(st.binary(max_size=300), st.sampled_from([None, "tls", "sslv2"]))
def test_arbitrary_bytes_return_or_raise(data: bytes, framing: str | None) -> None:
    try:
        batch = parse_records(data, framing=framing)  # type: ignore[arg-type]
    except PeerProtocolError:
        return
    assert 0 <= batch.consumed <= len(data)


def test_reader_returns_records_before_error() -> None:
    reader = RecordReader()
    records = reader.feed(HANDSHAKE + hx("30 0303 0001 00"))
    assert records == [TlsRecord(0, 0x16, 0x0303, hx("0e 000000"))]
    assert reader.error is not None
    assert reader.error.offset == 9
    with pytest.raises(PeerProtocolError, match="content_type 48 at offset 9"):
        reader.feed(b"")


def test_reader_raises_error_without_records() -> None:
    reader = RecordReader()
    with pytest.raises(NotTlsError):
        reader.feed(b"SSH-2.0-x\r\n")


def test_header_checked_when_it_completes() -> None:
    header = hx("16 0303") + u16(MAX_TLS_RECORD_LEN + 1)
    reader = RecordReader()
    for byte in header[:-1]:
        assert reader.feed(bytes([byte])) == []
    with pytest.raises(PeerProtocolError, match="exceeds"):
        reader.feed(header[-1:])


def test_record_completes_after_many_feeds() -> None:
    data = record(0x17, 0x0303, bytes(range(200)))
    reader = RecordReader()
    results = [reader.feed(data[i : i + 7]) for i in range(0, len(data), 7)]
    assert sum(len(r) for r in results) == 1
    assert results[-1] == [TlsRecord(0, 0x17, 0x0303, bytes(range(200)))]
