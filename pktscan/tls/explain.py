"""Field-by-field dissection of a ClientHello, for `pktscan hello`.

`describe_hello` splits a hello, in either format, into fields that each
carry their offset, their bytes, the RFC's name for them and what the value
means. `render_hello` prints that as a hex dump, an annotated listing, JSON
or the raw bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pktscan.tls.constants import (
    CertificateStatusType,
    CipherSuite,
    CompressionMethod,
    ContentType,
    ECPointFormat,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    SignatureScheme,
    SSLv2CipherKind,
    SSLv2MessageType,
    name_of,
    version_name,
)
from pktscan.tls.wire import ByteReader

HEX_BYTES_PER_LINE = 16
ANNOTATED_HEX_BYTES = 8  # bytes shown per field in the annotated listing


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a dissected hello."""

    offset: int
    data: bytes
    name: str
    meaning: str


class _Dissector:
    """Reads fields from a ByteReader and records each as a Field."""

    def __init__(self, data: bytes) -> None:
        self.reader = ByteReader(data)
        self.fields: list[Field] = []

    def take(self, length: int, name: str, meaning: str = "") -> bytes:
        offset = self.reader.position
        chunk = self.reader.read(length, name)
        self.fields.append(Field(offset, chunk, name, meaning))
        return chunk

    def uint(self, size: int, name: str, explain: Callable[[int], str]) -> int:
        offset = self.reader.position
        chunk = self.reader.read(size, name)
        value = int.from_bytes(chunk, "big")
        self.fields.append(Field(offset, chunk, name, explain(value)))
        return value

    def length(self, size: int, name: str) -> int:
        return self.uint(size, name, lambda value: f"{value} bytes follow")


def _count(unit: str, size: int) -> Callable[[int], str]:
    return lambda value: f"{value} bytes: {value // size} {unit}"


def _suite_name(value: int) -> str:
    return name_of(CipherSuite, value)


def _spec_name(value: int) -> str:
    if value <= 0xFFFF:
        return f"TLS suite {name_of(CipherSuite, value)}"
    return name_of(SSLv2CipherKind, value)


def _describe_sslv2(d: _Dissector) -> None:
    d.uint(2, "record header", lambda v: f"SSLv2 2-byte header, length {v & 0x7FFF}")
    d.uint(1, "msg_type", lambda v: name_of(SSLv2MessageType, v))
    d.uint(2, "version", lambda v: f"highest version offered: {version_name(v)}")
    specs_len = d.length(2, "cipher_spec_length")
    session_len = d.length(2, "session_id_length")
    challenge_len = d.length(2, "challenge_length")
    for _ in range(specs_len // 3):
        d.uint(3, "cipher_spec", _spec_name)
    if specs_len % 3:
        d.take(specs_len % 3, "cipher_spec (partial)", "not a whole 3-byte spec")
    if session_len:
        d.take(session_len, "session_id", "session to resume")
    d.take(challenge_len, "challenge", "random bytes; a TLS server uses them as random")


def _describe_extension_data(d: _Dissector, ext_type: int, length: int) -> None:
    end = d.reader.position + length
    if ext_type == ExtensionType.server_name and length >= 2:
        d.length(2, "server_name_list length")
        while d.reader.position < end:
            d.uint(1, "name_type", lambda v: "host_name" if v == 0 else f"type {v}")
            name_len = d.length(2, "HostName length")
            name = d.reader.data[d.reader.position : d.reader.position + name_len]
            d.take(name_len, "HostName", name.decode("ascii", "replace"))
    elif ext_type == ExtensionType.supported_groups and length >= 2:
        d.uint(2, "named_group_list length", _count("groups", 2))
        while d.reader.position + 2 <= end:
            d.uint(2, "NamedGroup", lambda v: name_of(NamedGroup, v))
    elif ext_type == ExtensionType.signature_algorithms and length >= 2:
        d.uint(2, "supported_signature_algorithms length", _count("schemes", 2))
        while d.reader.position + 2 <= end:
            d.uint(2, "SignatureScheme", lambda v: name_of(SignatureScheme, v))
    elif ext_type == ExtensionType.ec_point_formats and length >= 1:
        d.uint(1, "ec_point_format_list length", _count("formats", 1))
        while d.reader.position < end:
            d.uint(1, "ECPointFormat", lambda v: name_of(ECPointFormat, v))
    elif ext_type == ExtensionType.renegotiation_info and length >= 1:
        d.length(1, "renegotiated_connection length")
    elif ext_type == ExtensionType.status_request and length >= 5:
        d.uint(1, "status_type", lambda v: name_of(CertificateStatusType, v))
        d.length(2, "responder_id_list length")
        d.length(2, "request_extensions length")
    if d.reader.position < end:
        meaning = "zero bytes" if ext_type == ExtensionType.padding else "opaque"
        d.take(end - d.reader.position, "extension_data", meaning)


def _describe_extensions(d: _Dissector) -> None:
    d.length(2, "extensions length")
    while d.reader.remaining:
        ext_type = d.uint(2, "extension_type", lambda v: name_of(ExtensionType, v))
        length = d.length(2, "extension_data length")
        if length > d.reader.remaining:
            d.reader.read(length, "extension_data")  # raises with the numbers
        _describe_extension_data(d, ext_type, length)


def _describe_tls(d: _Dissector) -> None:
    d.uint(1, "record content_type", lambda v: name_of(ContentType, v))
    d.uint(2, "record version", version_name)
    d.length(2, "record length")
    d.uint(1, "msg_type", lambda v: name_of(HandshakeType, v))
    d.length(3, "handshake length")
    d.uint(2, "client_version", lambda v: f"highest version: {version_name(v)}")
    d.take(32, "random", "32 random bytes")
    session_len = d.length(1, "session_id length")
    if session_len:
        d.take(session_len, "session_id", "session to resume")
    suites_len = d.uint(2, "cipher_suites length", _count("suites", 2))
    for _ in range(suites_len // 2):
        d.uint(2, "cipher_suite", _suite_name)
    methods_len = d.length(1, "compression_methods length")
    for _ in range(methods_len):
        d.uint(1, "compression_method", lambda v: name_of(CompressionMethod, v))
    if d.reader.remaining:
        _describe_extensions(d)


def describe_hello(data: bytes) -> list[Field]:
    """Split a ClientHello record into named fields.

    Accepts the TLS record format and the SSLv2-compatible one, which are
    distinguished by the high bit of the first byte.

    Raises:
        PeerProtocolError: a length runs past the end of `data`.
    """
    dissector = _Dissector(bytes(data))
    if data and data[0] & 0x80:
        _describe_sslv2(dissector)
    else:
        _describe_tls(dissector)
    if dissector.reader.remaining:
        dissector.take(dissector.reader.remaining, "trailing bytes", "after the hello")
    return dissector.fields


def _hex_dump(data: bytes) -> str:
    lines = []
    for start in range(0, len(data), HEX_BYTES_PER_LINE):
        chunk = data[start : start + HEX_BYTES_PER_LINE]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{start:04x}  {chunk.hex(' '):<47}  |{text}|")
    return "\n".join(lines) + "\n"


def _annotated(fields: list[Field]) -> str:
    width = ANNOTATED_HEX_BYTES * 3 - 1
    lines = []
    for item in fields:
        shown = item.data.hex(" ")
        if len(item.data) > ANNOTATED_HEX_BYTES:
            shown = item.data[: ANNOTATED_HEX_BYTES - 2].hex(" ") + " ..."
        line = f"{item.offset:04x}  {shown:<{width}}  {item.name}"
        if item.meaning:
            line += f": {item.meaning}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _json(fields: list[Field]) -> str:
    rows = [
        {
            "offset": item.offset,
            "length": len(item.data),
            "hex": item.data.hex(),
            "field": item.name,
            "meaning": item.meaning,
        }
        for item in fields
    ]
    return json.dumps(rows, indent=2) + "\n"


def render_hello(
    data: bytes, fmt: Literal["hex", "annotated", "json", "raw"]
) -> str | bytes:
    """Render a hello for people ("hex", "annotated", "json") or as "raw" bytes.

    Raises:
        ValueError: `fmt` is not one of the four formats.
        PeerProtocolError: `data` is not a well-formed hello ("annotated"
            and "json" only).
    """
    if fmt == "raw":
        return bytes(data)
    if fmt == "hex":
        return _hex_dump(bytes(data))
    if fmt == "annotated":
        return _annotated(describe_hello(data))
    if fmt == "json":
        return _json(describe_hello(data))
    raise ValueError(f"format {fmt!r} is not one of hex, annotated, json, raw")
