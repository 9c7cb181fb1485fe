"""Tests for the SYN cookie."""

from __future__ import annotations

import dataclasses

import pytest

from pktscan.net.cookie import SynCookie
from pktscan.net.packet import TCP_ACK, TCP_RST, TCP_SYN, TcpResponse

SCANNER = bytes([198, 18, 0, 1])
TARGET = bytes([198, 18, 0, 2])
KEY = bytes(range(16))


def response_to(cookie: SynCookie, flags: int = TCP_SYN | TCP_ACK) -> TcpResponse:
    sequence = cookie.sequence(SCANNER, TARGET, 61000, 443)
    return TcpResponse(
        version=4,
        source=TARGET,
        destination=SCANNER,
        source_port=443,
        destination_port=61000,
        sequence=12345,
        acknowledgment=(sequence + 1) & 0xFFFFFFFF,
        flags=flags,
        ttl=64,
        timestamp_echo=None,
    )


def test_cookie_is_keyed_and_stable() -> None:
    first = SynCookie(KEY).sequence(SCANNER, TARGET, 61000, 443)
    again = SynCookie(KEY).sequence(SCANNER, TARGET, 61000, 443)
    other_key = SynCookie(bytes(16)).sequence(SCANNER, TARGET, 61000, 443)
    assert first == again
    assert first != other_key
    assert 0 <= first < 2**32


def test_cookie_differs_per_tuple() -> None:
    cookie = SynCookie(KEY)
    values = {cookie.sequence(SCANNER, TARGET, 61000, port) for port in range(1, 2001)}
    # Distinct 32-bit hashes of 2000 tuples collide with probability ~5e-4.
    assert len(values) == 2000


def test_validate_accepts_own_responses() -> None:
    cookie = SynCookie(KEY)
    assert cookie.validate(response_to(cookie))
    assert cookie.validate(response_to(cookie, TCP_RST | TCP_ACK))


@pytest.mark.parametrize(
    "change",
    [
        {"acknowledgment_delta": 0},
        {"acknowledgment_delta": 2},
        {"source_port": 444},
        {"destination_port": 61001},
        {"source": bytes([198, 18, 0, 3])},
        {"destination": bytes([198, 18, 0, 9])},
        {"flags": TCP_SYN},
        {"flags": TCP_RST},
    ],
    ids=lambda change: next(iter(change)),
)
def test_validate_rejects_others(change: dict[str, object]) -> None:
    cookie = SynCookie(KEY)
    response = response_to(cookie)
    delta = change.pop("acknowledgment_delta", None)
    if isinstance(delta, int):
        expected = cookie.sequence(SCANNER, TARGET, 61000, 443)
        change["acknowledgment"] = (expected + delta) & 0xFFFFFFFF
    forged = dataclasses.replace(response, **change)  # type: ignore[arg-type]
    assert not cookie.validate(forged)


def test_validate_rejects_other_scan() -> None:
    assert not SynCookie(bytes(16)).validate(response_to(SynCookie(KEY)))


def test_sequence_wraps_acknowledgment() -> None:
    """An response to a cookie of 0xFFFFFFFF acknowledges 0."""
    cookie = SynCookie(KEY)
    port = next(
        port
        for port in range(1, 65536)
        if cookie.sequence(SCANNER, TARGET, 61000, port) >> 28 == 0xF
    )
    response = dataclasses.replace(response_to(cookie), source_port=port)
    expected = cookie.sequence(SCANNER, TARGET, 61000, port)
    response = dataclasses.replace(response, acknowledgment=(expected + 1) % 2**32)
    assert cookie.validate(response)


def test_key_length_checked() -> None:
    with pytest.raises(ValueError, match="cookie key must be 16 bytes, not 3"):
        SynCookie(b"abc")
