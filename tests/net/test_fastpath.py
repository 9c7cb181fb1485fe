"""Tests for the C send loop: SipHash, SYN frames, argument checks."""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from pktscan.net import _fastpath
from pktscan.net.cookie import SynCookie
from pktscan.net.packet import PacketTemplate
from pktscan.net.receiver import RECORD
from pktscan.net.synbatch import SendThread, SynBatch

KEY = bytes(range(16))
SOURCE = bytes([198, 18, 0, 1])
MASK64 = 2**64 - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & MASK64


def reference_siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 (Aumasson and Bernstein, 2012), written in Python."""
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


# accept_block: a TPACKET_V3 block built here, in the layout ring.py reads.

OUR_PORT = 61001
TARGET = bytes([198, 19, 0, 7])
THEIR_MAC = bytes.fromhex("0a0000000002")
PACKET_HEADER = 48
SOCKADDR_LL = 20
NET_OFFSET = 80


def _packet(
    flags: int,
    acknowledgment: int,
    *,
    target_port: int = 443,
    echo: int | None = None,
) -> bytes:
    options: list[tuple[str, object]] = []
    if echo is not None:
        options = [("Timestamp", (99, echo))]
    return bytes(
        IP(src="198.19.0.7", dst="198.18.0.1", ttl=61)
        / TCP(
            sport=target_port,
            dport=OUR_PORT,
            flags=flags,
            seq=5000,
            ack=acknowledgment,
            options=options,
        )
    )


def _block(
    packets: list[tuple[bytes, int, int, int]],
    size: int = 1 << 16,
    *,
    arrived: tuple[int, int] = (0, 0),
    source_mac: bytes = THEIR_MAC,
) -> bytearray:
    """(datagram, ifindex, hatype, packet type) each, in one block, all
    with the kernel's arrival time `arrived` (seconds, nanoseconds)."""
    block = bytearray(size)
    struct.pack_into("=III", block, 8, 1, len(packets), 48)
    position = 48
    for index, (datagram, ifindex, hatype, kind) in enumerate(packets):
        length = NET_OFFSET + len(datagram)
        step = (length + 15) & ~15
        next_offset = 0 if index == len(packets) - 1 else step
        struct.pack_into(
            "=IIIIIIHH", block, position, next_offset, *arrived, len(datagram),
            len(datagram), 0, 0, NET_OFFSET,
        )  # fmt: skip
        struct.pack_into(
            "=HHiHBB8s", block, position + PACKET_HEADER, 17, 0x0800, ifindex,
            hatype, kind, 6, source_mac,
        )  # fmt: skip
        block[position + NET_OFFSET : position + NET_OFFSET + len(datagram)] = datagram
        position += step
    return block


class Accepted(NamedTuple):
    records: list[tuple[object, ...]]
    others: list[tuple[bytes, int, bytes, float]]
    invalid: int
    resets: int
    error: int


def _accept(
    block: bytearray, monotonic: float = 100.0, wall: float = 1_700_000_000.0
) -> Accepted:
    """Run accept_block with the call's times given, and decode its records.

    The RSTs go to one end of a Unix socket pair, which rejects the
    link-layer address: nothing leaves the machine, and the error shows."""
    reset = PacketTemplate(4, "R", with_options=False)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        records, others, invalid, resets, error = _fastpath.accept_block(
            block, 0, len(block), OUR_PORT, KEY, bytes(reset.packet),
            reset.ip_base, reset.tcp_base, left.fileno(), monotonic, wall,
        )  # fmt: skip
    decoded = [RECORD.unpack_from(records, o) for o in range(0, len(records), 44)]
    return Accepted(decoded, others, invalid, resets, error)


def test_accept_block_mixed_packets() -> None:
    cookie = SynCookie(KEY)
    sequence = cookie.sequence(SOURCE, TARGET, OUR_PORT, 443)
    closed_sequence = cookie.sequence(SOURCE, TARGET, OUR_PORT, 22)
    ipv6 = bytes(IPv6(src="2001:db8::7", dst="2001:db8::1") / TCP(dport=OUR_PORT))
    block = _block(
        [
            (_packet("SA", sequence + 1, echo=1234), 3, 1, 0),
            (_packet("RA", closed_sequence + 1, target_port=22), 3, 1, 0),
            (_packet("SA", sequence + 2), 3, 1, 0),  # a forged acknowledgment
            (_packet("S", 0), 3, 1, 0),  # no ACK: not a response
            (_packet("SA", sequence + 1), 3, 1, 4),  # our own, outgoing
            (ipv6, 3, 1, 0),
            (_packet("SA", sequence + 1), 1, 772, 0),  # from loopback
        ]
    )
    records, others, invalid, resets, error = _accept(block, 12.5, 1_700_000_000.25)

    assert records == [
        (0, 4, 0x12, 1, 61, 443, TARGET + bytes(12), 1234, 12.5, 1_700_000_000.25),
        (0, 4, 0x14, 0, 61, 22, TARGET + bytes(12), 0, 12.5, 1_700_000_000.25),
    ]
    assert invalid == 2
    assert resets == 0
    assert error != 0
    assert [(len(datagram), index) for datagram, index, _, _ in others] == [
        (len(ipv6), 3),
        (len(_packet("SA", sequence + 1)), 1),
    ]


def test_accept_block_rejects_a_block_outside_the_buffer() -> None:
    reset = PacketTemplate(4, "R", with_options=False)
    with pytest.raises(ValueError, match="bad block"):
        _fastpath.accept_block(
            bytearray(100), 64, 1 << 16, OUR_PORT, KEY, bytes(reset.packet),
            reset.ip_base, reset.tcp_base, -1, 0.0, 0.0,
        )  # fmt: skip


def test_send_thread_counts_a_batch_it_cannot_send() -> None:
    """A batch for an interface that does not exist is counted as dropped,
    with the error, and neither flush nor close waits forever. No packet
    leaves: the interface lookup fails before any send."""
    batch = SynBatch(PacketTemplate(4, "S", with_options=True), SynCookie(KEY), 61001)
    thread = SendThread(batch)
    targets = [(bytes([198, 18, 0, 2]), 443), (bytes([198, 18, 0, 2]), 80)]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        thread.submit(sock, SOURCE, 1, targets, "pktscan-none0", THEIR_MAC)
        thread.submit(sock, SOURCE, 2, targets[:1], "pktscan-none0", THEIR_MAC)
        thread.flush()
        thread.close()
    assert (thread.sent, thread.dropped) == (0, 3)
    assert isinstance(thread.last_error, OSError)


def test_span_run_span_and_limit() -> None:
    targets = [
        (bytes([10, 0, 0, 1]), 80),
        (bytes([10, 0, 255, 9]), 80),
        (bytes([10, 1, 0, 1]), 80),
        (bytes([10, 0, 0, 2]), 80),
    ]
    network, mask = 0x0A000000, 0xFFFF0000
    assert _fastpath.span_run(targets, 0, network, mask, 256) == 2
    assert _fastpath.span_run(targets, 3, network, mask, 256) == 1
    assert _fastpath.span_run(targets, 0, network, mask, 1) == 1
    assert _fastpath.span_run(targets, 4, network, mask, 256) == 0
    assert _fastpath.span_run(targets, 0, 0, 0, 256) == 4


@given(st.lists(st.binary(max_size=120), max_size=12), st.integers(0, 2**16 - 1))
def test_accept_block_survives_any_datagram(
    datagrams: list[bytes], flags_seed: int
) -> None:
    """Arbitrary bytes where the IP packets go: no crash, no record without
    a valid cookie (random bytes almost never carry one), and every
    non-IPv4 datagram handed back whole."""
    block = _block([(datagram, 3, 1, flags_seed % 2 * 4) for datagram in datagrams])
    records, others, invalid, resets, _ = _accept(block, 0.0, 0.0)
    assert records == []
    assert resets == 0
    assert invalid <= len(datagrams)
    for datagram, _, _, _ in others:
        assert datagram in datagrams


def test_accept_block_takes_the_kernels_arrival_time() -> None:
    """The record carries when the packet arrived, not when the block was
    read: 0.25 s before the read here, on both clocks."""
    sequence = SynCookie(KEY).sequence(SOURCE, TARGET, OUR_PORT, 443)
    block = _block(
        [(_packet("RA", sequence + 1), 3, 1, 0)], arrived=(1_699_999_999, 750_000_000)
    )
    (record,) = _accept(block).records
    assert record[9] == pytest.approx(1_699_999_999.75)
    assert record[8] == pytest.approx(99.75)


def test_accept_block_reads_syn_rst_as_a_reset() -> None:
    """SYN, RST and ACK together: a reset, as Linux's TCP reads it, so the
    record keeps the flags and no RST of ours is attempted."""
    sequence = SynCookie(KEY).sequence(SOURCE, TARGET, OUR_PORT, 443)
    (record,), _, invalid, resets, error = _accept(
        _block([(_packet("SRA", sequence + 1), 3, 1, 0)])
    )
    assert record[2] == 0x16
    assert (invalid, resets, error) == (0, 0, 0)


def test_accept_block_broadcast_source() -> None:
    """A SYN/ACK from a broadcast MAC is recorded, but gets no RST."""
    sequence = SynCookie(KEY).sequence(SOURCE, TARGET, OUR_PORT, 443)
    block = _block([(_packet("SA", sequence + 1), 3, 1, 0)], source_mac=b"\xff" * 6)
    (record,), _, invalid, resets, error = _accept(block)
    assert record[2] == 0x12
    assert (invalid, resets, error) == (0, 0, 0)


def test_fill_rejects_port_with_index() -> None:
    """A port object with __index__ could change the list during the call;
    the C loop takes exact ints only."""
    targets: list[tuple[bytes, object]] = []

    class Shrinking:
        def __index__(self) -> int:
            targets.clear()
            return 80

    targets[:] = [(bytes([10, 0, 0, 1]), Shrinking())] + [
        (bytes([10, 0, 0, 1]), 80)
    ] * 8
    batch = SynBatch(PacketTemplate(4, "S", with_options=True), SynCookie(KEY), 61001)
    with pytest.raises(TypeError, match="target port must be an int"):
        batch.fill(SOURCE, 1, targets)  # type: ignore[arg-type]


def test_send_thread_survives_a_batch_that_raises() -> None:
    """A hop that is not a 6-byte address makes the C loop raise ValueError:
    the batch counts as dropped and later batches are still served."""
    batch = SynBatch(PacketTemplate(4, "S", with_options=True), SynCookie(KEY), 61001)
    thread = SendThread(batch)
    targets = [(bytes([198, 18, 0, 2]), 443)]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        thread.submit(sock, SOURCE, 1, targets, "lo", bytes(4))
        thread.submit(sock, SOURCE, 2, targets, "pktscan-none0", THEIR_MAC)
        thread.flush()
        thread.close()
    assert (thread.sent, thread.dropped) == (0, 2)
