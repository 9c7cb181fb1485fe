"""Stream reassembly, connection grouping and DNS matching tests."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import dpkt
import pytest
from capture_builders import (
    RESOLVER,
    SCANNER,
    TARGET,
    CaptureBuilder,
    Conversation,
    dns_exchange,
    probe_open,
)
from hypothesis import given
from hypothesis import strategies as st

from pktscan.capture.flows import ConnectionKind, Side, flows_from_file
from pktscan.capture.stream import Gap, Stream, StreamBuilder

ISN = 4_294_967_000  # close to 2**32, so offsets wrap


def _stream(
    pieces: list[tuple[int, bytes]], missing: dict[int, int] | None = None
) -> Stream:
    builder = StreamBuilder()
    builder.add_syn(ISN)
    for number, (offset, payload) in enumerate(pieces, start=1):
        extra = (missing or {}).get(number, 0)
        builder.add((ISN + 1 + offset) % 2**32, payload, number, float(number), extra)
    return builder.build()


def test_stream_in_order() -> None:
    stream = _stream([(0, b"hello "), (6, b"world")])
    assert stream.data == b"hello world"
    assert stream.gaps == ()
    assert [(c.offset, c.length, c.number) for c in stream.chunks] == [
        (0, 6, 1),
        (6, 5, 2),
    ]


def test_stream_out_of_order() -> None:
    stream = _stream([(6, b"world"), (0, b"hello ")])
    assert stream.data == b"hello world"
    assert stream.out_of_order == 1
    first, second = stream.packet_at(0), stream.packet_at(7)
    assert first is not None
    assert second is not None
    assert first.number == 2
    assert second.number == 1


def test_stream_retransmission() -> None:
    stream = _stream([(0, b"hello "), (0, b"hello "), (6, b"world")])
    assert stream.data == b"hello world"
    assert stream.retransmissions == 1
    assert stream.conflicting_overlaps == 0


def test_stream_overlap_keeps_first() -> None:
    stream = _stream([(0, b"hello "), (3, b"LOWORLD"), (3, b"XX")])
    assert stream.data == b"hello ORLD"
    assert stream.conflicting_overlaps == 2
    assert stream.retransmissions == 1


def test_stream_gap() -> None:
    stream = _stream([(0, b"abc"), (10, b"xyz")])
    assert stream.data == b"abc"
    assert stream.gaps == (Gap(3, 10, 2, "missing"),)


def test_stream_snaplen_cut() -> None:
    stream = _stream([(0, b"abc"), (103, b"def")], missing={1: 100})
    assert stream.data == b"abc"
    assert stream.gaps == (Gap(3, 103, 1, "snaplen"),)


def test_stream_before_first_byte_ignored() -> None:
    builder = StreamBuilder()
    builder.add_syn(ISN)
    assert builder.add((ISN - 100) % 2**32, b"old", 1, 1.0, 0) is True
    assert builder.build().data == b""


@pytest.mark.parametrize("split", [1, 2, 5, 10])
def test_stream_any_split_order(split: int) -> None:
    payload = bytes(range(40))
    pieces = [(i, payload[i : i + split]) for i in range(0, len(payload), split)]
    stream = _stream(list(reversed(pieces)))
    assert stream.data == payload


def test_flows_probe_and_connection(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    probe_open(builder, 50001, (TARGET, 443))
    conversation = Conversation(builder, (SCANNER, 50001), (TARGET, 443), 9000, 9100)
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(b"hello")
    conversation.server_data(b"world")
    conversation.client_rst()
    flows = flows_from_file(builder.write(tmp_path / "reuse.pcap"))

    kinds = [connection.kind for connection in flows.connections]
    assert kinds == [ConnectionKind.PROBE, ConnectionKind.HANDSHAKE]
    probe, handshake = flows.connections
    assert [event.number for event in probe.events] == [1, 2, 3, 4]
    assert handshake.first_number == 5
    assert handshake.client == (SCANNER, 50001)
    assert handshake.client_stream.data == b"hello"
    assert handshake.server_stream.data == b"world"
    assert handshake.events[-1].sender is Side.CLIENT
    assert handshake.events[-1].flag_names == "RST/ACK"


def test_flows_syn_retransmission_same_connection(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    conversation = Conversation(builder, (SCANNER, 50001), (TARGET, 443))
    conversation.syn()
    conversation.syn()
    flows = flows_from_file(builder.write(tmp_path / "retry.pcap"))

    assert len(flows.connections) == 1
    assert flows.connections[0].kind is ConnectionKind.UNANSWERED
    assert [e.retransmission for e in flows.connections[0].events] == [False, True]


def test_flows_midstream_start(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    conversation = Conversation(builder, (SCANNER, 50001), (TARGET, 443))
    conversation.server_data(b"late")
    flows = flows_from_file(builder.write(tmp_path / "mid.pcap"))

    connection = flows.connections[0]
    assert connection.kind is ConnectionKind.PARTIAL
    assert connection.client == (SCANNER, 50001)
    assert connection.server_stream.data == b"late"


def test_flows_dns_matching(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    dns_exchange(builder, "www.lab.test", dpkt.dns.DNS_A, TARGET, 7)
    reverse = "2.0.18.198.in-addr.arpa"
    dns_exchange(builder, reverse, dpkt.dns.DNS_PTR, "www.lab.test", 8)
    question = dpkt.dns.DNS.Q(name="lost.lab.test", type=dpkt.dns.DNS_A, cls=1)
    unanswered = dpkt.dns.DNS(id=9, qd=[question])
    builder.udp((SCANNER, 40009), (RESOLVER, 53), bytes(unanswered))
    flows = flows_from_file(builder.write(tmp_path / "dns.pcap"))

    a, ptr, lost = flows.dns
    assert (a.query_number, a.response_number, a.answers) == (1, 2, (TARGET,))
    assert (ptr.qtype, ptr.answers) == (12, ("www.lab.test",))
    assert (lost.name, lost.response_number) == ("lost.lab.test", None)


@given(
    payload=st.binary(min_size=1, max_size=300),
    cuts=st.lists(st.integers(min_value=1, max_value=299), max_size=12),
    order=st.randoms(use_true_random=False),
    duplicates=st.lists(st.integers(min_value=0, max_value=20), max_size=4),
    isn=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_stream_property_any_arrival(
    payload: bytes,
    cuts: list[int],
    order: random.Random,
    duplicates: list[int],
    isn: int,
) -> None:
    """Any split, arrival order and duplication rebuilds the same bytes."""
    bounds = sorted({0, len(payload), *(c for c in cuts if c < len(payload))})
    pieces = [(a, payload[a:b]) for a, b in itertools.pairwise(bounds)]
    pieces += [pieces[i % len(pieces)] for i in duplicates]
    order.shuffle(pieces)
    builder = StreamBuilder()
    builder.add_syn(isn)
    for number, (offset, data) in enumerate(pieces, start=1):
        builder.add((isn + 1 + offset) % 2**32, data, number, float(number), 0)
    stream = builder.build()

    assert stream.data == payload
    assert stream.gaps == ()
    assert stream.conflicting_overlaps == 0
    assert stream.retransmissions == len(duplicates)
    assert sum(chunk.length for chunk in stream.chunks) == len(payload)
