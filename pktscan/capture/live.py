"""Send a captured ClientHello to a live server and compare the replies.

The client's first flight of a replayed flow (the records that carry its
ClientHello, byte for byte, random included) is sent over a new kernel TCP
connection. The server's reply is read into a `HandshakeReader` until the
reader is done, the server closes or resets, or the timeout passes. The
socket is then closed with SO_LINGER 0, so the connection ends with an RST
as a scan's does. Only the hello is sent, because the client's later
messages depend on the server's random and would be invalid.

The comparison covers what a scan records per attempt: outcome, version,
cipher suite, alert, key exchange kind and the chain's SHA-256 fingerprints.
Server randoms and session ids differ on every connection and are not
compared.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from dataclasses import dataclass
from typing import Final

from pktscan.capture.replay import ReplayedFlow, StopReason, client_hello_bytes
from pktscan.errors import InputError, LocalError
from pktscan.grab.kernel import CHAIN_GRACE_SECONDS
from pktscan.grab.sockets import LINGER_ABORT, RECEIVE_SIZE
from pktscan.tls.client import HandshakeOutcome, HandshakeReader

logger = logging.getLogger(__name__)

# Reading stops after this many bytes, so that a server that keeps sending
# cannot hold the loop until the timeout. It is an estimate with a wide
# margin: the largest lab chain (bigchain) arrives in about 20 KB.
MAX_REPLY_BYTES: Final = 1 << 20
MAX_PORT: Final = 65535


@dataclass(frozen=True, slots=True)
class FieldComparison:
    """One field of the recorded and the live outcome, as text."""

    name: str
    recorded: str
    live: str

    @property
    def same(self) -> bool:
        """True when the recorded and the live value are equal."""
        return self.recorded == self.live


@dataclass(frozen=True, slots=True)
class LiveComparison:
    """The live server's reply to a captured hello, next to the recorded one.

    Attributes:
        flow: the replayed flow whose hello was sent.
        server: the (host, port) it was sent to.
        sent: bytes of hello sent.
        stop: why reading stopped, or None when the reader was done.
        live: the reader's summary of the live reply.
        fields: the compared fields, in a fixed order.
    """

    flow: ReplayedFlow
    server: tuple[str, int]
    sent: int
    stop: StopReason | None
    live: HandshakeOutcome
    fields: tuple[FieldComparison, ...]

    @property
    def same(self) -> bool:
        """True when every compared field is equal."""
        return all(field.same for field in self.fields)


def parse_endpoint(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[ADDRESS]:PORT``) into host and port.

    Raises:
        InputError: no port, a port that is not 1 to 65535, or no host.
    """
    host, separator, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    hint = "give HOST:PORT, for example 127.0.0.1:4433 or [::1]:4433"
    if not separator or not host:
        raise InputError(f"invalid server {text!r}: expected HOST:PORT", hint=hint)
    if not port_text.isdigit() or not 1 <= int(port_text) <= MAX_PORT:
        raise InputError(
            f"invalid port {port_text!r} in {text!r}: expected 1 to {MAX_PORT}",
            hint=hint,
        )
    return host, int(port_text)


def _summary(outcome: HandshakeOutcome) -> dict[str, str]:
    key_exchange = outcome.key_exchange or {}
    chain = ", ".join(hashlib.sha256(der).hexdigest()[:16] for der in outcome.chain)
    return {
        "outcome": outcome.outcome,
        "version": outcome.version_name or "-",
        "cipher": outcome.cipher_name or "-",
        "alert": outcome.alert_name or "-",
        "key exchange": str(key_exchange.get("kind", "-")),
        "chain sha256": chain or "-",
    }


def compare_outcomes(
    recorded: HandshakeOutcome, live: HandshakeOutcome
) -> tuple[FieldComparison, ...]:
    """Compare the fields a scan records; chain fingerprints are 16 hex digits."""
    recorded_fields = _summary(recorded)
    live_fields = _summary(live)
    return tuple(
        FieldComparison(name, recorded_fields[name], live_fields[name])
        for name in recorded_fields
    )


def _read_reply(
    sock: socket.socket, reader: HandshakeReader, timeout: float
) -> StopReason | None:
    deadline = time.monotonic() + timeout
    received = 0
    while not reader.done and received < MAX_REPLY_BYTES:
        remaining = deadline - time.monotonic()
        if reader.certificate_complete:
            remaining = min(remaining, CHAIN_GRACE_SECONDS)
        if remaining <= 0:
            return "timeout"
        sock.settimeout(remaining)
        try:
            data = sock.recv(RECEIVE_SIZE)
        except TimeoutError:
            return "timeout"
        except ConnectionResetError:
            return "reset"
        if not data:
            return "eof"
        received += len(data)
        reader.feed(data)
    return None if reader.done else "timeout"


def send_flow(
    flow: ReplayedFlow, server: tuple[str, int], timeout: float = 5.0
) -> LiveComparison:
    """Send a flow's ClientHello to `server` and compare the live reply.

    Raises:
        InputError: the flow's client stream holds no complete ClientHello.
        LocalError: the connection failed or timed out.
    """
    hello = client_hello_bytes(flow.connection.client_stream.data)
    if hello is None:
        raise InputError(
            f"flow to {flow.target} has no complete ClientHello to send",
            hint="pick a flow whose client hello was captured, with --flow",
        )
    host, port = server
    target = f"{host}:{port}"
    try:
        sock = socket.create_connection(server, timeout=timeout)
    except OSError as error:
        raise LocalError(
            f"failed to connect to {target}: {error.strerror or error}",
            hint="check that the server is running and reachable",
        ) from error
    reader = HandshakeReader(flow.hello_format)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
        sock.sendall(hello)
        stop = _read_reply(sock, reader, timeout)
    except OSError as error:
        logger.warning("%s: replayed hello failed: %s", target, error)
        stop = "reset"
    finally:
        sock.close()
    live = reader.finish(stop)
    logger.info("%s: replayed %d hello bytes: %s", target, len(hello), live.outcome)
    fields = compare_outcomes(flow.outcome, live)
    return LiveComparison(flow, server, len(hello), stop, live, fields)
