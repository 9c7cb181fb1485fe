"""Helpers that build expected wire bytes for tests, lengths computed.

Test vectors are written field by field with these helpers, so that no
length byte is typed by hand and drifts from the content it counts.
"""

from __future__ import annotations


def hx(text: str) -> bytes:
    """Decode hex digits, ignoring spaces and newlines."""
    return bytes.fromhex("".join(text.split()))


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def vec(length_size: int, *parts: bytes) -> bytes:
    """Concatenate `parts` and prefix them with their length."""
    body = b"".join(parts)
    return len(body).to_bytes(length_size, "big") + body


def record(content_type: int, version: int, *parts: bytes) -> bytes:
    """A TLS record: type(1) | version(2) | length(2) | fragment."""
    return u8(content_type) + u16(version) + vec(2, *parts)


def handshake(msg_type: int, *parts: bytes) -> bytes:
    """A handshake message: msg_type(1) | length(3) | body."""
    return u8(msg_type) + vec(3, *parts)


def extension(ext_type: int, *parts: bytes) -> bytes:
    """A hello extension: type(2) | length(2) | data."""
    return u16(ext_type) + vec(2, *parts)


def sslv2_record(*parts: bytes) -> bytes:
    """An SSL 2.0 record with the 2-byte header (high bit set)."""
    body = b"".join(parts)
    return u16(0x8000 | len(body)) + body


def sslv2_record3(padding: int, *parts: bytes) -> bytes:
    """An SSL 2.0 record with the 3-byte header (high bit clear)."""
    body = b"".join(parts)
    return u16(len(body)) + u8(padding) + body


def feedings(data: bytes) -> list[list[bytes]]:
    """Ways to deliver `data`: whole, byte by byte, and split at every offset."""
    ways = [[data], [data[i : i + 1] for i in range(len(data))]]
    ways += [[data[:cut], data[cut:]] for cut in range(1, len(data))]
    return ways
