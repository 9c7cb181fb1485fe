"""Tests for the C send loop: SipHash, SYN frames, argument checks."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from pktscan.net import _fastpath
from pktscan.net.cookie import SynCookie
from pktscan.net.packet import PacketTemplate
from pktscan.net.synbatch import SynBatch

KEY = bytes(range(16))
SOURCE = bytes([198, 18, 0, 1])
MASK64 = 2**64 - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & MASK64


def reference_siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 written from the paper's description, in Python."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def rounds(count: int) -> None:
        for _ in range(count):
            v[0] = (v[0] + v[1]) & MASK64
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & MASK64
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & MASK64
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & MASK64
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    padded = data + bytes(7 - len(data) % 8) + bytes([len(data) & 0xFF])
    for offset in range(0, len(padded), 8):
        (block,) = struct.unpack_from("<Q", padded, offset)
        v[3] ^= block
        rounds(2)
        v[0] ^= block
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_siphash_matches_the_papers_vectors() -> None:
    # Appendix A of the SipHash paper: key 00..0f, message 00..0e.
    assert _fastpath.siphash24(KEY, bytes(range(15))) == 0xA129CA6149BE45E5
    # The first entry of the reference implementation's vectors: no message.
    assert _fastpath.siphash24(KEY, b"") == 0x726FDB47DD0E0E31


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=40))
def test_siphash_matches_the_python_reference(key: bytes, data: bytes) -> None:
    assert _fastpath.siphash24(key, data) == reference_siphash24(key, data)


def test_siphash_rejects_a_short_key() -> None:
    with pytest.raises(ValueError, match="16 bytes, not 15"):
        _fastpath.siphash24(bytes(15), b"x")


def test_cookie_is_the_low_half_of_siphash() -> None:
    destination = bytes([198, 19, 3, 7])
    data = SOURCE + destination + struct.pack("!HH", 61001, 443)
    expected = reference_siphash24(KEY, data) & 0xFFFFFFFF
    assert SynCookie(KEY).sequence(SOURCE, destination, 61001, 443) == expected


targets_strategy = st.lists(
    st.tuples(st.binary(min_size=4, max_size=4), st.integers(0, 65535)),
    min_size=1,
    max_size=20,
)


@given(targets_strategy, st.integers(0, 2**32 - 1), st.integers(1, 65535))
def test_c_frames_equal_the_python_template(
    targets: list[tuple[bytes, int]], tsval: int, source_port: int
) -> None:
    template = PacketTemplate(4, "S", with_options=True)
    cookie = SynCookie(KEY)
    frames = SynBatch(template, cookie, source_port).fill(SOURCE, tsval, targets)

    size = len(template.packet)
    assert len(frames) == size * len(targets)
    for index, (destination, port) in enumerate(targets):
        sequence = cookie.sequence(SOURCE, destination, source_port, port)
        expected = template.fill(
            SOURCE,
            destination,
            source_port,
            port,
            sequence,
            ip_id=sequence & 0xFFFF,
            timestamp=tsval,
        )
        assert frames[index * size : (index + 1) * size] == bytes(expected)


def test_c_frame_checksums_are_valid() -> None:
    """scapy recomputes both checksums to the values the C loop wrote."""
    template = PacketTemplate(4, "S", with_options=True)
    batch = SynBatch(template, SynCookie(KEY), 61001)
    frame = batch.fill(SOURCE, 12345, [(bytes([10, 1, 2, 3]), 8443)])

    parsed = IP(frame)
    written = (parsed.chksum, parsed[TCP].chksum)
    del parsed.chksum
    del parsed[TCP].chksum
    again = IP(bytes(parsed))
    assert written == (again.chksum, again[TCP].chksum)
    assert (parsed.dst, parsed[TCP].dport, parsed[TCP].flags) == ("10.1.2.3", 8443, "S")
    assert dict(parsed[TCP].options)["Timestamp"] == (12345, 0)


@pytest.mark.parametrize(
    ("targets", "error", "message"),
    [
        ([(b"\x01\x02\x03", 80)], ValueError, "4 packed bytes"),
        ([(b"\x01\x02\x03\x04", 70000)], ValueError, "port 70000"),
        ([(b"\x01\x02\x03\x04", -1)], ValueError, "port -1"),
        ([("1.2.3.4", 80)], ValueError, "4 packed bytes"),
        ([(b"\x01\x02\x03\x04",)], TypeError, r"\(bytes, int\) tuples"),
    ],
)
def test_malformed_targets_raise(
    targets: list[tuple[bytes, int]], error: type[Exception], message: str
) -> None:
    batch = SynBatch(PacketTemplate(4, "S", with_options=True), SynCookie(KEY), 61001)
    with pytest.raises(error, match=message):
        batch.fill(SOURCE, 1, targets)


def test_ipv6_templates_are_refused() -> None:
    with pytest.raises(ValueError, match="IPv4 templates only"):
        SynBatch(PacketTemplate(6, "S", with_options=True), SynCookie(KEY), 61001)
