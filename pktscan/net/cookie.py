"""The SYN cookie: a keyed hash of the 4-tuple carried in the sequence number.

A target that answers a SYN acknowledges sequence + 1, with SYN/ACK for an
open port and RST/ACK for a closed one (RFC 793, "SEGMENT ARRIVES", states
LISTEN and CLOSED; a SYN counts as one octet of sequence space). Checking
that acknowledgment against the hash recomputed from the response's addresses
and ports proves that the response belongs to a probe of this scan, with no
table of probes sent. The key is random per scan, so a third party cannot
forge a valid response without seeing the probe.

The hash is SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed function
made for short inputs, computed in C by `pktscan.net._fastpath`; the
sequence number is its low 32 bits. The C send loop computes the same
function for every SYN it writes.
"""

from __future__ import annotations

import os
import struct

from pktscan.net._fastpath import siphash24
from pktscan.net.packet import TCP_ACK, TcpResponse

KEY_LEN = 16
_PORTS = struct.Struct("!HH")


class SynCookie:
    """Sequence numbers derived from the 4-tuple with a per-scan key."""

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) != KEY_LEN:
            raise ValueError(f"cookie key must be {KEY_LEN} bytes, not {len(key)}")
        self.key = key if key is not None else os.urandom(KEY_LEN)

    def sequence(
        self,
        source: bytes,
        destination: bytes,
        source_port: int,
        destination_port: int,
    ) -> int:
        """Return the 32-bit sequence number for a probe with this 4-tuple.

        Args:
            source: our packed address.
            destination: the target's packed address.
        """
        data = source + destination + _PORTS.pack(source_port, destination_port)
        return siphash24(self.key, data) & 0xFFFFFFFF

    def validate(self, response: TcpResponse) -> bool:
        """Tell whether the response acknowledges a probe with our cookie."""
        if not response.flags & TCP_ACK:
            return False
        expected = self.sequence(
            response.destination,
            response.source,
            response.destination_port,
            response.source_port,
        )
        return response.acknowledgment == (expected + 1) & 0xFFFFFFFF
