"""The intolerant front: hello classification, and reset or relay on loopback."""

from __future__ import annotations

import asyncio

import pytest
from lab_wire import (
    SSL3,
    TLS10,
    TLS12,
    server_name_extension,
    sslv2_client_hello,
    tls_client_hello,
)

from pktscan.lab.front import (
    Front,
    HelloFeatures,
    inspect_hello,
    record_length,
    rejection,
)

SNI = server_name_extension("tls10-no-ext.lab.pktscan.test")

# An empty extensions block still counts as an extensions block.
INSPECT_CASES = [
    ("sslv2 hello", sslv2_client_hello(TLS10), HelloFeatures(True, TLS10, False)),
    (
        "tls10 with sni",
        tls_client_hello(TLS10, extensions=SNI),
        HelloFeatures(False, TLS10, True),
    ),
    (
        "tls12 with sni",
        tls_client_hello(TLS12, extensions=SNI),
        HelloFeatures(False, TLS12, True),
    ),
    (
        "ssl3 no block",
        tls_client_hello(SSL3, extensions=None),
        HelloFeatures(False, SSL3, False),
    ),
    (
        "tls10 empty block",
        tls_client_hello(TLS10, extensions=b""),
        HelloFeatures(False, TLS10, True),
    ),
    ("not a hello", bytes([23, 3, 1, 0, 2, 0, 0]), HelloFeatures(False, None, False)),
]


@pytest.mark.parametrize(
    ("record", "expected"),
    [case[1:] for case in INSPECT_CASES],
    ids=[case[0] for case in INSPECT_CASES],
)
def test_inspect_hello(record: bytes, expected: HelloFeatures) -> None:
    assert inspect_hello(record) == expected


def test_record_length_both_formats() -> None:
    v2 = sslv2_client_hello(TLS10)
    tls = tls_client_hello(TLS10, extensions=SNI)
    assert record_length(v2[:2]) == len(v2)
    assert record_length(tls[:5]) == len(tls)


REJECTION_CASES = [
    (("v2hello",), sslv2_client_hello(TLS10), "SSLv2-format hello"),
    (("v2hello",), tls_client_hello(TLS10, extensions=SNI), None),
    (
        ("above-ssl3",),
        tls_client_hello(TLS10, extensions=None),
        "client_version 0x0301 above SSL 3.0",
    ),
    (("above-ssl3",), sslv2_client_hello(TLS10), "client_version 0x0301 above SSL 3.0"),
    (("above-ssl3",), tls_client_hello(SSL3, extensions=None), None),
    (("extensions",), tls_client_hello(TLS10, extensions=SNI), "hello with extensions"),
    (("extensions",), tls_client_hello(TLS10, extensions=None), None),
    (("extensions",), sslv2_client_hello(TLS10), None),
]


@pytest.mark.parametrize(("rejected", "record", "reason"), REJECTION_CASES)
def test_rejection(
    rejected: tuple[str, ...], record: bytes, reason: str | None
) -> None:
    assert rejection(inspect_hello(record), frozenset(rejected)) == reason


async def _exchange(rejected: frozenset[str], hello: bytes) -> tuple[str, bytes]:
    """Send `hello` through a front on loopback to an echoing backend."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        writer.write(b"echo:" + data)
        await writer.drain()
        writer.close()

    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    backend_port = backend.sockets[0].getsockname()[1]
    front = Front(("127.0.0.1", backend_port), rejected)
    listener = await asyncio.start_server(front.handle, "127.0.0.1", 0)
    front_port = listener.sockets[0].getsockname()[1]
    async with backend, listener:
        reader, writer = await asyncio.open_connection("127.0.0.1", front_port)
        writer.write(hello)
        await writer.drain()
        received = b""
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    outcome = "eof"
                    break
                received += chunk
        except ConnectionResetError:
            outcome = "reset"
        writer.transport.abort()
    return outcome, received


def test_front_resets_rejected_hello() -> None:
    hello = sslv2_client_hello(TLS10)
    outcome, received = asyncio.run(_exchange(frozenset({"v2hello"}), hello))
    assert outcome == "reset"
    assert received == b""


def test_front_relays_accepted_hello() -> None:
    hello = tls_client_hello(SSL3, extensions=None, record_version=SSL3)
    rejected = frozenset({"v2hello", "above-ssl3"})
    outcome, received = asyncio.run(_exchange(rejected, hello))
    assert outcome == "eof"
    assert received == b"echo:" + hello
