"""Read pcap and pcapng files, plain or gzip-compressed, up to the first damage.

The format is identified by the first four bytes, never by the file name:

```
 1f 8b .. ..   gzip: decompressed on the fly, then sniffed again
 a1 b2 c3 d4   pcap, microsecond timestamps   (d4 c3 b2 a1 little-endian)
 a1 b2 3c 4d   pcap, nanosecond timestamps    (4d 3c b2 a1 little-endian)
 a1 b2 cd 34   pcap with the 24-byte record headers of Kuznetzov's patch
 0a 0d 0d 0a   pcapng Section Header Block
```

pcap (https://www.tcpdump.org/manpages/pcap-savefile.5.txt): a 24-byte file
header with the link type, then per packet a 16-byte record header (seconds,
fraction, captured length, original length) and the captured bytes.

pcapng (RFC draft-ietf-opsawg-pcapng): blocks of
`type:4 | total length:4 | body | total length:4`. Interface Description
Blocks give each interface its link type and timestamp resolution; Enhanced
and Simple Packet Blocks (and the obsolete Packet Block) carry packets. Other
blocks are skipped.

`read_capture` is an iterator of `Frame`s. When the file is cut short or a
header is impossible, iteration stops and `CaptureReader.damage` says at which
packet number and byte offset (in the decompressed stream) the damage begins.
Only a file that cannot be opened, or whose file header or first section
header is unreadable, raises `CaptureError`, and it does so on opening.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pktscan.errors import CaptureError

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_SHB_TYPE = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAP_MAGIC_MICRO = 0xA1B2C3D4
PCAP_MAGIC_NANO = 0xA1B23C4D
PCAP_MAGIC_MODIFIED = 0xA1B2CD34

PCAP_FILE_HEADER_LEN = 24
# libpcap's MAXIMUM_SNAPLEN (pcap-int.h, libpcap 1.10): larger captured
# lengths are treated as a corrupt record header, as libpcap does.
MAX_CAPTURED_LEN = 262144
# Upper bound for one pcapng block; a larger length is taken as damage.
MAX_PCAPNG_BLOCK_LEN = 16 * 1024 * 1024

PCAPNG_IDB = 0x00000001
PCAPNG_OBSOLETE_PB = 0x00000002
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
PCAPNG_OPTION_END = 0
PCAPNG_IF_TSRESOL = 9

_READ_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Frame:
    """One packet record as stored in the file.

    Attributes:
        number: 1-based packet number, as Wireshark counts.
        timestamp: seconds since the epoch.
        offset: byte offset of the record header in the (decompressed) file.
        linktype: LINKTYPE_* value of the interface that captured it.
        data: the captured bytes, starting with the link-layer header.
        wire_length: the packet's length on the wire, at least len(data).
    """

    number: int
    timestamp: float
    offset: int
    linktype: int
    data: bytes
    wire_length: int


@dataclass(frozen=True, slots=True)
class Damage:
    """The position and reason of damage that stopped reading early.

    Attributes:
        number: number the first unreadable packet would have had.
        offset: byte offset of the damaged record in the (decompressed) file.
        reason: what is wrong, with the values read.
    """

    number: int
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"packet {self.number} at byte offset {self.offset}: {self.reason}"


class _Truncated(Exception):
    """The stream ended, or failed to decompress, inside a structure."""


class _Corrupt(Exception):
    """A header carries a value that no valid file has."""


class _Stream:
    """Exact-length reads over a file object, counting the offset."""

    def __init__(self, handle: io.BufferedIOBase) -> None:
        self._handle = handle
        self._buffer = b""
        self._position = 0
        self.offset = 0

    def _available(self) -> int:
        return len(self._buffer) - self._position

    def _fill(self, size: int) -> None:
        pieces = [self._buffer[self._position :]]
        available = len(pieces[0])
        while available < size:
            try:
                # read1 returns what one decompression step gives, so bytes
                # before a corrupt or cut gzip tail still reach the caller.
                chunk = self._handle.read1(_READ_CHUNK)
            except (OSError, EOFError, zlib.error) as exc:
                self._buffer, self._position = b"".join(pieces), 0
                raise _Truncated(f"decompression failed: {exc}") from exc
            if not chunk:
                break
            pieces.append(chunk)
            available += len(chunk)
        self._buffer, self._position = b"".join(pieces), 0

    def read(self, size: int, *, eof_ok: bool = False) -> bytes:
        """Read exactly size bytes, or b"" at the end of file when eof_ok."""
        if self._available() < size:
            self._fill(size)
        available = self._available()
        if available == 0 and eof_ok:
            return b""
        if available < size:
            raise _Truncated(
                f"file ends after {available} of {size} bytes of the record"
            )
        data = self._buffer[self._position : self._position + size]
        self._position += size
        self.offset += size
        return data


class CaptureReader:
    """Iterate over the frames of a capture file.

    Attributes:
        path: the file.
        format: "pcap" or "pcapng".
        compressed: whether the file was gzip-compressed.
        damage: set when iteration stopped early because of damage.
        frames_read: frames returned so far.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.damage: Damage | None = None
        self.frames_read = 0
        self.compressed = False
        self._order = "<"
        self._handle = self._open()
        self._stream = _Stream(self._handle)
        try:
            self._head = self._peek_magic()
            is_pcapng = self._head == PCAPNG_SHB_TYPE.to_bytes(4, "big")
            self.format = "pcapng" if is_pcapng else "pcap"
            if is_pcapng:
                self._first_block = self._read_section_header()
            else:
                self._layout = self._read_pcap_header()
        except BaseException:
            self._handle.close()
            raise

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        frames = self._pcapng_frames() if self.format == "pcapng" else self._pcap()
        yield from frames

    def _fail(self, reason: str) -> CaptureError:
        return CaptureError(
            f"cannot read capture file {self.path}: {reason}",
            hint="pass a pcap or pcapng file, optionally gzip-compressed",
        )

    def _open(self) -> io.BufferedIOBase:
        try:
            handle: io.BufferedIOBase = self.path.open("rb")
            magic = handle.read(2)
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from exc
        handle.seek(0)
        if magic == GZIP_MAGIC:
            self.compressed = True
            handle.close()
            return gzip.GzipFile(self.path, "rb")
        return handle

    def _peek_magic(self) -> bytes:
        try:
            head = self._stream.read(4, eof_ok=True)
        except _Truncated as exc:
            raise self._fail(str(exc)) from exc
        if not head:
            raise self._fail("the file is empty")
        known = {
            PCAPNG_SHB_TYPE.to_bytes(4, "big"),
            *(
                magic.to_bytes(4, order)
                for magic in (PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO, PCAP_MAGIC_MODIFIED)
                for order in ("big", "little")
            ),
        }
        if head not in known:
            raise self._fail(
                f"unknown magic number {head.hex()}, not a pcap or pcapng file"
            )
        return head

    def _stop(self, offset: int, reason: str) -> None:
        self.damage = Damage(self.frames_read + 1, offset, reason)

    # pcap

    def _read_pcap_header(self) -> tuple[str, int, float, int]:
        """Return (byte order, record header length, divisor, link type)."""
        magic_big = int.from_bytes(self._head, "big")
        order = ">" if magic_big in (PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO) else "<"
        magic = int.from_bytes(self._head, "big" if order == ">" else "little")
        try:
            rest = self._stream.read(PCAP_FILE_HEADER_LEN - 4)
        except _Truncated as exc:
            raise self._fail(f"file header cut short: {exc}") from exc
        _, _, _, _, _, linktype = struct.unpack(order + "HHiIII", rest)
        linktype &= 0x0FFFFFFF  # the high bits carry FCS information
        divisor = 1e9 if magic == PCAP_MAGIC_NANO else 1e6
        header_len = 24 if magic == PCAP_MAGIC_MODIFIED else 16
        return order, header_len, divisor, linktype

    def _pcap(self) -> Iterator[Frame]:
        order, header_len, divisor, linktype = self._layout
        while True:
            offset = self._stream.offset
            try:
                frame = self._pcap_record(order, header_len, divisor, linktype)
            except (_Truncated, _Corrupt) as exc:
                self._stop(offset, str(exc))
                return
            if frame is None:
                return
            self.frames_read += 1
            yield frame

    def _pcap_record(
        self, order: str, header_len: int, divisor: float, linktype: int
    ) -> Frame | None:
        offset = self._stream.offset
        header = self._stream.read(header_len, eof_ok=True)
        if not header:
            return None
        seconds, fraction, captured, original = struct.unpack(
            order + "IIII", header[:16]
        )
        if captured > MAX_CAPTURED_LEN:
            raise _Corrupt(
                f"record header gives captured length {captured}, "
                f"above the maximum {MAX_CAPTURED_LEN}"
            )
        data = self._stream.read(captured)
        return Frame(
            self.frames_read + 1,
            seconds + fraction / divisor,
            offset,
            linktype,
            data,
            max(original, captured),
        )

    # pcapng

    def _read_section_header(self) -> tuple[int, bytes, str]:
        try:
            block = self._pcapng_block(first=True)
        except (_Truncated, _Corrupt) as exc:
            raise self._fail(f"section header unreadable: {exc}") from exc
        assert block is not None  # the first block's type bytes were read
        return block

    def _pcapng_frames(self) -> Iterator[Frame]:
        section = _PcapngSection()
        block: tuple[int, bytes, str] | None = self._first_block
        offset = 0
        while True:
            if block is None:
                offset = self._stream.offset
                try:
                    block = self._pcapng_block(first=False)
                except (_Truncated, _Corrupt) as exc:
                    self._stop(offset, str(exc))
                    return
                if block is None:
                    return
            block_type, body, order = block
            block = None
            try:
                frame = section.handle(block_type, body, order, offset)
            except _Corrupt as exc:
                self._stop(offset, str(exc))
                return
            if frame is not None:
                self.frames_read += 1
                yield Frame(
                    self.frames_read,
                    frame.timestamp,
                    frame.offset,
                    frame.linktype,
                    frame.data,
                    frame.wire_length,
                )

    def _pcapng_block(self, first: bool) -> tuple[int, bytes, str] | None:
        type_bytes = self._head if first else self._stream.read(4, eof_ok=True)
        if not type_bytes:
            return None
        length_bytes = self._stream.read(4)

        prefix = b""
        if type_bytes == PCAPNG_SHB_TYPE.to_bytes(4, "big"):
            # The byte-order magic follows the length and sets the order of
            # every field in the section, this block's length included.
            prefix = self._stream.read(4)
            self._order = _section_byte_order(prefix)
        elif first:
            raise _Corrupt("the file does not start with a section header")
        order = self._order
        block_type = struct.unpack(order + "I", type_bytes)[0]
        total = struct.unpack(order + "I", length_bytes)[0]

        if total < 12 + len(prefix) or total % 4 or total > MAX_PCAPNG_BLOCK_LEN:
            raise _Corrupt(
                f"block type 0x{block_type:08x} gives total length {total}, "
                f"expected a multiple of 4 from 12 to {MAX_PCAPNG_BLOCK_LEN}"
            )
        body = prefix + self._stream.read(total - 12 - len(prefix))
        trailer = struct.unpack(order + "I", self._stream.read(4))[0]
        if trailer != total:
            raise _Corrupt(
                f"block type 0x{block_type:08x} starts with total length {total} "
                f"but ends with {trailer}"
            )
        return block_type, body, order


def _section_byte_order(magic: bytes) -> str:
    if int.from_bytes(magic, "little") == PCAPNG_BYTE_ORDER_MAGIC:
        return "<"
    if int.from_bytes(magic, "big") == PCAPNG_BYTE_ORDER_MAGIC:
        return ">"
    raise _Corrupt(
        f"section header byte-order magic {magic.hex()} "
        "is not 1a2b3c4d in either byte order"
    )


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units_per_second: int


class _PcapngSection:
    """Interfaces of the current section and block decoding."""

    def __init__(self) -> None:
        self.interfaces: list[_Interface] = []

    def handle(
        self, block_type: int, body: bytes, order: str, offset: int
    ) -> Frame | None:
        if block_type == PCAPNG_SHB_TYPE:
            self.interfaces = []
            return None
        if block_type == PCAPNG_IDB:
            self.interfaces.append(_parse_idb(body, order))
            return None
        if block_type in (PCAPNG_EPB, PCAPNG_OBSOLETE_PB):
            obsolete = block_type == PCAPNG_OBSOLETE_PB
            return self._enhanced_packet(body, order, offset, obsolete)
        if block_type == PCAPNG_SPB:
            return self._simple_packet(body, order, offset)
        return None

    def _interface(self, interface_id: int) -> _Interface:
        if interface_id >= len(self.interfaces):
            raise _Corrupt(
                f"packet names interface {interface_id} but the section "
                f"describes {len(self.interfaces)} interfaces"
            )
        return self.interfaces[interface_id]

    def _enhanced_packet(
        self, body: bytes, order: str, offset: int, obsolete: bool
    ) -> Frame:
        if len(body) < 20:
            raise _Corrupt(f"packet block body of {len(body)} bytes, expected >= 20")
        # The obsolete Packet Block has a 2-byte interface id and drops count
        # where the Enhanced Packet Block has a 4-byte interface id.
        layout = "HxxIIII" if obsolete else "IIIII"
        interface_id, high, low, captured, original = struct.unpack(
            order + layout, body[:20]
        )
        interface = self._interface(interface_id)
        if captured > len(body) - 20:
            raise _Corrupt(
                f"packet block gives captured length {captured} but contains "
                f"{len(body) - 20} bytes"
            )
        units = (high << 32) | low
        return Frame(
            0,
            units / interface.units_per_second,
            offset,
            interface.linktype,
            body[20 : 20 + captured],
            max(original, captured),
        )

    def _simple_packet(self, body: bytes, order: str, offset: int) -> Frame:
        if len(body) < 4:
            raise _Corrupt(
                f"simple packet block body of {len(body)} bytes, expected >= 4"
            )
        interface = self._interface(0)
        original = struct.unpack(order + "I", body[:4])[0]
        captured = min(original, len(body) - 4)
        if interface.snaplen:
            captured = min(captured, interface.snaplen)
        return Frame(
            0, 0.0, offset, interface.linktype, body[4 : 4 + captured], original
        )


def _parse_idb(body: bytes, order: str) -> _Interface:
    if len(body) < 8:
        raise _Corrupt(f"interface block body of {len(body)} bytes, expected >= 8")
    linktype, _, snaplen = struct.unpack(order + "HHI", body[:8])
    units = 1_000_000
    position = 8
    while position + 4 <= len(body):
        code, length = struct.unpack(order + "HH", body[position : position + 4])
        value = body[position + 4 : position + 4 + length]
        if code == PCAPNG_OPTION_END:
            break
        if code == PCAPNG_IF_TSRESOL and length == 1:
            units = _resolution(value[0])
        position += 4 + length + (-length % 4)
    return _Interface(linktype, snaplen, units)


def _resolution(tsresol: int) -> int:
    # High bit set: a negative power of 2; clear: a negative power of 10.
    exponent = tsresol & 0x7F
    if exponent > 60:
        raise _Corrupt(f"if_tsresol 0x{tsresol:02x} is beyond any clock resolution")
    base = 2 if tsresol & 0x80 else 10
    return int(base**exponent)


def read_capture(path: Path) -> CaptureReader:
    """Open a capture file for iteration.

    Raises:
        CaptureError: the file is missing, unreadable, empty, or not pcap or
            pcapng (compressed or not).
    """
    return CaptureReader(path)
