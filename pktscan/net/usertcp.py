"""A minimal user-space TCP client for one request and its reply, sans-IO.

`TcpClient` runs one connection of the raw engine: it sends a SYN, puts the
request (a ClientHello) on the ACK of the SYN/ACK, reassembles the server's
reply by sequence number, acknowledges it so that a large certificate chain
keeps flowing, retransmits the SYN and the request on timeout, and ends the
connection with an RST when the driver calls `abort`. It owns no socket and
no clock: each call takes the current time and returns the segments to send,
the reply bytes now in order, and the events that happened (`TcpOutput`). The driver
(`pktscan.grab.raw`) turns segments into packets and calls `poll` at
`deadline`.

What it leaves out, on purpose: no FIN of its own (the connection always
ends with an RST), no congestion control (the request fits in one or a few
segments), no SACK and no timestamps (neither is offered in the SYN, so the
server sends neither). Sequence arithmetic is modulo 2**32 (RFC 793
section 3.3).

Segment flow of a normal connection::

    client                          server
    SYN (MSS, window scale)   --->
                              <---  SYN/ACK
    ACK + request             --->
                              <---  reply segments (ACKed every second one)
    RST/ACK                   --->  once the caller has what it needs
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

SEQUENCE_SPACE = 1 << 32
HALF_SEQUENCE_SPACE = 1 << 31
MAX_WINDOW_FIELD = 0xFFFF
MAX_WINDOW_SCALE = 14  # RFC 7323 section 2.3

TCP_OPTION_NOP = 1
TCP_OPTION_MSS = 2
TCP_OPTION_WINDOW_SCALE = 3
# RFC 9293 section 3.7.1: without an MSS option the peer may send 536 bytes.
DEFAULT_PEER_MSS = 536


def sequence_difference(a: int, b: int) -> int:
    """Return a - b in sequence space, as a signed number in [-2**31, 2**31)."""
    return (a - b + HALF_SEQUENCE_SPACE) % SEQUENCE_SPACE - HALF_SEQUENCE_SPACE


class TcpState(enum.Enum):
    """Connection state, in the client's view.

    HELD is ESTABLISHED with the request not yet sent, because the caller
    sends it later with `send_request`.
    """

    CREATED = "created"
    SYN_SENT = "syn_sent"
    HELD = "held"
    ESTABLISHED = "established"
    CLOSED = "closed"


class TcpEvent(enum.Enum):
    """An event of a connection that the driver acts on."""

    ESTABLISHED = "established"  # the SYN/ACK arrived
    REFUSED = "refused"  # an RST acknowledged the SYN: the port is closed
    UNANSWERED = "unanswered"  # every SYN went unanswered
    RESET = "reset"  # the server reset the established connection
    FIN = "fin"  # the server closed its side, all data before it delivered
    STALLED = "stalled"  # the request was never acknowledged


@dataclass(frozen=True, slots=True)
class TcpSettings:
    """Parameters of every connection of one engine.

    Attributes:
        mss: maximum segment size we announce: the interface MTU less the IP
            and TCP headers, so that the server sends full-size segments.
        receive_window: bytes of reply we accept beyond the last in-order
            byte, out-of-order segments included.
        window_scale: shift announced in the SYN (RFC 7323), so that
            `receive_window` can exceed 65535 bytes.
        syn_attempts: SYNs sent before the port counts as unanswered.
        syn_timeout: seconds to wait for a SYN/ACK after each SYN.
        retransmit_timeout: seconds before the unacknowledged request is sent
            again; doubled after each retransmission.
        request_attempts: transmissions of the request, the first included.
        delayed_ack: seconds an ACK for one in-order segment may wait for a
            second segment, as a delayed ACK (RFC 9293 section 3.8.6.3).
        max_out_of_order: segments kept while waiting for a gap to fill; a
            segment beyond it is dropped and the server retransmits it.
    """

    mss: int = 1460
    receive_window: int = 256 * 1024
    window_scale: int = 7
    syn_attempts: int = 2
    syn_timeout: float = 1.0
    retransmit_timeout: float = 1.0
    request_attempts: int = 3
    delayed_ack: float = 0.04
    max_out_of_order: int = 64

    def __post_init__(self) -> None:
        if not 88 <= self.mss <= 65495:
            raise ValueError(f"invalid MSS {self.mss}: must be 88-65495")
        if not 0 <= self.window_scale <= MAX_WINDOW_SCALE:
            raise ValueError(f"invalid window scale {self.window_scale}: 0-14")
        if not self.mss <= self.receive_window <= MAX_WINDOW_FIELD << self.window_scale:
            raise ValueError(
                f"invalid receive window {self.receive_window}: must be from the"
                f" MSS to {MAX_WINDOW_FIELD << self.window_scale}"
            )
        if self.syn_attempts < 1 or self.request_attempts < 1:
            raise ValueError(
                f"syn_attempts {self.syn_attempts} and request_attempts"
                f" {self.request_attempts} must be 1 or more"
            )


@dataclass(frozen=True, slots=True)
class InboundSegment:
    """The fields of a received segment that the client reads.

    Attributes:
        mss, window_scale: the values of those options, only read on a
            SYN/ACK; None when absent.
    """

    sequence: int
    acknowledgment: int
    flags: int
    window: int
    payload: bytes = b""
    mss: int | None = None
    window_scale: int | None = None


@dataclass(frozen=True, slots=True)
class OutboundSegment:
    """A segment for the driver to send; `options` is the encoded TCP options."""

    sequence: int
    acknowledgment: int
    flags: int
    window: int
    payload: bytes = b""
    options: bytes = b""


@dataclass(slots=True)
class TcpOutput:
    """The result of one call: segments to send, reply bytes, events."""

    segments: list[OutboundSegment] = field(default_factory=list)
    data: bytes = b""
    events: list[TcpEvent] = field(default_factory=list)


def syn_options(mss: int, window_scale: int) -> bytes:
    """Encode MSS, NOP and window scale, 8 bytes, in the order Linux uses."""
    return struct.pack(
        "!BBHBBBB",
        TCP_OPTION_MSS,
        4,
        mss,
        TCP_OPTION_NOP,
        TCP_OPTION_WINDOW_SCALE,
        3,
        window_scale,
    )


class TcpClient:
    """One client connection; see the module docstring.

    Args:
        initial_sequence: our initial sequence number, 0 to 2**32 - 1, random
            per connection so that old segments do not match.
        settings: the engine's parameters.
        request: the bytes to send on the ACK of the SYN/ACK. None keeps the
            connection in HELD until `send_request`.
    """

    __slots__ = (
        "ack_at",
        "fin_sequence",
        "initial_sequence",
        "out_of_order",
        "peer_mss",
        "receive_next",
        "request",
        "request_sent",
        "retransmit_at",
        "retransmit_timeout",
        "scaled",
        "send_next",
        "send_unacknowledged",
        "settings",
        "state",
        "syn_sent",
        "unacknowledged_segments",
    )

    def __init__(
        self, initial_sequence: int, settings: TcpSettings, request: bytes | None
    ) -> None:
        if not 0 <= initial_sequence < SEQUENCE_SPACE:
            raise ValueError(f"invalid initial sequence number {initial_sequence}")
        self.settings = settings
        self.state = TcpState.CREATED
        self.initial_sequence = initial_sequence
        self.send_unacknowledged = initial_sequence
        self.send_next = initial_sequence
        self.receive_next = 0
        self.request = request
        self.peer_mss = DEFAULT_PEER_MSS
        self.scaled = False
        self.out_of_order: dict[int, bytes] = {}
        self.fin_sequence: int | None = None
        self.unacknowledged_segments = 0
        self.syn_sent = 0
        self.request_sent = 0
        self.retransmit_at: float | None = None
        self.ack_at: float | None = None
        self.retransmit_timeout = settings.retransmit_timeout

    @property
    def deadline(self) -> float | None:
        """Time at which `poll` has work to do, or None."""
        if self.retransmit_at is None:
            return self.ack_at
        if self.ack_at is None:
            return self.retransmit_at
        return min(self.retransmit_at, self.ack_at)

    def start(self, now: float) -> TcpOutput:
        """Send the SYN."""
        if self.state is not TcpState.CREATED:
            raise ValueError(f"connection already started (state {self.state.value})")
        self.state = TcpState.SYN_SENT
        self.send_next = (self.initial_sequence + 1) % SEQUENCE_SPACE
        return TcpOutput(segments=[self._syn(now)])

    def send_request(self, request: bytes, now: float) -> TcpOutput:
        """Send the request of a HELD connection; no-op in any other state."""
        if self.state is not TcpState.HELD:
            return TcpOutput()
        self.request = request
        self.state = TcpState.ESTABLISHED
        self.ack_at = None
        self.unacknowledged_segments = 0
        return TcpOutput(segments=self._send_request_bytes(now))

    def abort(self) -> TcpOutput:
        """End the connection with an RST; none is needed before the SYN/ACK."""
        state = self.state
        self.state = TcpState.CLOSED
        self.retransmit_at = None
        self.ack_at = None
        if state not in (TcpState.HELD, TcpState.ESTABLISHED):
            return TcpOutput()
        rst = OutboundSegment(
            self.send_next, self.receive_next, TCP_RST | TCP_ACK, 0, b""
        )
        return TcpOutput(segments=[rst])

    def poll(self, now: float) -> TcpOutput:
        """Run the timers that are due: retransmissions and delayed ACKs."""
        output = TcpOutput()
        if self.ack_at is not None and now >= self.ack_at:
            output.segments.append(self._ack())
        if self.retransmit_at is None or now < self.retransmit_at:
            return output
        if self.state is TcpState.SYN_SENT:
            self._retransmit_syn(now, output)
        elif self.state is TcpState.ESTABLISHED:
            self._retransmit_request(now, output)
        else:
            self.retransmit_at = None
        return output

    def receive(self, segment: InboundSegment, now: float) -> TcpOutput:
        """Process one segment from the server."""
        if self.state is TcpState.SYN_SENT:
            return self._receive_in_syn_sent(segment, now)
        if self.state in (TcpState.HELD, TcpState.ESTABLISHED):
            return self._receive_established(segment, now)
        return TcpOutput()

    # Sending

    def _window_field(self) -> int:
        window = self.settings.receive_window
        if self.scaled:
            window >>= self.settings.window_scale
        return min(window, MAX_WINDOW_FIELD)

    def _syn(self, now: float) -> OutboundSegment:
        self.syn_sent += 1
        self.retransmit_at = now + self.settings.syn_timeout
        # The window of a SYN is never scaled (RFC 7323 section 2.2).
        window = min(self.settings.receive_window, MAX_WINDOW_FIELD)
        options = syn_options(self.settings.mss, self.settings.window_scale)
        return OutboundSegment(self.initial_sequence, 0, TCP_SYN, window, b"", options)

    def _ack(self) -> OutboundSegment:
        self.ack_at = None
        self.unacknowledged_segments = 0
        return OutboundSegment(
            self.send_next, self.receive_next, TCP_ACK, self._window_field()
        )

    def _send_request_bytes(self, now: float) -> list[OutboundSegment]:
        """Send the request from the first unacknowledged byte on."""
        assert self.request is not None
        first = (self.initial_sequence + 1) % SEQUENCE_SPACE
        start = sequence_difference(self.send_unacknowledged, first)
        size = min(self.peer_mss, self.settings.mss)
        segments = []
        sequence = self.send_unacknowledged
        for offset in range(start, len(self.request), size):
            chunk = self.request[offset : offset + size]
            last = offset + size >= len(self.request)
            flags = TCP_ACK | (TCP_PSH if last else 0)
            segments.append(
                OutboundSegment(
                    sequence, self.receive_next, flags, self._window_field(), chunk
                )
            )
            sequence = (sequence + len(chunk)) % SEQUENCE_SPACE
        self.send_next = (first + len(self.request)) % SEQUENCE_SPACE
        self.request_sent += 1
        self.unacknowledged_segments = 0
        self.ack_at = None
        self.retransmit_at = now + self.retransmit_timeout if segments else None
        return segments

    def _retransmit_syn(self, now: float, output: TcpOutput) -> None:
        if self.syn_sent < self.settings.syn_attempts:
            output.segments.append(self._syn(now))
            return
        self.state = TcpState.CLOSED
        self.retransmit_at = None
        output.events.append(TcpEvent.UNANSWERED)

    def _retransmit_request(self, now: float, output: TcpOutput) -> None:
        if self.request_sent < self.settings.request_attempts:
            self.retransmit_timeout *= 2
            output.segments.extend(self._send_request_bytes(now))
            return
        self.retransmit_at = None
        output.events.append(TcpEvent.STALLED)

    # Receiving

    def _receive_in_syn_sent(self, segment: InboundSegment, now: float) -> TcpOutput:
        flags = segment.flags
        # RFC 9293 section 3.10.7.3: in SYN-SENT only an ACK of our SYN is
        # acceptable. Anything else is dropped without a reply.
        if not flags & TCP_ACK or segment.acknowledgment != self.send_next:
            return TcpOutput()
        if flags & TCP_RST:
            self.state = TcpState.CLOSED
            self.retransmit_at = None
            return TcpOutput(events=[TcpEvent.REFUSED])
        if not flags & TCP_SYN:
            return TcpOutput()

        self.send_unacknowledged = self.send_next
        self.receive_next = (segment.sequence + 1) % SEQUENCE_SPACE
        if segment.mss is not None and segment.mss > 0:
            self.peer_mss = segment.mss
        self.scaled = segment.window_scale is not None
        self.retransmit_at = None
        output = TcpOutput(events=[TcpEvent.ESTABLISHED])
        if self.request is None:
            self.state = TcpState.HELD
            output.segments.append(self._ack())
            return output
        self.state = TcpState.ESTABLISHED
        output.segments.extend(self._send_request_bytes(now))
        return output

    def _receive_established(self, segment: InboundSegment, now: float) -> TcpOutput:
        flags = segment.flags
        if flags & TCP_RST:
            return self._receive_reset(segment)
        if flags & TCP_SYN:
            # A retransmitted SYN/ACK: our ACK (and request) was lost.
            return self._answer_repeated_syn(segment, now)
        if flags & TCP_ACK:
            self._receive_acknowledgment(segment.acknowledgment)

        output = TcpOutput()
        immediate = False
        if segment.payload:
            data, in_order = self._accept_payload(segment.sequence, segment.payload)
            output.data = data
            immediate = not in_order
        if flags & TCP_FIN:
            self.fin_sequence = (
                segment.sequence + len(segment.payload)
            ) % SEQUENCE_SPACE
        if self.fin_sequence is not None and self.fin_sequence == self.receive_next:
            self.receive_next = (self.receive_next + 1) % SEQUENCE_SPACE
            self.fin_sequence = None
            output.events.append(TcpEvent.FIN)
            return output
        if segment.payload:
            self._acknowledge_data(immediate, now, output)
        return output

    def _receive_reset(self, segment: InboundSegment) -> TcpOutput:
        # RFC 5961 section 3 accepts an RST only at exactly receive_next and
        # sends a challenge ACK for other in-window RSTs. A client that is
        # about to reset anyway takes any in-window RST.
        offset = sequence_difference(segment.sequence, self.receive_next)
        if not 0 <= offset < self.settings.receive_window:
            return TcpOutput()
        self.state = TcpState.CLOSED
        self.retransmit_at = None
        self.ack_at = None
        return TcpOutput(events=[TcpEvent.RESET])

    def _answer_repeated_syn(self, segment: InboundSegment, now: float) -> TcpOutput:
        if segment.acknowledgment != (self.initial_sequence + 1) % SEQUENCE_SPACE:
            return TcpOutput()
        if self.state is TcpState.ESTABLISHED and self.send_unacknowledged != (
            self.send_next
        ):
            return TcpOutput(segments=self._send_request_bytes(now))
        return TcpOutput(segments=[self._ack()])

    def _receive_acknowledgment(self, acknowledgment: int) -> None:
        advanced = sequence_difference(acknowledgment, self.send_unacknowledged)
        beyond = sequence_difference(acknowledgment, self.send_next)
        if advanced <= 0 or beyond > 0:
            return
        self.send_unacknowledged = acknowledgment
        if acknowledgment == self.send_next:
            self.retransmit_at = None

    def _acknowledge_data(self, immediate: bool, now: float, output: TcpOutput) -> None:
        """ACK every second in-order segment at once, else after the delay;
        out-of-order and duplicate segments get an immediate duplicate ACK
        (RFC 5681 section 4.2)."""
        self.unacknowledged_segments += 1
        if immediate or self.unacknowledged_segments >= 2:
            output.segments.append(self._ack())
        elif self.ack_at is None:
            self.ack_at = now + self.settings.delayed_ack

    def _accept_payload(self, sequence: int, payload: bytes) -> tuple[bytes, bool]:
        """Store or deliver one segment's payload.

        Returns the bytes now in order (empty when the segment filled no gap)
        and whether the segment started at `receive_next`.
        """
        offset = sequence_difference(sequence, self.receive_next)
        if offset + len(payload) <= 0:
            return b"", False
        if offset > 0:
            self._store_out_of_order(sequence, offset, payload)
            return b"", False
        if offset < 0:
            payload = payload[-offset:]
        pieces = [payload]
        self.receive_next = (self.receive_next + len(payload)) % SEQUENCE_SPACE
        if self.out_of_order:
            self._collect_out_of_order(pieces)
        return b"".join(pieces), offset == 0

    def _store_out_of_order(self, sequence: int, offset: int, payload: bytes) -> None:
        room = self.settings.receive_window - offset
        if room <= 0:
            return
        payload = payload[:room]
        stored = self.out_of_order.get(sequence)
        if stored is not None and len(stored) >= len(payload):
            return
        if stored is None and len(self.out_of_order) >= self.settings.max_out_of_order:
            return
        self.out_of_order[sequence] = payload

    def _collect_out_of_order(self, pieces: list[bytes]) -> None:
        """Move stored segments that now continue the stream into `pieces`,
        trimming overlaps and discarding segments wholly received.

        Each pass removes at least one stored segment or stops, so the loop
        runs at most once per stored segment.
        """
        progress = True
        while progress and self.out_of_order:
            progress = False
            for sequence in list(self.out_of_order):
                offset = sequence_difference(sequence, self.receive_next)
                if offset > 0:
                    continue
                payload = self.out_of_order.pop(sequence)
                progress = True
                if offset + len(payload) <= 0:
                    continue
                payload = payload[-offset:] if offset < 0 else payload
                pieces.append(payload)
                self.receive_next = (self.receive_next + len(payload)) % (
                    SEQUENCE_SPACE
                )
