"""Tests for the sans-IO user-space TCP client: segments in, segments out."""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pktscan.net.usertcp import (
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    InboundSegment,
    OutboundSegment,
    TcpClient,
    TcpEvent,
    TcpOutput,
    TcpSettings,
    TcpState,
    sequence_difference,
)

CLIENT_ISN = 0xFFFFFF00  # close to wrapping, so sequence arithmetic wraps
SERVER_ISN = 0xFFFFFFF0
REQUEST = b"\x16\x03\x01" + bytes(range(200))
SETTINGS = TcpSettings(mss=1460, syn_attempts=2, syn_timeout=1.0)


def syn_ack(client: TcpClient, **options: int | None) -> InboundSegment:
    return InboundSegment(
        SERVER_ISN,
        (CLIENT_ISN + 1) % 2**32,
        TCP_SYN | TCP_ACK,
        65535,
        mss=options.get("mss", 1460),
        window_scale=options.get("window_scale", 7),
    )


def established(
    request: bytes | None = REQUEST, settings: TcpSettings = SETTINGS
) -> tuple[TcpClient, TcpOutput]:
    client = TcpClient(CLIENT_ISN, settings, request)
    client.start(0.0)
    return client, client.receive(syn_ack(client), 0.01)


def server_data(offset: int, payload: bytes, flags: int = TCP_ACK) -> InboundSegment:
    """A server segment carrying stream bytes from `offset` on."""
    sequence = (SERVER_ISN + 1 + offset) % 2**32
    acknowledgment = (CLIENT_ISN + 1 + len(REQUEST)) % 2**32
    return InboundSegment(sequence, acknowledgment, flags, 502, payload)


def test_sequence_difference_wraps() -> None:
    assert sequence_difference(5, 2**32 - 5) == 10
    assert sequence_difference(2**32 - 5, 5) == -10
    assert sequence_difference(7, 7) == 0


def test_syn_carries_mss_and_window_scale() -> None:
    client = TcpClient(CLIENT_ISN, TcpSettings(mss=8960, window_scale=5), REQUEST)
    output = client.start(0.0)
    (syn,) = output.segments
    assert syn.flags == TCP_SYN
    assert syn.sequence == CLIENT_ISN
    assert syn.acknowledgment == 0
    # kind 2 len 4 MSS | NOP | kind 3 len 3 shift
    assert syn.options == struct.pack("!BBHBBBB", 2, 4, 8960, 1, 3, 3, 5)
    assert syn.window == 65535
    assert client.state is TcpState.SYN_SENT
    assert client.deadline == 1.0


def test_request_sent_with_handshake_ack() -> None:
    client, output = established()
    assert output.events == [TcpEvent.ESTABLISHED]
    (ack,) = output.segments
    assert ack.flags == TCP_ACK | TCP_PSH
    assert ack.sequence == (CLIENT_ISN + 1) % 2**32
    assert ack.acknowledgment == (SERVER_ISN + 1) % 2**32
    assert ack.payload == REQUEST
    # 256 KiB receive window, scaled by 2**7.
    assert ack.window == 2048
    assert client.state is TcpState.ESTABLISHED


def test_window_unscaled_when_server_omits_the_option() -> None:
    client = TcpClient(CLIENT_ISN, SETTINGS, REQUEST)
    client.start(0.0)
    output = client.receive(syn_ack(client, window_scale=None), 0.0)
    assert output.segments[0].window == 65535


def test_request_split_at_the_server_mss() -> None:
    request = bytes(1000)
    client = TcpClient(CLIENT_ISN, SETTINGS, request)
    client.start(0.0)
    output = client.receive(syn_ack(client, mss=400), 0.0)
    assert [len(segment.payload) for segment in output.segments] == [400, 400, 200]
    sequences = [segment.sequence for segment in output.segments]
    first = (CLIENT_ISN + 1) % 2**32
    assert sequences == [first, (first + 400) % 2**32, (first + 800) % 2**32]
    assert [segment.flags for segment in output.segments] == [
        TCP_ACK,
        TCP_ACK,
        TCP_ACK | TCP_PSH,
    ]


def test_syn_ack_with_wrong_acknowledgment_is_ignored() -> None:
    client = TcpClient(CLIENT_ISN, SETTINGS, REQUEST)
    client.start(0.0)
    wrong = InboundSegment(SERVER_ISN, 12345, TCP_SYN | TCP_ACK, 65535)
    assert client.receive(wrong, 0.0) == TcpOutput()
    assert client.state is TcpState.SYN_SENT


def test_rst_to_syn_means_refused() -> None:
    client = TcpClient(CLIENT_ISN, SETTINGS, REQUEST)
    client.start(0.0)
    rst = InboundSegment(0, (CLIENT_ISN + 1) % 2**32, TCP_RST | TCP_ACK, 0)
    output = client.receive(rst, 0.0)
    assert output.events == [TcpEvent.REFUSED]
    assert output.segments == []
    assert client.state is TcpState.CLOSED


def test_syn_retransmitted_then_unanswered() -> None:
    client = TcpClient(CLIENT_ISN, SETTINGS, REQUEST)
    client.start(0.0)
    assert client.poll(0.5) == TcpOutput()
    second = client.poll(1.0)
    assert [segment.flags for segment in second.segments] == [TCP_SYN]
    assert second.segments[0].sequence == CLIENT_ISN
    assert client.deadline == 2.0
    last = client.poll(2.0)
    assert last.events == [TcpEvent.UNANSWERED]
    assert last.segments == []
    assert client.state is TcpState.CLOSED
    assert client.deadline is None


def test_request_retransmitted_with_backoff_then_stalled() -> None:
    client, _ = established()
    assert client.deadline == pytest.approx(1.01)
    first = client.poll(1.01)
    assert [segment.payload for segment in first.segments] == [REQUEST]
    assert client.deadline == pytest.approx(3.01)
    second = client.poll(3.01)
    assert [segment.payload for segment in second.segments] == [REQUEST]
    stalled = client.poll(100.0)
    assert stalled.events == [TcpEvent.STALLED]


def test_acknowledged_request_is_not_retransmitted() -> None:
    client, _ = established()
    client.receive(server_data(0, b"", TCP_ACK), 0.02)
    assert client.deadline is None
    assert client.poll(10.0) == TcpOutput()


def test_partial_acknowledgment_retransmits_only_the_rest() -> None:
    client, _ = established()
    acknowledgment = (CLIENT_ISN + 1 + 50) % 2**32
    client.receive(InboundSegment(SERVER_ISN + 1, acknowledgment, TCP_ACK, 0), 0.02)
    output = client.poll(2.0)
    assert [segment.payload for segment in output.segments] == [REQUEST[50:]]
    assert output.segments[0].sequence == acknowledgment


def test_every_second_segment_acked() -> None:
    client, _ = established()
    first = client.receive(server_data(0, b"a" * 1460), 0.02)
    assert first.data == b"a" * 1460
    assert first.segments == []
    assert client.deadline == pytest.approx(0.06)
    second = client.receive(server_data(1460, b"b" * 1460), 0.03)
    assert second.data == b"b" * 1460
    (ack,) = second.segments
    assert ack.flags == TCP_ACK
    assert ack.acknowledgment == (SERVER_ISN + 1 + 2920) % 2**32


def test_delayed_ack_fires_after_the_delay() -> None:
    client, _ = established()
    client.receive(server_data(0, b"a" * 100), 0.02)
    # The request's retransmission timer is still running.
    client.receive(server_data(0, b"", TCP_ACK), 0.02)
    output = client.poll(0.06)
    (ack,) = output.segments
    assert ack.acknowledgment == (SERVER_ISN + 1 + 100) % 2**32


def test_out_of_order_segment_held() -> None:
    client, _ = established()
    later = client.receive(server_data(100, b"B" * 100), 0.02)
    assert later.data == b""
    (duplicate_ack,) = later.segments
    assert duplicate_ack.acknowledgment == (SERVER_ISN + 1) % 2**32
    filled = client.receive(server_data(0, b"A" * 100), 0.03)
    assert filled.data == b"A" * 100 + b"B" * 100
    assert client.receive_next == (SERVER_ISN + 1 + 200) % 2**32


def test_duplicate_segment_acked_and_not_delivered_again() -> None:
    client, _ = established()
    client.receive(server_data(0, b"A" * 100), 0.02)
    again = client.receive(server_data(0, b"A" * 100), 0.03)
    assert again.data == b""
    (ack,) = again.segments
    assert ack.acknowledgment == (SERVER_ISN + 1 + 100) % 2**32


def test_overlapping_segments_trimmed() -> None:
    client, _ = established()
    stream = bytes(range(256)) * 4
    client.receive(server_data(300, stream[300:600]), 0.02)
    client.receive(server_data(500, stream[500:800]), 0.02)
    first = client.receive(server_data(0, stream[0:350]), 0.02)
    assert first.data == stream[0:800]
    second = client.receive(server_data(700, stream[700:1024]), 0.02)
    assert second.data == stream[800:1024]


def test_out_of_order_store_bounded() -> None:
    settings = TcpSettings(max_out_of_order=2)
    client, _ = established(settings=settings)
    for offset in (100, 200, 300):
        client.receive(server_data(offset, b"x" * 100), 0.02)
    assert len(client.out_of_order) == 2


def test_data_beyond_the_window_dropped() -> None:
    settings = TcpSettings(mss=1460, receive_window=4096, window_scale=0)
    client, _ = established(settings=settings)
    client.receive(server_data(4000, b"y" * 500), 0.02)
    assert [len(piece) for piece in client.out_of_order.values()] == [96]


def test_fin_after_data_gives_data_then_fin() -> None:
    client, _ = established()
    output = client.receive(server_data(0, b"bye", TCP_ACK | TCP_FIN), 0.02)
    assert output.data == b"bye"
    assert output.events == [TcpEvent.FIN]


def test_early_fin_waits_for_data() -> None:
    client, _ = established()
    early = client.receive(server_data(3, b"", TCP_ACK | TCP_FIN), 0.02)
    assert early.events == []
    late = client.receive(server_data(0, b"abc"), 0.03)
    assert late.data == b"abc"
    assert late.events == [TcpEvent.FIN]


def test_in_window_reset_closes() -> None:
    client, _ = established()
    output = client.receive(server_data(10, b"", TCP_RST), 0.02)
    assert output.events == [TcpEvent.RESET]
    assert client.state is TcpState.CLOSED


def test_out_of_window_reset_ignored() -> None:
    client, _ = established()
    output = client.receive(server_data(-100, b"", TCP_RST), 0.02)
    assert output.events == []
    assert client.state is TcpState.ESTABLISHED


def test_abort_sends_rst_at_send_next() -> None:
    client, _ = established()
    client.receive(server_data(0, b"abcd"), 0.02)
    (rst,) = client.abort().segments
    assert rst.flags == TCP_RST | TCP_ACK
    assert rst.sequence == (CLIENT_ISN + 1 + len(REQUEST)) % 2**32
    assert rst.acknowledgment == (SERVER_ISN + 1 + 4) % 2**32
    assert client.state is TcpState.CLOSED
    assert client.abort().segments == []


def test_abort_before_syn_ack_sends_nothing() -> None:
    client = TcpClient(CLIENT_ISN, SETTINGS, REQUEST)
    client.start(0.0)
    assert client.abort().segments == []


def test_held_connection_sends_bare_ack_then_request() -> None:
    client, output = established(request=None)
    (ack,) = output.segments
    assert ack.flags == TCP_ACK
    assert ack.payload == b""
    assert client.state is TcpState.HELD
    released = client.send_request(REQUEST, 0.5)
    (segment,) = released.segments
    assert segment.payload == REQUEST
    assert segment.sequence == (CLIENT_ISN + 1) % 2**32
    assert client.state.value == "established"


def test_repeated_syn_ack_gets_the_request_again() -> None:
    client, _ = established()
    output = client.receive(syn_ack(client), 0.5)
    assert [segment.payload for segment in output.segments] == [REQUEST]


def test_start_twice_rejected() -> None:
    client = TcpClient(CLIENT_ISN, SETTINGS, REQUEST)
    client.start(0.0)
    with pytest.raises(ValueError, match="already started"):
        client.start(0.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"mss": 20}, "invalid MSS 20"),
        ({"window_scale": 15}, "invalid window scale 15"),
        ({"receive_window": 100}, "invalid receive window 100"),
        ({"syn_attempts": 0}, "syn_attempts 0"),
    ],
)
def test_settings_reject_invalid_values(
    arguments: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TcpSettings(**arguments)


def _deliver(
    client: TcpClient, pieces: list[tuple[int, bytes]]
) -> tuple[bytes, list[OutboundSegment]]:
    received = b""
    sent: list[OutboundSegment] = []
    for offset, payload in pieces:
        output = client.receive(server_data(offset, payload), 0.02)
        received += output.data
        sent += output.segments
    return received, sent


@settings(max_examples=300, deadline=None)
@given(
    stream=st.binary(min_size=1, max_size=6000),
    cuts=st.lists(st.integers(min_value=1, max_value=6000), max_size=12),
    seed=st.integers(min_value=0, max_value=2**32),
    duplicates=st.integers(min_value=0, max_value=6),
)
def test_any_order_of_segments_reassembles_the_stream(
    stream: bytes, cuts: list[int], seed: int, duplicates: int
) -> None:
    """Cut the stream anywhere, shuffle, duplicate and overlap the pieces:
    the client delivers the stream exactly once, in order."""
    rng = random.Random(seed)
    bounds = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    pieces = [(start, stream[start:end]) for start, end in itertools.pairwise(bounds)]
    for _ in range(duplicates):
        start = rng.randrange(len(stream))
        end = rng.randrange(start, len(stream)) + 1
        pieces.append((start, stream[start:end]))
    rng.shuffle(pieces)
    settings_ = TcpSettings(max_out_of_order=len(pieces) + 1)
    client, _ = established(settings=settings_)
    received, sent = _deliver(client, pieces)
    assert received == stream
    assert client.receive_next == (SERVER_ISN + 1 + len(stream)) % 2**32
    assert client.out_of_order == {}
    assert all(segment.flags == TCP_ACK for segment in sent)
