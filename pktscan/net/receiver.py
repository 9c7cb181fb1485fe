"""The prober's receive path, run in a forked child process.

A receiver thread shares the GIL with the send loop, and at a few tens of
thousands of packets a second the two threads spend more time handing the
GIL over than working. The child process runs on another core instead. It
reads the AF_PACKET socket that the parent opened, checks each response's
SYN cookie, answers each valid SYN/ACK with a crafted RST at once, and
writes fixed-size records into a pipe to the parent:

    offset  field
    0       kind: response, caught-up mark, counters or error
    1       IP version (4 or 6)
    2       TCP flags
    3       1 when a timestamp echo (TSecr) follows, else 0
    4       TTL or hop limit
    5       padding
    6       source port of the response (the probed port)
    8       source address, 16 bytes, IPv4 in the first 4
    24      TSecr
    28      monotonic time of reception (float64)
    36      Unix time of reception (float64)

With a receive ring, `pktscan.net._fastpath.accept_block` does this for a
whole block of IPv4 responses over Ethernet in C, RSTs included, and hands
the other packets (IPv6, loopback) back to the Python path. Against the
benchmark lab's 24,576 responses the child's CPU time fell from about 0.3 s
to 0.05 s.

A caught-up mark carries, in its monotonic field, a time at which the child
found the socket empty: every response that arrived before it precedes the
mark in the pipe. Counters and errors are written once, at the end.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import select
import signal
import struct
import time
from dataclasses import dataclass
from typing import NamedTuple

from pktscan.net import _fastpath
from pktscan.net.cookie import SynCookie
from pktscan.net.packet import (
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    PacketTemplate,
    TcpResponse,
    parse_tcp_response,
)
from pktscan.net.ring import BLOCK_BYTES, ReceiveRing
from pktscan.net.sockets import Receiver, Sender

RECORD = struct.Struct("=BBBBBxH16sIdd")
KIND_RESPONSE = 0
KIND_CAUGHT_UP = 1
KIND_COUNTERS = 2
KIND_ERROR = 3
_COUNTERS = struct.Struct("=QQ")

# Packets the child reads before writing their records to the pipe, or
# ring blocks of up to about 400 packets each.
RECEIVE_BATCH = 256
RECEIVE_BLOCKS = 4
MAX_BATCHES = 1024
POLL_SECONDS = 0.05
# Linux caps pipes at /proc/sys/fs/pipe-max-size (1 MiB by default) for
# unprivileged users; about 24,000 records fit in 1 MiB.
PIPE_BYTES = 1024 * 1024
F_SETPIPE_SZ = 1031
LOOPBACK_INTERFACE = "lo"
STOP_TIMEOUT = 5.0


class Response(NamedTuple):
    """A valid response, as the child passed it to the parent (a named
    tuple, because one is built per response)."""

    source: bytes
    port: int
    flags: int
    ttl: int
    timestamp_echo: int | None
    monotonic: float
    wall: float


@dataclass(frozen=True, slots=True)
class ChildCounters:
    """Counters that only the child keeps, returned by `ReceiverProcess.stop`."""

    resets_sent: int
    invalid: int


class ReceiverProcess:
    """The parent's end: start the child, read its records, stop it."""

    def __init__(
        self,
        receiver: Receiver,
        sender: Sender,
        cookie: SynCookie,
        source_port: int,
    ) -> None:
        self.receiver = receiver
        self.sender = sender
        self.cookie = cookie
        self.source_port = source_port
        # Built here, because building runs scapy, which the child must not:
        # the parent may have other threads, and a fork copies their locks.
        self.rst = {
            4: PacketTemplate(4, "R", with_options=False),
            6: PacketTemplate(6, "R", with_options=False),
        }
        self.caught_up = 0.0
        self.pid: int | None = None
        self._records = -1
        self._control = -1
        self._buffer = b""
        self._poll = select.poll()
        self._counters: ChildCounters | None = None
        self._error: OSError | None = None
        self._eof = False

    def start(self) -> None:
        """Fork the child. The caller may have other threads, as `pktscan
        scan` does: the child runs no scapy or logging code and imports
        nothing, so it never waits on a lock that the fork copied."""
        records_read, records_write = os.pipe()
        control_read, control_write = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(records_write, F_SETPIPE_SZ, PIPE_BYTES)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(records_read)
                os.close(control_write)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                # The parent's handlers (the nftables table's cleanup among
                # them) must not run in the child.
                for number in (signal.SIGTERM, signal.SIGHUP):
                    signal.signal(number, signal.SIG_DFL)
                _Child(self, records_write, control_read).run()
                status = 0
            finally:
                os._exit(status)
        os.close(records_write)
        os.close(control_read)
        os.set_blocking(records_read, False)
        self.pid = pid
        self._records = records_read
        self._control = control_write
        self._poll.register(records_read, select.POLLIN)

    def read(self, timeout: float = 0.0) -> list[Response]:
        """Return the responses written so far, waiting up to `timeout`
        seconds for the first; `caught_up` moves with the marks read."""
        if self._eof:
            return []
        if timeout > 0 and not self._poll.poll(timeout * 1000):
            return []
        chunks = [self._buffer]
        for _ in range(64):
            try:
                chunk = os.read(self._records, 65536 - 65536 % RECORD.size)
            except BlockingIOError:
                break
            if not chunk:
                self._eof = True
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        usable = len(data) - len(data) % RECORD.size
        self._buffer = data[usable:]
        responses = self._decode(data[:usable])
        # The child writes its counters last, so an end of the pipe without
        # them means that it died, and no caught-up mark will come again.
        if self._eof and self._counters is None and self._error is None:
            self._error = OSError(errno.EIO, "the receiver process ended early")
        return responses

    def _decode(self, data: bytes) -> list[Response]:
        responses = []
        for record in RECORD.iter_unpack(data):
            kind, version, flags, has_echo, ttl, port, address, echo, mono, wall = (
                record
            )
            if kind == KIND_RESPONSE:
                source = address[:4] if version == 4 else address
                responses.append(
                    Response(
                        source, port, flags, ttl, echo if has_echo else None, mono, wall
                    )
                )
            elif kind == KIND_CAUGHT_UP:
                self.caught_up = mono
            elif kind == KIND_COUNTERS:
                self._counters = ChildCounters(*_COUNTERS.unpack(address))
            elif kind == KIND_ERROR:
                self._error = OSError(echo, os.strerror(echo))
        return responses

    @property
    def error(self) -> OSError | None:
        """The error that ended the child's receive loop, once read."""
        return self._error

    def stop(self) -> tuple[list[Response], ChildCounters]:
        """Tell the child to finish, and return the responses it wrote since
        the last read and its counters."""
        responses: list[Response] = []
        if self.pid is None:
            return responses, ChildCounters(0, 0)
        os.close(self._control)
        self._control = -1
        deadline = time.monotonic() + STOP_TIMEOUT
        while not self._eof and time.monotonic() < deadline:
            responses += self.read(0.05)
        self._reap()
        return responses, self._counters or ChildCounters(0, 0)

    def close(self) -> None:
        """End the child if it still runs, and close the pipes."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()
        for fd in (self._records, self._control):
            if fd >= 0:
                os.close(fd)
        self._records = self._control = -1

    def _reap(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.pid = None


class _Child:
    """The receive loop in the child process."""

    def __init__(self, parent: ReceiverProcess, records: int, control: int) -> None:
        self.receiver = parent.receiver
        self.sender = parent.sender
        self.cookie = parent.cookie
        self.source_port = parent.source_port
        self.records = records
        self.control = control
        self.rst = parent.rst
        self.resets_sent = 0
        self.invalid = 0
        if self.receiver.ring is not None:
            self.receiver.ring.touch()
        self.poll = select.poll()
        self.poll.register(self.receiver.socket, select.POLLIN)
        self.poll.register(control, select.POLLIN)

    def run(self) -> None:
        try:
            self._loop()
        except OSError as error:
            code = error.errno if error.errno is not None else errno.EIO
            self._write([RECORD.pack(KIND_ERROR, 0, 0, 0, 0, 0, b"", code, 0, 0)])
        counters = _COUNTERS.pack(self.resets_sent, self.invalid)
        self._write([RECORD.pack(KIND_COUNTERS, 0, 0, 0, 0, 0, counters, 0, 0, 0)])
        os.close(self.records)

    def _loop(self) -> None:
        while True:
            stopping = False
            for fd, _ in self.poll.poll(POLL_SECONDS * 1000):
                if fd == self.control:
                    stopping = True
            # After a stop, one more read until the socket is empty, so that
            # responses queued before the stop still reach the parent. The
            # bound lets a flood of packets delay the stop check, not block it.
            for _ in range(MAX_BATCHES):
                if not self._read_batch():
                    break
            if stopping:
                return

    def _read_blocks(self, ring: ReceiveRing) -> bool:
        """Read up to RECEIVE_BLOCKS blocks of the ring in C and write their
        records; return True when the ring may hold more.

        `_fastpath.accept_block` does for IPv4 over Ethernet what `_accept`
        does, and returns the other packets (IPv6, loopback) to `_accept`."""
        records = []
        more = True
        reset = self.rst[4]
        for _ in range(RECEIVE_BLOCKS):
            before = time.monotonic()
            base = ring.ready_block()
            if base is None:
                records.append(self._caught_up(before))
                more = False
                break
            # Read together, so that the C reader can carry the kernel's
            # arrival times over to the monotonic clock.
            wall = time.time()
            now = time.monotonic()
            found, others, invalid, resets, error = _fastpath.accept_block(
                ring.memory,
                base,
                BLOCK_BYTES,
                self.source_port,
                self.cookie.key,
                reset.packet,
                reset.ip_base,
                reset.tcp_base,
                self.sender.link.fileno(),
                now,
                wall,
            )
            ring.release()
            records.append(found)
            self.invalid += invalid
            self.resets_sent += resets
            if error:
                self.sender.dropped += 1
                self.sender.last_error = OSError(error, os.strerror(error))
            for datagram, index, hop, arrived in others:
                times = (now - (wall - arrived), arrived) if arrived else None
                record = self._accept(datagram, ring.name(index), hop, times)
                if record is not None:
                    records.append(record)
        self._write(records)
        return more

    def _read_batch(self) -> bool:
        """Read up to RECEIVE_BATCH packets and write their records; return
        True when the socket may hold more."""
        ring = self.receiver.ring
        if ring is not None:
            return self._read_blocks(ring)
        records = []
        more = True
        for _ in range(RECEIVE_BATCH):
            before = time.monotonic()
            got = self.receiver.receive_nowait()
            if got is None:
                records.append(self._caught_up(before))
                more = False
                break
            record = self._accept(*got)
            if record is not None:
                records.append(record)
        self._write(records)
        return more

    def _caught_up(self, before: float) -> bytes:
        """Return the caught-up mark for a read that found nothing new.

        It goes after the responses read so far, so that the parent has
        seen every response older than the mark when it reads it."""
        mark = before - self.receiver.delay
        return RECORD.pack(KIND_CAUGHT_UP, 0, 0, 0, 0, 0, b"", 0, mark, 0)

    def _accept(
        self,
        datagram: bytes,
        interface: str,
        hop: bytes,
        times: tuple[float, float] | None = None,
    ) -> bytes | None:
        """Check one packet and return its record, or None.

        `times` is (monotonic, Unix) time of arrival when the kernel gave
        it; without it the packet counts as arriving now."""
        response = parse_tcp_response(datagram)
        if response is None or response.destination_port != self.source_port:
            return None
        if not self.cookie.validate(response):
            self.invalid += 1
            return None
        syn_ack = TCP_SYN | TCP_ACK
        # With RST set the segment is a reset, whatever else it carries, as
        # Linux's TCP treats it; a multicast source gets no RST of ours.
        if response.flags & (syn_ack | TCP_RST) == syn_ack:
            if not (hop and hop[0] & 1):
                self._send_reset(response, interface, hop)
        elif not response.flags & TCP_RST:
            return None
        echo = response.timestamp_echo
        return RECORD.pack(
            KIND_RESPONSE,
            response.version,
            response.flags,
            echo is not None,
            response.ttl,
            response.source_port,
            response.source,
            echo or 0,
            *(times or (time.monotonic(), time.time())),
        )

    def _send_reset(self, response: TcpResponse, interface: str, hop: bytes) -> None:
        """Send an RST with sequence = their acknowledgment, back through the
        interface and link-layer address that the SYN/ACK came from."""
        packet = self.rst[response.version].fill(
            response.destination,
            response.source,
            response.destination_port,
            response.source_port,
            response.acknowledgment,
            ip_id=random.getrandbits(16),
        )
        if interface == LOOPBACK_INTERFACE:
            sent = self.sender.send_routed(
                packet, response.version, response.source_text
            )
        else:
            sent = self.sender.send_link(packet, interface, response.version, hop)
        if sent:
            self.resets_sent += 1

    def _write(self, records: list[bytes]) -> None:
        data = memoryview(b"".join(records))
        while data:
            written = os.write(self.records, data)
            data = data[written:]
