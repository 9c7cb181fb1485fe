"""Tests for the patched SYN/RST templates and the response parser."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from pktscan.net.packet import (
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    PacketTemplate,
    parse_tcp_response,
)


def random_address(rng: random.Random, version: int) -> bytes:
    size = 4 if version == 4 else 16
    return rng.getrandbits(size * 8).to_bytes(size, "big")


def scapy_checksums(packet: bytes, version: int) -> tuple[int | None, int]:
    """Return (IP checksum, TCP checksum) as scapy computes them afresh."""
    layer = IP if version == 4 else IPv6
    parsed = layer(packet)
    del parsed[TCP].chksum
    if version == 4:
        del parsed.chksum
    rebuilt = layer(bytes(parsed))
    return (rebuilt.chksum if version == 4 else None), rebuilt[TCP].chksum


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(("flags", "with_options"), [("S", True), ("R", False)])
def test_fill_checksums_match_scapy(
    version: int, flags: str, with_options: bool
) -> None:
    rng = random.Random(version * 10 + len(flags))
    template = PacketTemplate(version, flags, with_options=with_options)
    for _ in range(500):
        source = random_address(rng, version)
        destination = random_address(rng, version)
        source_port = rng.randrange(65536)
        destination_port = rng.randrange(65536)
        sequence = rng.getrandbits(32)
        packet = bytes(
            template.fill(
                source,
                destination,
                source_port,
                destination_port,
                sequence,
                ip_id=rng.randrange(65536),
                timestamp=rng.getrandbits(32),
            )
        )
        ip_checksum, tcp_checksum = scapy_checksums(packet, version)
        tcp = 20 if version == 4 else 40
        assert struct.unpack_from("!H", packet, tcp + 16)[0] == tcp_checksum
        if version == 4:
            assert struct.unpack_from("!H", packet, 10)[0] == ip_checksum


def test_fill_extreme_values() -> None:
    template = PacketTemplate(4, "S", with_options=True)
    for value in (0, 0xFFFF):
        address = bytes([value & 0xFF] * 4)
        sequence = 0 if value == 0 else 0xFFFFFFFF
        packet = bytes(
            template.fill(
                address, address, value, value, sequence, ip_id=value,
                timestamp=sequence,
            )
        )  # fmt: skip
        ip_checksum, tcp_checksum = scapy_checksums(packet, 4)
        assert struct.unpack_from("!H", packet, 36)[0] == tcp_checksum
        assert struct.unpack_from("!H", packet, 10)[0] == ip_checksum


def test_syn_template_fields() -> None:
    template = PacketTemplate(4, "S", with_options=True)
    packet = bytes(
        template.fill(
            bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]), 61000, 443, 0x01020304,
            ip_id=7, timestamp=99,
        )
    )  # fmt: skip
    parsed = IP(packet)
    assert parsed.src == "198.18.0.1"
    assert parsed.dst == "198.18.0.2"
    assert parsed.ttl == 64
    assert parsed.id == 7
    assert parsed.flags == "DF"
    assert parsed[TCP].sport == 61000
    assert parsed[TCP].dport == 443
    assert parsed[TCP].seq == 0x01020304
    assert parsed[TCP].flags == "S"
    assert parsed[TCP].window == 64240
    assert parsed[TCP].options == [
        ("MSS", 1460),
        ("SAckOK", b""),
        ("Timestamp", (99, 0)),
        ("NOP", None),
        ("WScale", 7),
    ]


def test_parse_syn_ack_from_scapy() -> None:
    built = bytes(
        IP(src="198.18.0.2", dst="198.18.0.1", ttl=61)
        / TCP(
            sport=443,
            dport=61000,
            seq=1000,
            ack=0x01020305,
            flags="SA",
            options=[("MSS", 1460), ("NOP", None), ("Timestamp", (5, 99))],
        )
    )
    response = parse_tcp_response(built)
    assert response is not None
    assert response.version == 4
    assert response.source_text == "198.18.0.2"
    assert response.destination == bytes([198, 18, 0, 1])
    assert response.source_port == 443
    assert response.destination_port == 61000
    assert response.sequence == 1000
    assert response.acknowledgment == 0x01020305
    assert response.flags == TCP_SYN | TCP_ACK
    assert response.ttl == 61
    assert response.timestamp_echo == 99


def test_parse_rst_ipv6() -> None:
    built = bytes(
        IPv6(src="2001:db8::2", dst="2001:db8::1", hlim=60)
        / TCP(sport=8444, dport=61000, seq=0, ack=77, flags="RA")
    )
    response = parse_tcp_response(built)
    assert response is not None
    assert response.version == 6
    assert response.source_text == "2001:db8::2"
    assert response.flags == TCP_RST | TCP_ACK
    assert response.ttl == 60
    assert response.timestamp_echo is None


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x45" * 19,
        bytes(IP(src="198.18.0.2", dst="198.18.0.1", proto=17) / (b"\x00" * 20)),
        bytes(IP(src="198.18.0.2", dst="198.18.0.1", frag=3) / TCP()),
        bytes(IP(src="198.18.0.2", dst="198.18.0.1") / TCP())[:30],
        b"\x20" + b"\x00" * 59,
    ],
    ids=["empty", "short", "udp", "fragment", "truncated_tcp", "version_2"],
)
def test_parse_rejects_non_responses(packet: bytes) -> None:
    assert parse_tcp_response(packet) is None


def test_parse_any_bytes_never_raises() -> None:
    rng = random.Random(5)
    base = bytes(
        IP(src="198.18.0.2", dst="198.18.0.1")
        / TCP(options=[("MSS", 1460), ("Timestamp", (1, 2))])
    )
    for _ in range(3000):
        mutated = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        cut = rng.randrange(len(mutated) + 1)
        parse_tcp_response(bytes(mutated[:cut]))
