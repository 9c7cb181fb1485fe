"""The prober's raw sockets: send over AF_PACKET or IPPROTO_RAW, receive over
AF_PACKET with a BPF filter, and read the kernel's drop counters."""

from __future__ import annotations

import errno
import select
import socket
import struct
import time

from pktscan.capture.bpf import attach_filter, compile_filter
from pktscan.errors import PrivilegeError
from pktscan.net.ring import RETIRE_MILLISECONDS, ReceiveRing

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SOL_PACKET = 263
PACKET_OUTGOING = 4
PACKET_STATISTICS = 6
# Missing from the socket module of Python 3.11; value from asm-generic/socket.h.
SO_RCVBUFFORCE = 33

RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
# ENOBUFS means the device queue is full; each retry waits this long, and a
# packet is dropped after the last one.
SEND_RETRY_SECONDS = 0.001
SEND_RETRIES = 50

PRIVILEGE_HINT = (
    "run as root, or give the Python interpreter CAP_NET_RAW (setcap cap_net_raw+ep)"
)


def _open(family: int, kind: int, protocol: int, what: str) -> socket.socket:
    try:
        return socket.socket(family, kind, protocol)
    except PermissionError as error:
        raise PrivilegeError(
            f"cannot open the {what} socket: {error.strerror}", PRIVILEGE_HINT
        ) from error


class Sender:
    """Sends IP datagrams over AF_PACKET to a known next hop, else over
    IPPROTO_RAW sockets, which leave routing and ARP to the kernel."""

    def __init__(self) -> None:
        self.link = _open(socket.AF_PACKET, socket.SOCK_DGRAM, 0, "AF_PACKET send")
        try:
            self.raw4 = _open(
                socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW, "raw"
            )
        except BaseException:
            self.link.close()
            raise
        try:
            self.raw6 = _open(
                socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW, "raw IPv6"
            )
        except BaseException:
            self.link.close()
            self.raw4.close()
            raise
        # A routed SYN to a neighbour that does not reply to ARP waits in the
        # kernel for about 3 s (3.02 to 3.06 s under strace) and keeps its socket
        # buffer space. A blocking send on a full buffer would stall the
        # whole scan that long, so the raw sockets drop instead (EAGAIN).
        self.raw4.setblocking(False)
        self.raw6.setblocking(False)
        self.dropped = 0
        self.last_error: OSError | None = None

    def close(self) -> None:
        for sock in (self.link, self.raw4, self.raw6):
            sock.close()

    def send_link(
        self, packet: bytes | bytearray, interface: str, version: int, hop: bytes
    ) -> bool:
        """Send on an interface to a link-layer address; the kernel adds the
        link-layer header. Returns False when the packet was dropped."""
        protocol = ETH_P_IP if version == 4 else ETH_P_IPV6
        return self._send(self.link, packet, (interface, protocol, 0, 0, hop))

    def send_routed(
        self, packet: bytes | bytearray, version: int, destination: str
    ) -> bool:
        """Send through the kernel's routing. Returns False when dropped."""
        if version == 4:
            return self._send(self.raw4, packet, (destination, 0))
        return self._send(self.raw6, packet, (destination, 0))

    def _send(
        self,
        sock: socket.socket,
        packet: bytes | bytearray,
        address: tuple[object, ...],
    ) -> bool:
        for _ in range(SEND_RETRIES):
            try:
                sock.sendto(packet, address)
                return True
            except BlockingIOError as error:
                self.dropped += 1
                self.last_error = error
                return False
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    # A raw socket can report the ICMP error of an earlier
                    # packet (EHOSTUNREACH) on a later send, so one error
                    # does not end the run.
                    self.dropped += 1
                    self.last_error = error
                    return False
                time.sleep(SEND_RETRY_SECONDS)
        self.dropped += 1
        self.last_error = OSError(errno.ENOBUFS, "device queue full")
        return False


class Receiver:
    """An AF_PACKET socket on every interface that receives only TCP segments
    to our source port, from the network header on, through a TPACKET_V3
    ring unless `ring` is False."""

    def __init__(
        self, source_port: int, timeout: float = 0.05, *, ring: bool = True
    ) -> None:
        self.socket = _open(
            socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL), "AF_PACKET"
        )
        try:
            self._configure(source_port)
        except BaseException:
            self.socket.close()
            raise
        # Non-blocking, so that receive_nowait can tell an empty queue apart;
        # waits go through poll.
        self.socket.setblocking(False)
        self.timeout = timeout
        self._poll = select.poll()
        self._poll.register(self.socket, select.POLLIN)
        self.ring: ReceiveRing | None = None
        # Seconds a received packet may stay out of sight of receive_nowait.
        self.delay = 0.0
        if ring:
            try:
                self.ring = ReceiveRing(self.socket)
            except OSError:
                self.socket.close()
                raise
            # A block is handed over at most one retire period after it
            # opened, and the kernel's timer may fire one period late.
            self.delay = 2 * RETIRE_MILLISECONDS / 1000
        self._drops = 0
        self._packets = 0

    def _configure(self, source_port: int) -> None:
        program = compile_filter(f"tcp dst port {source_port}")
        attach_filter(self.socket, program.instructions)
        try:
            self.socket.setsockopt(
                socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES
            )
        except PermissionError:
            self.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES
            )
        self._discard_unfiltered()

    def _discard_unfiltered(self) -> None:
        """Drop what the socket queued before the filter was attached.

        The socket receives on every interface from creation, and Python
        cannot bind an AF_PACKET socket to all interfaces later, so anything
        queued in between is read and thrown away.
        """
        self.socket.setblocking(False)
        try:
            for _ in range(100_000):
                self.socket.recv(2048)
        except BlockingIOError:
            pass

    def receive(self) -> tuple[bytes, str, bytes] | None:
        """Return (datagram, interface, link-layer source) of the next
        incoming packet, or None when none arrives within the timeout.

        Our own outgoing packets, which AF_PACKET also delivers, are skipped.
        """
        if not self.wait_readable(self.timeout):
            return None
        return self.receive_nowait()

    def receive_nowait(self) -> tuple[bytes, str, bytes] | None:
        """Return the next incoming packet like `receive`, or None at once
        when the socket's queue contains no incoming packet."""
        if self.ring is not None:
            return self.ring.receive_nowait()
        # Bounded: outgoing copies are skipped, but the loop ends after this
        # many so that a busy sender cannot hold the caller here.
        for _ in range(1024):
            try:
                data, address = self.socket.recvfrom(2048)
            except BlockingIOError:
                return None
            if address[2] != PACKET_OUTGOING:
                return data, address[0], address[4]
        return None

    def wait_readable(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a packet; tell whether one is
        queued."""
        return bool(self._poll.poll(timeout * 1000))

    def statistics(self) -> tuple[int, int]:
        """Return (packets, drops) counted by the kernel since the socket opened.

        PACKET_STATISTICS resets the kernel's counters on each read, so they
        are added up here.
        """
        raw = self.socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("=II", raw)
        self._packets += packets
        self._drops += drops
        return self._packets, self._drops

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
        self.socket.close()
