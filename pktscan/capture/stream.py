"""Reassemble one direction of a TCP connection into a byte stream.

Segments are placed by sequence number relative to the initial sequence
number (RFC 9293 section 3.4), so their capture order does not matter:

- a segment whose bytes were all seen before is a retransmission, and if its
  bytes differ from the first copy the overlap is counted as conflicting
  (the first copy is kept, as Linux and the BSDs do for received data);
- a segment that overlaps the end of the stream contributes only its new
  bytes;
- bytes that never arrived, or that the snapshot length cut off, are a `Gap`.
  `Stream.data` is the contiguous prefix up to the first gap, since nothing
  after a gap can be parsed reliably.

Sequence numbers wrap modulo 2**32; a segment that starts up to 2**31 bytes
before the stream's first byte (data sent before the capture began) is
ignored.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

SEQUENCE_MODULUS = 1 << 32
HALF_SEQUENCE_SPACE = 1 << 31


@dataclass(frozen=True, slots=True)
class Gap:
    """Stream bytes [start, end) that are missing from the capture.

    Attributes:
        start, end: stream offsets.
        number: packet number of the first segment after the gap, or of the
            truncated segment when reason is "snaplen".
        reason: "missing" (never captured) or "snaplen" (cut off).
    """

    start: int
    end: int
    number: int
    reason: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """Stream bytes [offset, offset + length) taken from one packet."""

    offset: int
    length: int
    number: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class Stream:
    """The reassembled bytes one side sent.

    Attributes:
        data: contiguous bytes from stream offset 0 up to the first gap.
        chunks: which packet supplied each part of the stream, in stream order.
        gaps: missing ranges, in stream order.
        retransmissions: segments whose bytes had all been seen before.
        conflicting_overlaps: overlaps whose bytes differed from the first copy.
        out_of_order: segments that arrived after a segment with higher
            sequence numbers.
    """

    data: bytes = b""
    chunks: tuple[Chunk, ...] = ()
    gaps: tuple[Gap, ...] = ()
    retransmissions: int = 0
    conflicting_overlaps: int = 0
    out_of_order: int = 0

    def packet_at(self, offset: int) -> Chunk | None:
        """Return the chunk that supplied the byte at a stream offset."""
        index = bisect.bisect_right(self.chunks, offset, key=_chunk_offset) - 1
        if index < 0:
            return None
        chunk = self.chunks[index]
        return chunk if offset < chunk.offset + chunk.length else None

    def last_packet_between(self, start: int, end: int) -> Chunk | None:
        """Return the chunk of [start, end) whose packet came last in the file.

        When segments arrive out of order, that packet is the one that
        completed the range.
        """
        overlapping = [
            chunk
            for chunk in self.chunks
            if chunk.offset < end and start < chunk.offset + chunk.length
        ]
        return max(overlapping, key=_chunk_number, default=None)


def _chunk_offset(chunk: Chunk) -> int:
    return chunk.offset


def _chunk_number(chunk: Chunk) -> int:
    return chunk.number


@dataclass(slots=True)
class _Piece:
    offset: int
    payload: bytes
    number: int
    timestamp: float
    missing: int


@dataclass(slots=True)
class StreamBuilder:
    """Collect one direction's segments, then build its `Stream`.

    `base` is the sequence number of stream offset 0: the SYN's sequence
    number plus one, or the first data segment's when no SYN was captured.
    """

    base: int | None = None
    pieces: list[_Piece] = field(default_factory=list)
    _covered: list[tuple[int, int]] = field(default_factory=list)
    _highest_end: int = 0
    out_of_order: int = 0

    def add_syn(self, seq: int) -> None:
        """Fix stream offset 0 from a SYN's sequence number."""
        if self.base is None:
            self.base = (seq + 1) % SEQUENCE_MODULUS

    def relative(self, seq: int) -> int | None:
        """Return the stream offset of a sequence number, or None if before 0."""
        if self.base is None:
            self.base = seq
        offset = (seq - self.base) % SEQUENCE_MODULUS
        return None if offset >= HALF_SEQUENCE_SPACE else offset

    def add(
        self, seq: int, payload: bytes, number: int, timestamp: float, missing: int
    ) -> bool:
        """Add a data segment; return True if all its bytes were seen before."""
        offset = self.relative(seq)
        if offset is None:
            return True
        end = offset + len(payload) + missing
        retransmission = self._is_covered(offset, end)
        if not retransmission:
            if end <= self._highest_end:
                self.out_of_order += 1
            self._highest_end = max(self._highest_end, end)
            self._cover(offset, end)
        self.pieces.append(_Piece(offset, payload, number, timestamp, missing))
        return retransmission

    def _is_covered(self, start: int, end: int) -> bool:
        # The intervals are sorted and disjoint, so only the last one that
        # starts at or before `start` can contain [start, end).
        index = bisect.bisect_right(self._covered, (start, HALF_SEQUENCE_SPACE)) - 1
        return index >= 0 and end <= self._covered[index][1]

    def _cover(self, start: int, end: int) -> None:
        last = self._covered[-1] if self._covered else None
        if last is not None and start >= last[0]:
            # In-order data, the common case: extend or append at the end.
            if start <= last[1]:
                self._covered[-1] = (last[0], max(last[1], end))
            else:
                self._covered.append((start, end))
            return
        merged: list[tuple[int, int]] = []
        for low, high in sorted([*self._covered, (start, end)]):
            if merged and low <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self._covered = merged

    def build(self) -> Stream:
        """Place every segment by offset and return the stream."""
        data = bytearray()
        chunks: list[Chunk] = []
        gaps: list[Gap] = []
        retransmissions = conflicts = 0
        position = 0
        contiguous = True
        ordered = sorted(self.pieces, key=lambda piece: (piece.offset, piece.number))
        for piece in ordered:
            end = piece.offset + len(piece.payload)
            if end + piece.missing <= position:
                retransmissions += 1
                conflicts += _differs(data, piece) if contiguous else 0
                continue
            if piece.offset > position:
                gaps.append(Gap(position, piece.offset, piece.number, "missing"))
                contiguous = False
            elif contiguous and piece.offset < position:
                conflicts += _differs(data, piece)
            fresh_from = max(position, piece.offset)
            if end > fresh_from:
                chunks.append(
                    Chunk(fresh_from, end - fresh_from, piece.number, piece.timestamp)
                )
                if contiguous:
                    data += piece.payload[fresh_from - piece.offset :]
            if piece.missing:
                gaps.append(Gap(end, end + piece.missing, piece.number, "snaplen"))
                contiguous = False
            position = max(position, end + piece.missing)
        return Stream(
            bytes(data),
            tuple(chunks),
            tuple(gaps),
            retransmissions,
            conflicts,
            self.out_of_order,
        )


def _differs(data: bytearray, piece: _Piece) -> int:
    """Return 1 if the piece's bytes that overlap data differ from them."""
    end = min(len(data), piece.offset + len(piece.payload))
    if end <= piece.offset:
        return 0
    seen = bytes(data[piece.offset : end])
    return int(seen != piece.payload[: end - piece.offset])
