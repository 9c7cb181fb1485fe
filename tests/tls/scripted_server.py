"""A small hostile TLS server on 127.0.0.1 that follows a script, for tests.

It imitates servers that no real software here can imitate on
demand: one that sends a malformed certificate, a banner, a flight cut off
part-way, or a flight split at chosen byte offsets. Its bytes are recorded
flights from real servers, rearranged or cut, or built field by field with
tls_bytes. Each connection runs the same script of steps:

- `Receive()`: read once, up to the deadline (the client's hello).
- `Send(data, pause)`: send `data` and then sleep `pause` seconds, with
  TCP_NODELAY, so that the next send leaves as a separate segment.
- `Close()`: end the connection with a FIN.
- `AwaitClose()`: read until the client closes or resets, up to the
  deadline, so the client meets no FIN before its own timeout.

Every wait is bounded by STEP_DEADLINE_S, and the server serves at most
MAX_CONNECTIONS connections, so a test that fails cannot hang on it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

LOOPBACK = "127.0.0.1"
STEP_DEADLINE_S = 10.0
MAX_CONNECTIONS = 8
RECEIVE_SIZE = 65536


@dataclass(frozen=True)
class Receive:
    """Read once from the client."""


@dataclass(frozen=True)
class Send:
    """Send bytes, then pause so that the next send is its own segment."""

    data: bytes
    pause: float = 0.0


@dataclass(frozen=True)
class Close:
    """Close the connection with a FIN."""


@dataclass(frozen=True)
class AwaitClose:
    """Wait until the client closes the connection."""


Step = Receive | Send | Close | AwaitClose


class ScriptedServer:
    """Serve `steps` to each connection on a free loopback port, in a thread.

    Use it as a context manager; `port` is set on entry. `served` counts the
    connections that ran the whole script.
    """

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = tuple(steps)
        self.served = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(MAX_CONNECTIONS)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=STEP_DEADLINE_S + 5)
        self._listener.close()

    def _serve(self) -> None:
        accepted = 0
        while not self._stop.is_set() and accepted < MAX_CONNECTIONS:
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            accepted += 1
            with connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connection.settimeout(STEP_DEADLINE_S)
                try:
                    self._run_script(connection)
                except OSError:
                    continue  # the client reset; the next connection may differ
                self.served += 1

    def _run_script(self, connection: socket.socket) -> None:
        for step in self.steps:
            if isinstance(step, Receive):
                connection.recv(RECEIVE_SIZE)
            elif isinstance(step, Send):
                connection.sendall(step.data)
                if step.pause:
                    time.sleep(step.pause)
            elif isinstance(step, Close):
                return
            else:
                _await_close(connection)


def _await_close(connection: socket.socket) -> None:
    deadline = time.monotonic() + STEP_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if not connection.recv(RECEIVE_SIZE):
                return
        except (TimeoutError, ConnectionResetError):
            return


def segments(data: bytes, size: int, pause: float) -> list[Step]:
    """Split `data` into Send steps of `size` bytes, each followed by `pause`."""
    return [
        Send(data[start : start + size], pause) for start in range(0, len(data), size)
    ]
