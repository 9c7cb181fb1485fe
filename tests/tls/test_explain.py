"""Tests of describe_hello and render_hello, the `pktscan hello` views."""

from __future__ import annotations

import json

import pytest

from pktscan.errors import PeerProtocolError
from pktscan.tls.explain import describe_hello, render_hello
from pktscan.tls.sets import build_set_hello

RANDOM = bytes(range(32))


@pytest.mark.parametrize("set_number", [1, 2, 3, 4])
def test_fields_tile_the_hello(set_number: int) -> None:
    data = build_set_hello(set_number, RANDOM, "www.example.test")
    fields = describe_hello(data)
    position = 0
    for field in fields:
        assert field.offset == position
        assert data[field.offset : field.offset + len(field.data)] == field.data
        position += len(field.data)
    assert position == len(data)
    assert all(field.name != "trailing bytes" for field in fields)


def test_set3_fields_named() -> None:
    fields = describe_hello(build_set_hello(3, RANDOM, "www.example.test"))
    by_name = {(f.name, f.meaning) for f in fields}
    assert ("record version", "TLSv1.0") in by_name
    assert ("client_version", "highest version: TLSv1.2") in by_name
    assert ("HostName", "www.example.test") in by_name
    assert ("NamedGroup", "x25519") in by_name
    assert ("SignatureScheme", "rsa_pss_rsae_sha384") in by_name
    assert ("extension_type", "padding") in by_name
    assert ("cipher_suite", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") in by_name


def test_set1_fields_named() -> None:
    fields = describe_hello(build_set_hello(1, RANDOM))
    assert fields[0].meaning == "SSLv2 2-byte header, length 176"
    meanings = [f.meaning for f in fields if f.name == "cipher_spec"]
    assert "SSL_CK_RC4_128_WITH_MD5" in meanings
    assert "TLS suite TLS_RSA_WITH_AES_128_CBC_SHA" in meanings
    assert fields[-1].name == "challenge"
    assert fields[-1].data == RANDOM


def test_render_formats() -> None:
    data = build_set_hello(4, RANDOM)
    assert render_hello(data, "raw") == data
    hex_text = render_hello(data, "hex")
    assert isinstance(hex_text, str)
    assert hex_text.splitlines()[0].startswith("0000  16 03 00 00 5f 01 00 00 5b 03 00")
    annotated = render_hello(data, "annotated")
    assert isinstance(annotated, str)
    assert "0009  03 00" in annotated
    assert "client_version: highest version: SSLv3" in annotated
    rows = json.loads(render_hello(data, "json"))
    assert rows[0] == {
        "offset": 0,
        "length": 1,
        "hex": "16",
        "field": "record content_type",
        "meaning": "handshake",
    }
    assert sum(row["length"] for row in rows) == len(data)


def test_render_unknown_format() -> None:
    with pytest.raises(ValueError, match="format 'xml' is not one of"):
        render_hello(b"", "xml")  # type: ignore[arg-type]


def test_truncated_hello_error() -> None:
    data = build_set_hello(2, RANDOM)[:61]
    with pytest.raises(PeerProtocolError, match="needs 2 bytes, only 1 remain") as info:
        describe_hello(data)
    assert info.value.field == "cipher_suite"
    assert info.value.offset == 60
