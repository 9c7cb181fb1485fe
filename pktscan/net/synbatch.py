"""IPv4 SYNs written and sent in batches by the C send loop.

`pktscan.net._fastpath` fills the frames from the same template and with
the same cookie as `PacketTemplate.fill` and `SynCookie.sequence`, and sends
a batch with one sendmmsg call on the AF_PACKET socket. The prober uses it
for IPv4 targets whose next hop's link-layer address is known, and the
Python path for the rest (IPv6, loopback, unknown neighbours, debug logs).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pktscan.net import _fastpath
from pktscan.net.cookie import SynCookie
from pktscan.net.packet import PacketTemplate

MAX_BATCH = _fastpath.MAX_BATCH

Target = tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class BatchSent:
    """What one call of `SynBatch.send` did.

    Attributes:
        consumed: targets taken from the list, from `start` on.
        sent: frames the kernel accepted.
        dropped: frames that failed; `error` is the errno of the last.
    """

    consumed: int
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

    def send(
        self,
        sock: socket.socket,
        source: bytes,
        tsval: int,
        targets: list[Target],
        start: int,
        interface: str,
        hop: bytes,
        span: tuple[int, int],
    ) -> BatchSent:
        """Send SYNs to targets[start:] over `interface` to `hop`.

        Sending stops after MAX_BATCH targets, or at the first one whose
        address is outside `span`, a (network, mask) pair of integers within
        which the route and next hop stay the same.

        Raises:
            OSError: `interface` no longer exists.
        """
        ifindex = self._interfaces.get(interface)
        if ifindex is None:
            ifindex = socket.if_nametoindex(interface)
            self._interfaces[interface] = ifindex
        consumed, sent, dropped, error = _fastpath.send_syn4(
            self._template,
            *self._constants,
            source,
            self._source_port,
            self._key,
            tsval,
            targets,
            start,
            sock.fileno(),
            ifindex,
            hop,
            span[0],
            span[1],
        )
        return BatchSent(consumed, sent, dropped, error)
