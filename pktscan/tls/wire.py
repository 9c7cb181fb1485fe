"""A bounds-checked reader of big-endian fields, shared by the decoders.

Every read names the field it reads, so that a short or overlong field
raises a `PeerProtocolError` carrying the field's name, its stream offset,
the value read and the limit it broke.

A handshake message may arrive in pieces from several records, so its body
is contiguous here but not on the wire. `ByteReader` maps a position in the
body back to a stream offset through the list of segments the body was
assembled from.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from pktscan.errors import PeerProtocolError


class ByteReader:
    """Reads fields from `data` in order, raising PeerProtocolError on overrun.

    Args:
        data: the bytes to read.
        segments: (position in data, stream offset) pairs, sorted, the first
            at position 0. Each gives the stream offset where a contiguous
            run of `data` starts. A single int is the stream offset of all of `data`.
    """

    def __init__(
        self, data: bytes, segments: int | Sequence[tuple[int, int]] = 0
    ) -> None:
        self.data = data
        self.position = 0
        if isinstance(segments, int):
            segments = [(0, segments)]
        self._starts = [start for start, _ in segments]
        self._offsets = [offset for _, offset in segments]

    def stream_offset(self, position: int | None = None) -> int:
        """Return the stream offset of `position` (default: the next byte)."""
        if position is None:
            position = self.position
        index = max(bisect.bisect_right(self._starts, position) - 1, 0)
        return self._offsets[index] + position - self._starts[index]

    @property
    def remaining(self) -> int:
        """Number of bytes not read yet."""
        return len(self.data) - self.position

    def read(self, length: int, field: str) -> bytes:
        """Read `length` bytes of `field`."""
        if length > self.remaining:
            raise PeerProtocolError(
                f"{field} at offset {self.stream_offset()} needs {length} bytes, "
                f"only {self.remaining} remain",
                offset=self.stream_offset(),
                field=field,
                value=length,
                limit=self.remaining,
            )
        chunk = self.data[self.position : self.position + length]
        self.position += length
        return chunk

    def sub(self, length: int, field: str) -> ByteReader:
        """Read `length` bytes of `field` and return a reader over them."""
        start = self.position
        data = self.read(length, field)
        segments = [(0, self.stream_offset(start))]
        for segment_start, offset in zip(self._starts, self._offsets, strict=True):
            if start < segment_start < start + length:
                segments.append((segment_start - start, offset))
        return ByteReader(data, segments)

    def uint(self, size: int, field: str) -> int:
        """Read a `size`-byte big-endian unsigned integer."""
        return int.from_bytes(self.read(size, field), "big")

    def vector(
        self,
        length_size: int,
        field: str,
        *,
        minimum: int = 0,
        maximum: int | None = None,
    ) -> bytes:
        """Read a vector: a `length_size`-byte length, then that many bytes.

        Raises PeerProtocolError if the length is outside minimum..maximum
        or runs past the end of the data.
        """
        length_offset = self.stream_offset()
        length = self.uint(length_size, f"{field} length")
        if length < minimum or (maximum is not None and length > maximum):
            if maximum is None:
                limit, rule = f">={minimum}", f"is below the minimum of {minimum}"
            else:
                limit = f"{minimum}..{maximum}"
                rule = f"is outside {limit}"
            raise PeerProtocolError(
                f"{field} length {length} at offset {length_offset} {rule}",
                offset=length_offset,
                field=f"{field} length",
                value=length,
                limit=limit,
            )
        return self.read(length, field)

    def expect_end(self, field: str) -> None:
        """Raise PeerProtocolError if bytes remain after the last field."""
        if self.remaining:
            raise PeerProtocolError(
                f"{self.remaining} unexpected bytes after {field} at offset "
                f"{self.stream_offset()}",
                offset=self.stream_offset(),
                field=field,
                value=self.remaining,
                limit=0,
            )
