"""The kernel handshake engine: the attempt ladder over the kernel's TCP.

Each attempt is one TCP connection made with connect(): the hand-built
ClientHello of its protocol set is written, the server's flight is fed to
the sans-IO `HandshakeReader`, and the socket is closed with SO_LINGER set
to zero, so that the kernel ends the connection with an RST instead of a
FIN. An abortive close needs no answer from the server and frees both
sides' buffers at once.

Attempts follow the ladder of protocol sets in order. A certificate from
any attempt ends the work on the port; an attempt that brings none (reset,
close, alert, timeout, non-TLS bytes) is followed by the next set on a new
connection. A connection that cannot be made ends the ladder, because the
port no longer accepts connections.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pktscan.certs import decode_chain
from pktscan.grab.sockets import RECEIVE_SIZE, connect_abortive
from pktscan.results import AttemptRecord, TlsResult
from pktscan.tls.client import HandshakeOutcome, HandshakeReader
from pktscan.tls.sets import PROTOCOL_SETS, ProtocolSet, build_set_hello

logger = logging.getLogger(__name__)

# After the chain is complete, the rest of the flight (ServerKeyExchange,
# ServerHelloDone) usually arrives in the same or the next segment. Waiting
# this long for it lets the key exchange be recorded without holding the
# connection open for a full timeout.
CHAIN_GRACE_SECONDS = 0.2


StopReason = Literal["eof", "reset", "timeout"]


async def read_flight(
    sock: socket.socket, reader: HandshakeReader, timeout: float
) -> StopReason | None:
    """Feed the server's bytes to the reader until it is done.

    Returns the reason the reading stopped early ("eof", "reset",
    "timeout"), or None when the reader had all it needed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not reader.done:
        remaining = deadline - loop.time()
        if reader.certificate_complete:
            remaining = min(remaining, CHAIN_GRACE_SECONDS)
        if remaining <= 0:
            return "timeout"

        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, RECEIVE_SIZE), remaining)
        except TimeoutError:
            return "timeout"
        except ConnectionResetError:
            return "reset"
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                return "reset"
            raise

        if not data:
            return "eof"
        reader.feed(data)
    return None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt's record for the output, and the reader's outcome."""

    record: AttemptRecord
    outcome: HandshakeOutcome | None


def record_from_outcome(
    protocol_set: ProtocolSet, outcome: HandshakeOutcome, source_port: int
) -> AttemptRecord:
    detail = outcome.error
    if outcome.outcome == "non_tls":
        detail = outcome.first_bytes.hex()
    return AttemptRecord(
        set_number=protocol_set.number,
        outcome=outcome.outcome,
        version=outcome.version_name,
        cipher=outcome.cipher_name,
        alert=outcome.alert_name,
        detail=detail,
        source_port=source_port,
    )


async def run_attempt(
    ip: str,
    port: int,
    protocol_set: ProtocolSet,
    *,
    sni: str | None,
    timeout: float,
) -> AttemptResult:
    """Make one attempt: connect, send the set's hello, read, close with RST."""
    target = f"{ip}:{port}"
    try:
        sock = await connect_abortive(ip, port, timeout)
    except TimeoutError:
        logger.info("%s: set %d: connect timed out", target, protocol_set.number)
        record = AttemptRecord(
            protocol_set.number, "connect_failed", detail="connect timed out"
        )
        return AttemptResult(record, None)
    except OSError as exc:
        logger.info("%s: set %d: connect failed: %s", target, protocol_set.number, exc)
        record = AttemptRecord(
            protocol_set.number, "connect_failed", detail=exc.strerror or str(exc)
        )
        return AttemptResult(record, None)

    loop = asyncio.get_running_loop()
    source_port = int(sock.getsockname()[1])
    reader = HandshakeReader(protocol_set.hello_format)
    try:
        hello = build_set_hello(protocol_set.number, os.urandom(32), sni)
        await asyncio.wait_for(loop.sock_sendall(sock, hello), timeout)
        reason: StopReason | None = await read_flight(sock, reader, timeout)
    except TimeoutError:
        reason = "timeout"
    except OSError as exc:
        logger.warning("%s: set %d: socket error: %s", target, protocol_set.number, exc)
        reason = "reset"
    finally:
        sock.close()

    outcome = reader.finish(reason)
    logger.debug(
        "%s: set %d: %s (stopped by %s)",
        target,
        protocol_set.number,
        outcome.outcome,
        reason,
    )
    return AttemptResult(
        record_from_outcome(protocol_set, outcome, source_port), outcome
    )


async def grab_tls(
    ip: str,
    port: int,
    *,
    sni: str | None = None,
    timeout: float = 5.0,
    sets: Sequence[ProtocolSet] = PROTOCOL_SETS,
) -> TlsResult:
    """Run the attempt ladder on one port and return what it found."""
    result = TlsResult()
    for protocol_set in sets:
        attempt = await run_attempt(ip, port, protocol_set, sni=sni, timeout=timeout)
        result.attempts.append(attempt.record)
        outcome = attempt.outcome
        if outcome is None:
            break
        if outcome.chain:
            result.set_number = protocol_set.number
            result.version = outcome.version_name
            result.cipher = outcome.cipher_name
            result.chain = decode_chain(outcome.chain)
            result.key_exchange = (
                dict(outcome.key_exchange) if outcome.key_exchange else None
            )
            logger.info(
                "%s:%d: certificate at set %d (%s)",
                ip,
                port,
                protocol_set.number,
                outcome.version_name,
            )
            break
    else:
        logger.info("%s:%d: no certificate after %d attempts", ip, port, len(sets))
    return result
