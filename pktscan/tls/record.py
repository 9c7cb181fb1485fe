"""Incremental parser of SSL 3.0/TLS records and SSL 2.0 records.

Bytes in; records and the number of bytes consumed out. Input that ends in
the middle of a record is not an error: the caller keeps the unconsumed
tail and calls again with more bytes. Each record keeps the stream offset
of its first header byte. The formats are those of RFC 5246 6.2.1 and
RFC 8446 5.1 for TLS, and of the SSL 2.0 draft (draft-hickman-netscape-
ssl-00, "Record Header") for SSL 2.0::

    TLS record, 5-byte header:

     0        1        2        3        4
    +--------+--------+--------+--------+--------+---------------
    |  type  | major  | minor  |   length (BE)   | fragment ...
    | 20..26 |  0x03  |        |  <= 2^14 + 2048 |
    +--------+--------+--------+--------+--------+---------------

    SSL 2.0 record, 2-byte header (high bit of byte 0 set):

     0        1        2
    +--------+--------+--------+------------
    |1 len_hi| len_lo | msg_type | body ...     length = 15 bits
    +--------+--------+--------+------------

    SSL 2.0 record, 3-byte header (high bit of byte 0 clear):

     0        1        2
    +--------+--------+--------+------------
    |0 E hi  | len_lo | padding| body ...     length = 14 bits,
    +--------+--------+--------+------------  E = is-escape bit

How the framing of a server's reply is recognised, from its first bytes:

- byte 0 is a TLS content type (20-26) and byte 1 is 0x03: TLS records;
- byte 0 has its high bit set, byte 2 is SERVER-HELLO (4) or ERROR (0),
  and the 15-bit length fits that message (ERROR is 3 bytes, SERVER-HELLO
  at least 11): SSL 2.0 records;
- anything else is not TLS. An HTTP status line ("HTTP/1.1 400"), an SSH
  banner ("SSH-2.0-") or an SMTP or FTP greeting ("220 ") starts with an
  ASCII byte, whose high bit is clear, so it is never taken for SSL 2.0.
  The 3-byte SSL 2.0 header, whose first byte may be ASCII, is accepted
  only after an SSL 2.0 first record has fixed the framing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pktscan.errors import PeerProtocolError
from pktscan.tls.constants import ContentType, SSLv2MessageType

Framing = Literal["tls", "sslv2"]

TLS_HEADER_LEN: Final = 5
# RFC 5246 6.2.3: TLSCiphertext.length MUST NOT exceed 2^14 + 2048. Also the
# bound for plaintext records, which RFC 5246 6.2.1 caps lower, at 2^14.
MAX_TLS_RECORD_LEN: Final = 2**14 + 2048
MAX_SSLV2_2BYTE_LEN: Final = 0x7FFF  # 15-bit length field
MAX_SSLV2_3BYTE_LEN: Final = 0x3FFF  # 14-bit length field
SSLV2_ERROR_LEN: Final = 3  # msg_type(1) | error_code(2)
MIN_SSLV2_SERVER_HELLO_LEN: Final = 11  # fixed fields of SERVER-HELLO
NON_TLS_PREVIEW_LEN: Final = 16  # bytes of a non-TLS reply quoted in errors

_TLS_CONTENT_TYPES: Final = frozenset(int(t) for t in ContentType)
_EMPTY_FORBIDDEN: Final = frozenset(
    {ContentType.change_cipher_spec, ContentType.alert, ContentType.handshake}
)


class NotTlsError(PeerProtocolError):
    """The peer's first bytes are neither a TLS nor an SSL 2.0 record."""


@dataclass(frozen=True, slots=True)
class TlsRecord:
    """One SSL 3.0/TLS record; `offset` is the stream offset of its header."""

    offset: int
    content_type: int
    version: int
    fragment: bytes

    @property
    def fragment_offset(self) -> int:
        """Stream offset of the fragment's first byte."""
        return self.offset + TLS_HEADER_LEN


@dataclass(frozen=True, slots=True)
class SSLv2Record:
    """One SSL 2.0 record; `offset` is the stream offset of its header.

    `body` is the record data without the trailing padding bytes. Before
    the handshake completes, records carry no MAC, so `body` is one whole
    SSL 2.0 message.
    """

    offset: int
    header_len: int
    is_escape: bool
    padding_len: int
    body: bytes

    @property
    def fragment_offset(self) -> int:
        """Stream offset of the body's first byte."""
        return self.offset + self.header_len


Record = TlsRecord | SSLv2Record


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Result of one `parse_records` call."""

    records: tuple[Record, ...]
    consumed: int
    framing: Framing | None


def _not_tls(data: bytes, offset: int) -> NotTlsError:
    preview = bytes(data[:NON_TLS_PREVIEW_LEN])
    return NotTlsError(
        f"reply at offset {offset} is not TLS or SSL 2.0: starts {preview!r}",
        offset=offset,
        field="record header",
        value=preview,
    )


def detect_framing(data: bytes, offset: int = 0) -> Framing | None:
    """Tell the record framing of a reply from its first bytes.

    Returns:
        "tls" or "sslv2", or None when more bytes are needed to tell.

    Raises:
        NotTlsError: the bytes are neither framing.
    """
    if not data:
        return None
    first = data[0]
    if first in _TLS_CONTENT_TYPES:
        if len(data) < 2:
            return None
        if data[1] == 0x03:
            return "tls"
        raise _not_tls(data, offset)
    if first & 0x80 == 0:
        raise _not_tls(data, offset)
    if len(data) < 3:
        return None
    length = ((first & 0x7F) << 8) | data[1]
    msg_type = data[2]
    if msg_type == SSLv2MessageType.ERROR and length == SSLV2_ERROR_LEN:
        return "sslv2"
    server_hello = SSLv2MessageType.SERVER_HELLO
    if msg_type == server_hello and length >= MIN_SSLV2_SERVER_HELLO_LEN:
        return "sslv2"
    raise _not_tls(data, offset)


def _parse_tls_record(data: bytes, start: int, offset: int) -> TlsRecord | None:
    if len(data) - start < TLS_HEADER_LEN:
        return None
    content_type = data[start]
    version = int.from_bytes(data[start + 1 : start + 3], "big")
    length = int.from_bytes(data[start + 3 : start + 5], "big")

    if content_type not in _TLS_CONTENT_TYPES:
        raise PeerProtocolError(
            f"record content_type {content_type} at offset {offset} is not 20-26",
            offset=offset,
            field="content_type",
            value=content_type,
            limit="20..26",
        )
    if version >> 8 != 0x03:
        raise PeerProtocolError(
            f"record version 0x{version:04x} at offset {offset + 1} is not 0x03XX",
            offset=offset + 1,
            field="version",
            value=version,
            limit="0x0300..0x03ff",
        )
    _check_tls_length(content_type, length, offset + 3)

    end = start + TLS_HEADER_LEN + length
    if len(data) < end:
        return None
    fragment = bytes(data[start + TLS_HEADER_LEN : end])
    return TlsRecord(offset, content_type, version, fragment)


def _check_tls_length(content_type: int, length: int, offset: int) -> None:
    if length > MAX_TLS_RECORD_LEN:
        raise PeerProtocolError(
            f"record length {length} at offset {offset} exceeds {MAX_TLS_RECORD_LEN}",
            offset=offset,
            field="length",
            value=length,
            limit=MAX_TLS_RECORD_LEN,
        )
    if length == 0 and content_type in _EMPTY_FORBIDDEN:
        # RFC 5246 6.2.1: no zero-length Handshake, Alert or ChangeCipherSpec.
        name = ContentType(content_type).name
        raise PeerProtocolError(
            f"empty {name} record at offset {offset - 3}",
            offset=offset,
            field="length",
            value=0,
            limit=">=1",
        )


def _parse_sslv2_record(data: bytes, start: int, offset: int) -> SSLv2Record | None:
    if len(data) - start < 2:
        return None
    first = data[start]
    two_byte = bool(first & 0x80)
    header_len = 2 if two_byte else 3
    if len(data) - start < header_len:
        return None
    if two_byte:
        length = ((first & 0x7F) << 8) | data[start + 1]
        is_escape, padding_len = False, 0
    else:
        length = ((first & 0x3F) << 8) | data[start + 1]
        is_escape, padding_len = bool(first & 0x40), data[start + 2]

    if length == 0 or padding_len > length:
        raise PeerProtocolError(
            f"SSL 2.0 record length {length} at offset {offset} is empty or "
            f"shorter than its padding of {padding_len} bytes",
            offset=offset,
            field="record length",
            value=length,
            limit=f">={max(padding_len, 1)}",
        )

    end = start + header_len + length
    if len(data) < end:
        return None
    body = bytes(data[start + header_len : end - padding_len])
    return SSLv2Record(offset, header_len, is_escape, padding_len, body)


def parse_records(
    data: bytes, *, stream_offset: int = 0, framing: Framing | None = None
) -> RecordBatch:
    """Parse every complete record at the start of `data`.

    Args:
        data: bytes received, starting at a record boundary.
        stream_offset: stream offset of `data[0]`, used in records and errors.
        framing: the framing fixed by an earlier call, or None to detect it
            from the first bytes.

    Returns:
        The complete records, the number of bytes they span, and the
        framing (None if too few bytes arrived to tell).

    Raises:
        NotTlsError: the first bytes of the reply are not TLS or SSL 2.0.
        PeerProtocolError: a record header breaks a limit.
    """
    batch, error = _parse_until_error(data, stream_offset, framing)
    if error is not None:
        raise error
    return batch


def _parse_until_error(
    data: bytes, stream_offset: int, framing: Framing | None
) -> tuple[RecordBatch, PeerProtocolError | None]:
    """Parse like `parse_records`, but return the records before an error."""
    if framing is None:
        try:
            framing = detect_framing(data, stream_offset)
        except NotTlsError as not_tls:
            return RecordBatch((), 0, None), not_tls
        if framing is None:
            return RecordBatch((), 0, None), None

    parse = _parse_tls_record if framing == "tls" else _parse_sslv2_record
    records: list[Record] = []
    position = 0
    failure: PeerProtocolError | None = None
    while position < len(data):
        try:
            parsed = parse(data, position, stream_offset + position)
        except PeerProtocolError as caught:
            failure = caught
            break
        if parsed is None:
            break
        records.append(parsed)
        position = parsed.fragment_offset - stream_offset + _record_span(parsed)
    return RecordBatch(tuple(records), position, framing), failure


def _record_span(record: Record) -> int:
    """Number of bytes after the header: fragment, or body plus padding."""
    if isinstance(record, TlsRecord):
        return len(record.fragment)
    return len(record.body) + record.padding_len


class RecordReader:
    """Buffers a byte stream and returns its records as they complete.

    When complete records are followed by a malformed record header in the
    same call, `feed` returns those records and stores the error in
    `error`. The next call to `feed` raises it. The stream cannot be
    resynchronised after an error, so the caller should stop feeding.
    """

    def __init__(self, framing: Framing | None = None) -> None:
        self.framing: Framing | None = framing
        self.error: PeerProtocolError | None = None
        self._buffer = bytearray()
        self._buffer_offset = 0
        self._checked_record_len = 0

    @property
    def buffered(self) -> int:
        """Number of bytes received that no complete record covers yet."""
        return len(self._buffer)

    @property
    def offset(self) -> int:
        """Stream offset of the next byte to be fed."""
        return self._buffer_offset + len(self._buffer)

    def feed(self, data: bytes) -> list[Record]:
        """Add received bytes and return the records they complete.

        Raises:
            NotTlsError: the reply does not start with a TLS or SSL 2.0
                record.
            PeerProtocolError: a record header breaks a limit, and no
                complete record precedes it in this call.
        """
        if self.error is not None:
            raise self.error
        self._buffer += data
        if len(self._buffer) < self._checked_record_len:
            return []  # still inside a record whose header was checked
        batch, error = _parse_until_error(
            bytes(self._buffer), self._buffer_offset, self.framing
        )
        self.framing = batch.framing
        del self._buffer[: batch.consumed]
        self._buffer_offset += batch.consumed
        self._checked_record_len = self._next_record_len() if error is None else 0
        if error is not None:
            self.error = error
            if not batch.records:
                raise error
        return list(batch.records)

    def _next_record_len(self) -> int:
        """Length of the TLS record at the buffer's start, 0 if unknown yet.

        Called after a parse without error, so a complete header here has
        passed its checks.
        """
        if self.framing != "tls" or len(self._buffer) < TLS_HEADER_LEN:
            return 0
        return TLS_HEADER_LEN + int.from_bytes(self._buffer[3:5], "big")
