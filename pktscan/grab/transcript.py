"""The attempt ladder with a transcript of every attempt, for `grab --explain`.

`grab_recorded` runs the same ladder as `kernel.grab_tls`, on the same
sockets and with the same read loop, but keeps for each attempt the hello
it sent and each chunk that recv() returned, stamped with the time since
the attempt started. The transcript contains raw bytes and times only: the
explanation replays the chunks through a fresh `HandshakeReader`, so that
what it prints comes from the reader's own events and offsets.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pktscan.certs import decode_chain
from pktscan.grab.kernel import StopReason, read_flight, record_from_outcome
from pktscan.grab.sockets import connect_abortive
from pktscan.results import AttemptRecord, TlsResult
from pktscan.tls.client import Event, HandshakeOutcome, HandshakeReader
from pktscan.tls.sets import PROTOCOL_SETS, ProtocolSet, build_set_hello

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReceivedChunk:
    """The bytes one recv() returned.

    Attributes:
        offset: stream offset of the first byte, counted from the first
            byte the server sent on this connection.
        elapsed: seconds from the start of the attempt to the recv().
        data: the bytes.
    """

    offset: int
    elapsed: float
    data: bytes


@dataclass(frozen=True, slots=True)
class AttemptTranscript:
    """What one attempt sent and received, in order, with times in seconds.

    Times count from the start of connect(). `connected` is None when the
    connection could not be made, and `connect_error` then gives the reason. After
    a failed connect, `hello` is empty and the other times are None.
    """

    protocol_set: ProtocolSet
    source: tuple[str, int] | None
    connected: float | None
    connect_error: str | None
    hello: bytes
    hello_sent: float | None
    chunks: tuple[ReceivedChunk, ...]
    stop_reason: StopReason | None
    closed: float | None
    outcome: HandshakeOutcome | None
    record: AttemptRecord

    def to_json(self) -> dict[str, Any]:
        """Describe the attempt as JSON-ready data, bytes as hex."""
        return {
            "set": self.protocol_set.number,
            "source": list(self.source) if self.source else None,
            "connected": self.connected,
            "connect_error": self.connect_error,
            "hello": self.hello.hex(),
            "hello_sent": self.hello_sent,
            "chunks": [
                {"offset": c.offset, "elapsed": c.elapsed, "hex": c.data.hex()}
                for c in self.chunks
            ],
            "stop_reason": self.stop_reason,
            "closed": self.closed,
            "outcome": self.record.to_json(),
        }


@dataclass(frozen=True, slots=True)
class GrabTranscript:
    """The attempts made on one port and the result they add up to."""

    ip: str
    port: int
    sni: str | None
    timeout: float
    attempts: tuple[AttemptTranscript, ...]
    result: TlsResult


class _RecordingReader(HandshakeReader):
    """A HandshakeReader that also keeps each chunk it is fed, with its time."""

    def __init__(self, hello_format: str, clock: Callable[[], float]) -> None:
        super().__init__(hello_format)  # type: ignore[arg-type]
        self.chunks: list[ReceivedChunk] = []
        self._clock = clock
        self._received = 0

    def feed(self, data: bytes) -> list[Event]:
        self.chunks.append(ReceivedChunk(self._received, self._clock(), bytes(data)))
        self._received += len(data)
        return super().feed(data)


def _failed_connect(protocol_set: ProtocolSet, error: str) -> AttemptTranscript:
    record = AttemptRecord(protocol_set.number, "connect_failed", detail=error)
    return AttemptTranscript(
        protocol_set, None, None, error, b"", None, (), None, None, None, record
    )


async def record_attempt(
    ip: str,
    port: int,
    protocol_set: ProtocolSet,
    *,
    sni: str | None,
    timeout: float,
) -> AttemptTranscript:
    """Make one attempt as `kernel.run_attempt` does, and keep its transcript."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    def elapsed() -> float:
        return loop.time() - started

    try:
        sock = await connect_abortive(ip, port, timeout)
    except TimeoutError:
        return _failed_connect(protocol_set, "connect timed out")
    except OSError as exc:
        return _failed_connect(protocol_set, exc.strerror or str(exc))

    connected = elapsed()
    source_address, source_port = sock.getsockname()[:2]
    reader = _RecordingReader(protocol_set.hello_format, elapsed)
    hello = build_set_hello(protocol_set.number, os.urandom(32), sni)
    hello_sent: float | None = None
    try:
        await asyncio.wait_for(loop.sock_sendall(sock, hello), timeout)
        hello_sent = elapsed()
        reason: StopReason | None = await read_flight(sock, reader, timeout)
    except TimeoutError:
        reason = "timeout"
    except OSError as exc:
        logger.warning(
            "%s:%d: set %d: socket error: %s", ip, port, protocol_set.number, exc
        )
        reason = "reset"
    finally:
        sock.close()
    closed = elapsed()

    outcome = reader.finish(reason)
    record = record_from_outcome(protocol_set, outcome, int(source_port))
    return AttemptTranscript(
        protocol_set=protocol_set,
        source=(str(source_address), int(source_port)),
        connected=connected,
        connect_error=None,
        hello=hello,
        hello_sent=hello_sent,
        chunks=tuple(reader.chunks),
        stop_reason=reason,
        closed=closed,
        outcome=outcome,
        record=record,
    )


def _add_certificate(
    result: TlsResult, protocol_set: ProtocolSet, outcome: HandshakeOutcome
) -> None:
    result.set_number = protocol_set.number
    result.version = outcome.version_name
    result.cipher = outcome.cipher_name
    result.chain = decode_chain(outcome.chain)
    if outcome.key_exchange:
        result.key_exchange = dict(outcome.key_exchange)


async def grab_recorded(
    ip: str,
    port: int,
    *,
    sni: str | None = None,
    timeout: float = 5.0,
    sets: Sequence[ProtocolSet] = PROTOCOL_SETS,
) -> GrabTranscript:
    """Run the attempt ladder on one port, keeping every attempt's transcript.

    Stops at the first attempt that brings a certificate, and after a
    connection that cannot be made, as `kernel.grab_tls` does.
    """
    result = TlsResult()
    attempts: list[AttemptTranscript] = []
    for protocol_set in sets:
        attempt = await record_attempt(ip, port, protocol_set, sni=sni, timeout=timeout)
        attempts.append(attempt)
        result.attempts.append(attempt.record)
        if attempt.outcome is None:
            break
        if attempt.outcome.chain:
            _add_certificate(result, protocol_set, attempt.outcome)
            break
    return GrabTranscript(ip, port, sni, timeout, tuple(attempts), result)
