"""Tests for the raw engine's datagram builder and parser, checked with scapy."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from pktscan.net.tcpwire import build_datagram, internet_checksum, parse_datagram
from pktscan.net.usertcp import (
    TCP_ACK,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    OutboundSegment,
    syn_options,
)


def _address(rng: random.Random, version: int) -> bytes:
    size = 4 if version == 4 else 16
    return rng.getrandbits(size * 8).to_bytes(size, "big")


def test_internet_checksum_of_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2,
    # whose complement is 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_internet_checksum_pads_odd_length() -> None:
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00")


@pytest.mark.parametrize("version", [4, 6])
def test_datagrams_match_scapy_checksums(version: int) -> None:
    rng = random.Random(version)
    flag_choices = [TCP_SYN, TCP_ACK, TCP_ACK | TCP_PSH, TCP_RST | TCP_ACK]
    for _ in range(300):
        flags = rng.choice(flag_choices)
        segment = OutboundSegment(
            rng.getrandbits(32),
            rng.getrandbits(32),
            flags,
            rng.randrange(65536),
            rng.randbytes(rng.randrange(0, 1500)),
            syn_options(1460, 7) if flags == TCP_SYN else b"",
        )
        source, destination = _address(rng, version), _address(rng, version)
        packet = build_datagram(
            source,
            destination,
            rng.randrange(65536),
            rng.randrange(65536),
            segment,
            ip_id=rng.randrange(65536),
        )
        layer = IP if version == 4 else IPv6
        parsed = layer(packet)
        received_tcp = parsed[TCP].chksum
        del parsed[TCP].chksum
        if version == 4:
            received_ip = parsed.chksum
            del parsed.chksum
        rebuilt = layer(bytes(parsed))
        assert received_tcp == rebuilt[TCP].chksum
        if version == 4:
            assert received_ip == rebuilt.chksum
        assert bytes(parsed[TCP].payload) == segment.payload


@pytest.mark.parametrize("version", [4, 6])
def test_parse_reads_back_what_build_wrote(version: int) -> None:
    rng = random.Random(10 + version)
    source, destination = _address(rng, version), _address(rng, version)
    segment = OutboundSegment(
        123456, 654321, TCP_SYN | TCP_ACK, 29200, b"", syn_options(1400, 9)
    )
    received = parse_datagram(build_datagram(source, destination, 443, 61001, segment))
    assert received is not None
    assert received.source == source
    assert received.destination == destination
    assert received.source_port == 443
    assert received.destination_port == 61001
    inbound = received.segment
    assert inbound.sequence == 123456
    assert inbound.acknowledgment == 654321
    assert inbound.flags == TCP_SYN | TCP_ACK
    assert inbound.window == 29200
    assert inbound.mss == 1400
    assert inbound.window_scale == 9
    assert inbound.payload == b""


def test_parse_drops_ethernet_padding() -> None:
    segment = OutboundSegment(1, 2, TCP_ACK, 100, b"")
    packet = build_datagram(bytes(4), bytes(4), 443, 61001, segment)
    # A 40-byte datagram in a 60-byte Ethernet frame carries 6 padding bytes.
    received = parse_datagram(packet + b"\x00" * 6)
    assert received is not None
    assert received.segment.payload == b""


def test_parse_reads_scapy_built_options() -> None:
    packet = bytes(
        IP(src="198.18.0.10", dst="198.18.0.1")
        / TCP(
            sport=443,
            dport=61005,
            flags="SA",
            options=[("MSS", 1360), ("SAckOK", b""), ("NOP", None), ("WScale", 2)],
        )
    )
    received = parse_datagram(packet)
    assert received is not None
    assert received.source_text == "198.18.0.10"
    assert received.segment.mss == 1360
    assert received.segment.window_scale == 2


@pytest.mark.parametrize(
    ("description", "packet"),
    [
        ("too short", b"\x45\x00"),
        ("UDP", bytes(IP(src="1.2.3.4", dst="5.6.7.8", proto=17) / (b"x" * 20))),
        (
            "non-first fragment",
            bytes(IP(src="1.2.3.4", dst="5.6.7.8", frag=10) / TCP()),
        ),
        ("truncated TCP header", bytes(IP(src="1.2.3.4", dst="5.6.7.8") / TCP())[:30]),
        ("version 5", b"\x55" + bytes(39)),
    ],
)
def test_parse_rejects_what_is_not_a_usable_segment(
    description: str, packet: bytes
) -> None:
    assert parse_datagram(packet) is None, description


def test_build_rejects_mixed_address_sizes() -> None:
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        build_datagram(bytes(4), bytes(16), 1, 2, OutboundSegment(0, 0, TCP_ACK, 0))
