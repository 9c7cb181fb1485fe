"""Reader and link-layer decoding tests on files built in the test."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import dpkt
import pytest
from capture_builders import (
    SCANNER,
    TARGET,
    CaptureBuilder,
    Conversation,
    frame_for,
    pppoe_frame,
)

from pktscan.capture.decode import Segment, decode_frame
from pktscan.capture.reader import Frame, read_capture
from pktscan.errors import CaptureError

PCAP_RECORD_HEADER_LEN = 16
PCAP_FILE_HEADER_LEN = 24


def _handshake_builder(client: str = SCANNER, server: str = TARGET) -> CaptureBuilder:
    builder = CaptureBuilder()
    conversation = Conversation(builder, (client, 50001), (server, 443))
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(b"\x16\x03\x01\x00\x01\x01")
    return builder


def _frames(path: Path) -> tuple[list[Frame], object]:
    with read_capture(path) as reader:
        frames = list(reader)
        return frames, reader.damage


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _pcapng(builder: CaptureBuilder, linktypes: tuple[int, ...]) -> bytes:
    """Return a pcapng file with one interface per link type, nanosecond clocks.

    Packets go round-robin over the interfaces.
    """
    section = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    data = _pcapng_block(0x0A0D0D0A, section)
    for linktype in linktypes:
        tsresol = struct.pack("<HHB", 9, 1, 9) + b"\0\0\0" + struct.pack("<HH", 0, 0)
        data += _pcapng_block(1, struct.pack("<HHI", linktype, 0, 0) + tsresol)
    for index, (timestamp, packet) in enumerate(builder.packets):
        interface = index % len(linktypes)
        frame = frame_for(linktypes[interface], packet)
        units = round(timestamp * 1e9)
        header = struct.pack(
            "<IIIII", interface, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)
        )
        data += _pcapng_block(6, header + frame)
    return data


def _flags(frames: list[Frame]) -> list[int]:
    segments = [decode_frame(frame) for frame in frames]
    assert all(isinstance(segment, Segment) for segment in segments)
    return [segment.flags for segment in segments if isinstance(segment, Segment)]


@pytest.mark.parametrize("linktype", [1, 0, 101, 113, 276])
def test_reader_link_types(tmp_path: Path, linktype: int) -> None:
    builder = _handshake_builder()
    path = builder.write(tmp_path / "link.pcap", linktype=linktype)
    frames, damage = _frames(path)

    assert damage is None
    assert [frame.linktype for frame in frames] == [linktype] * 4
    assert _flags(frames) == [0x02, 0x12, 0x10, 0x18]
    last = decode_frame(frames[3])
    assert isinstance(last, Segment)
    assert (last.src, last.sport, last.dst, last.dport) == (SCANNER, 50001, TARGET, 443)
    assert last.payload == b"\x16\x03\x01\x00\x01\x01"


def test_reader_ipv6(tmp_path: Path) -> None:
    builder = _handshake_builder("2001:db8::1", "2001:db8::2")
    frames, _ = _frames(builder.write(tmp_path / "v6.pcap"))
    segment = decode_frame(frames[0])

    assert isinstance(segment, Segment)
    assert segment.src == "2001:db8::1"
    assert segment.dst == "2001:db8::2"
    assert _flags(frames) == [0x02, 0x12, 0x10, 0x18]


def test_reader_pppoe(tmp_path: Path) -> None:
    builder = _handshake_builder()
    path = tmp_path / "pppoe.pcap"
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=1)
        for timestamp, packet in builder.packets:
            writer.writepkt(pppoe_frame(packet), timestamp)
    frames, _ = _frames(path)

    assert _flags(frames) == [0x02, 0x12, 0x10, 0x18]


def test_reader_gzip(tmp_path: Path) -> None:
    builder = _handshake_builder()
    path = builder.write_gzip(tmp_path / "capture.bin")
    with read_capture(path) as reader:
        frames = list(reader)
        assert reader.compressed
        assert reader.format == "pcap"

    assert len(frames) == 4
    assert frames[0].timestamp == pytest.approx(builder.packets[0][0])


def test_reader_pcapng_two_interfaces(tmp_path: Path) -> None:
    builder = _handshake_builder()
    # The name ends in .pcap but the magic number is pcapng's.
    path = tmp_path / "named.pcap"
    path.write_bytes(_pcapng(builder, (1, 276)))
    with read_capture(path) as reader:
        frames = list(reader)
        assert reader.format == "pcapng"

    assert [frame.linktype for frame in frames] == [1, 276, 1, 276]
    assert [frame.number for frame in frames] == [1, 2, 3, 4]
    assert frames[1].timestamp == pytest.approx(builder.packets[1][0], abs=1e-6)
    assert _flags(frames) == [0x02, 0x12, 0x10, 0x18]


def test_reader_pcapng_gzip_damage(tmp_path: Path) -> None:
    data = _pcapng(_handshake_builder(), (1,))
    path = tmp_path / "cut.pcapng.gz"
    path.write_bytes(gzip.compress(data[:-10]))
    frames, damage = _frames(path)

    assert len(frames) == 3
    assert damage is not None
    assert damage.number == 4
    assert damage.offset == len(data) - len(_last_block(data))
    assert "file ends after" in damage.reason


def _last_block(data: bytes) -> bytes:
    (total,) = struct.unpack("<I", data[-4:])
    return data[-total:]


def test_reader_truncated_pcap(tmp_path: Path) -> None:
    builder = _handshake_builder()
    path = builder.write(tmp_path / "cut.pcap")
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])
    frames, damage = _frames(path)

    last_length = 14 + len(builder.packets[-1][1])
    assert len(frames) == 3
    assert damage is not None
    assert damage.number == 4
    assert damage.offset == len(whole) - last_length - PCAP_RECORD_HEADER_LEN
    assert damage.reason == (
        f"file ends after {last_length - 3} of {last_length} bytes of the record"
    )


def test_reader_corrupt_record_length(tmp_path: Path) -> None:
    builder = _handshake_builder()
    path = builder.write(tmp_path / "corrupt.pcap")
    data = bytearray(path.read_bytes())
    second = (
        PCAP_FILE_HEADER_LEN + PCAP_RECORD_HEADER_LEN + 14 + len(builder.packets[0][1])
    )
    struct.pack_into("<I", data, second + 8, 4_325_376)
    path.write_bytes(bytes(data))
    frames, damage = _frames(path)

    assert len(frames) == 1
    assert damage is not None
    assert (damage.number, damage.offset) == (2, second)
    assert "captured length 4325376" in damage.reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"hello world, not a capture", "unknown magic number 68656c6c"),
        (bytes.fromhex("d4c3b2a1") + b"\0" * 5, "file header cut short"),
        (bytes.fromhex("0a0d0d0a") + b"\x1c\0\0\0" + b"\xff" * 4, "byte-order"),
    ],
)
def test_reader_unreadable(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with (
        pytest.raises(CaptureError, match=reason) as raised,
        read_capture(path) as reader,
    ):
        list(reader)
    assert str(path) in raised.value.message
    assert raised.value.hint


def test_reader_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="No such file"):
        read_capture(tmp_path / "absent.pcap")


def test_reader_cut_gzip_stream(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    conversation = Conversation(builder, (SCANNER, 50001), (TARGET, 443))
    conversation.syn()
    for _ in range(200):
        conversation.client_data(bytes(range(256)))
    packed = gzip.compress(builder.write(tmp_path / "plain.pcap").read_bytes())
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    frames, damage = _frames(path)

    assert 0 < len(frames) < 201
    assert damage is not None
    assert damage.number == len(frames) + 1
    assert damage.reason.startswith(("decompression failed", "file ends after"))


def test_reader_empty_simple_packet_block(tmp_path: Path) -> None:
    good = _pcapng(_handshake_builder(), (1,))
    path = tmp_path / "empty-spb.pcapng"
    # A Simple Packet Block (type 3) whose body lacks even the 4-byte
    # original length.
    path.write_bytes(good + _pcapng_block(3, b""))
    frames, damage = _frames(path)

    assert len(frames) == 4
    assert damage is not None
    assert damage.number == 5
    assert damage.offset == len(good)
    assert damage.reason == "simple packet block body of 0 bytes, expected >= 4"
