"""IPv4 SYNs written and sent in batches by the C send loop.

`pktscan.net._fastpath` fills the frames from the same template and with
the same cookie as `PacketTemplate.fill` and `SynCookie.sequence`, and sends
a batch with one sendmmsg call on the AF_PACKET socket. The prober uses it
for IPv4 targets whose next hop's link-layer address is known, and the
Python path for the rest (IPv6, loopback, unknown neighbours, debug logs).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from dataclasses import dataclass

from pktscan.net import _fastpath
from pktscan.net.cookie import SynCookie
from pktscan.net.packet import PacketTemplate

logger = logging.getLogger(__name__)

MAX_BATCH = _fastpath.MAX_BATCH

Target = tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class BatchSent:
    """The outcome of one call of `SynBatch.send`.

    Attributes:
        sent: frames the kernel accepted.
        dropped: frames that failed; `error` is the errno of the last.
    """

    sent: int
    dropped: int
    error: int


class SynBatch:
    """The constant arguments of the C send loop for one template and scan."""

    def __init__(
        self, template: PacketTemplate, cookie: SynCookie, source_port: int
    ) -> None:
        layout = template.layout
        if template.version != 4 or layout.ip_id is None or layout.ip_checksum is None:
            raise ValueError("the C send loop takes IPv4 templates only")
        self._template = bytes(template.packet)
        self._constants = (
            template.ip_base,
            template.tcp_base,
            layout.ip_id,
            layout.ip_checksum,
            layout.tcp,
            -1 if layout.timestamp is None else layout.timestamp,
        )
        self._key = cookie.key
        self._source_port = source_port
        self._interfaces: dict[str, int] = {}

    def fill(self, source: bytes, tsval: int, targets: list[Target]) -> bytes:
        """Return the frames for `targets`, concatenated, without sending."""
        return _fastpath.fill_syn4(
            self._template,
            *self._constants,
            source,
            self._source_port,
            self._key,
            tsval,
            targets,
        )

    def run_length(
        self, targets: list[Target], start: int, span: tuple[int, int]
    ) -> int:
        """Return how many targets from `start` on are IPv4 addresses inside
        `span`, a (network, mask) pair, at most MAX_BATCH."""
        return _fastpath.span_run(targets, start, span[0], span[1], MAX_BATCH)

    def send(
        self,
        sock: socket.socket,
        source: bytes,
        tsval: int,
        targets: list[Target],
        interface: str,
        hop: bytes,
    ) -> BatchSent:
        """Send SYNs to the first MAX_BATCH targets over `interface` to `hop`,
        which must be the next hop of every one (see `run_length`).

        Raises:
            OSError: `interface` no longer exists.
        """
        ifindex = self._interfaces.get(interface)
        if ifindex is None:
            ifindex = socket.if_nametoindex(interface)
            self._interfaces[interface] = ifindex
        sent, dropped, error = _fastpath.send_syn4(
            self._template,
            *self._constants,
            source,
            self._source_port,
            self._key,
            tsval,
            targets,
            sock.fileno(),
            ifindex,
            hop,
        )
        return BatchSent(sent, dropped, error)


@dataclass(frozen=True, slots=True)
class _Job:
    sock: socket.socket
    source: bytes
    tsval: int
    targets: list[Target]
    interface: str
    hop: bytes


class SendThread:
    """Sends batches through the C loop in a thread of its own.

    The C loop writes and sends without the GIL, and the kernel's work on
    the frames (for a veth peer, the target's TCP as well) takes most of
    its time, so the calling thread meanwhile walks targets and handles
    responses. One batch is in flight at a time: `submit` waits for the
    previous one to be sent, so a SYN leaves at most one batch's sending
    time after the calling thread recorded it.
    """

    def __init__(self, batch: SynBatch) -> None:
        self.batch = batch
        self.sent = 0
        self.dropped = 0
        self.last_error: OSError | None = None
        self._job: _Job | None = None
        self._closing = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name="pktscan-send", daemon=True
        )
        self._thread.start()

    def submit(
        self,
        sock: socket.socket,
        source: bytes,
        tsval: int,
        targets: list[Target],
        interface: str,
        hop: bytes,
    ) -> None:
        """Queue `targets`, at most MAX_BATCH, all reached through
        `interface` and `hop`, once the previous batch is out."""
        job = _Job(sock, source, tsval, targets, interface, hop)
        with self._condition:
            while self._job is not None:
                self._condition.wait()
            self._job = job
            self._condition.notify_all()

    def flush(self) -> None:
        """Wait until the last batch submitted has been sent."""
        with self._condition:
            while self._job is not None:
                self._condition.wait()

    def close(self) -> None:
        """Send what is queued, then end the thread."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._job is None and not self._closing:
                    self._condition.wait()
                job = self._job
            if job is None:
                return
            try:
                self._send(job)
            except Exception as error:
                # Not raised to anyone: count the batch as dropped and keep
                # serving, so that flush and close still return.
                logger.error(
                    "sending a batch of %d SYNs failed: %r", len(job.targets), error
                )
                self.dropped += len(job.targets)
                self.last_error = OSError(errno.EIO, repr(error))
            finally:
                with self._condition:
                    self._job = None
                    self._condition.notify_all()

    def _send(self, job: _Job) -> None:
        try:
            done = self.batch.send(
                job.sock, job.source, job.tsval, job.targets, job.interface, job.hop
            )
        except OSError as error:
            # The interface went away since the route lookup: the batch's
            # probes stay unanswered and end up filtered.
            done = BatchSent(0, len(job.targets), error.errno or 0)
        self.sent += done.sent
        if done.dropped:
            self.dropped += done.dropped
            self.last_error = OSError(done.error, os.strerror(done.error))
