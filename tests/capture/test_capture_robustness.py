"""Arbitrary bytes never escape the capture code as an unexpected exception.

The invariants: opening a file either works or raises CaptureError.
Iterating ends, with or without a recorded damage. Decoding a frame returns a
segment, a datagram or None. Naming a stream's messages returns a view.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from capture_builders import CaptureBuilder, scan_target
from hypothesis import given, settings
from hypothesis import strategies as st

from pktscan.capture.checker import check_flows
from pktscan.capture.decode import decode_frame
from pktscan.capture.flows import build_flows
from pktscan.capture.reader import Frame, read_capture
from pktscan.capture.sequence import Profile
from pktscan.capture.tlsview import view_stream
from pktscan.errors import CaptureError

LINK_TYPES = [0, 1, 12, 101, 108, 113, 228, 229, 276, 999]


def _valid_capture() -> bytes:
    builder = CaptureBuilder()
    scan_target(builder, [])
    with tempfile.TemporaryDirectory() as folder:
        return builder.write(Path(folder) / "base.pcap").read_bytes()


VALID = _valid_capture()


def _read_all(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.pcap"
        path.write_bytes(data)
        try:
            reader = read_capture(path)
        except CaptureError:
            return
        with reader:
            frames = list(reader)
        assert reader.frames_read == len(frames)
        flows = build_flows(frames)
        for profile in Profile:
            check_flows(flows, profile)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_reader_arbitrary_bytes(data: bytes) -> None:
    _read_all(data)


@settings(max_examples=200, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(VALID) - 1),
    replacement=st.binary(min_size=1, max_size=8),
    cut=st.integers(min_value=0, max_value=len(VALID)),
)
def test_reader_mutated_capture(position: int, replacement: bytes, cut: int) -> None:
    mutated = VALID[:position] + replacement + VALID[position + len(replacement) :]
    _read_all(mutated[:cut] if cut > 24 else mutated)


@settings(max_examples=300, deadline=None)
@given(linktype=st.sampled_from(LINK_TYPES), data=st.binary(max_size=200))
def test_decode_arbitrary_frame(linktype: int, data: bytes) -> None:
    frame = Frame(1, 0.0, 0, linktype, data, len(data))
    decode_frame(frame)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), from_client=st.booleans())
def test_view_arbitrary_stream(data: bytes, from_client: bool) -> None:
    view = view_stream(data, from_client=from_client)
    assert view.protocol in ("tls", "sslv2", "http", "other", "empty")


@settings(max_examples=200, deadline=None)
@given(
    header=st.sampled_from([b"\x16\x03\x01", b"\x15\x03\x03", b"\x80", b"\x16\x03"]),
    body=st.binary(max_size=300),
    from_client=st.booleans(),
)
def test_view_record_like_stream(header: bytes, body: bytes, from_client: bool) -> None:
    view_stream(header + body, from_client=from_client)
