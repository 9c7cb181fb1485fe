"""A TPACKET_V3 receive ring (PACKET_RX_RING) on an AF_PACKET socket.

With a plain packet socket, the kernel queues each packet as its own buffer
and wakes the reader for each one. A TPACKET_V3 ring instead copies packets
into blocks of memory shared with the process and wakes the reader once per
block, when the block is full or `RETIRE_MILLISECONDS` after it opened. At
tens of thousands of responses a second, that takes the per-packet wakeup
out of the sender's path (Documentation/networking/packet_mmap.rst in the
Linux sources describes the ring).

Layout read here, from linux/if_packet.h::

    block descriptor (struct tpacket_block_desc, TPACKET_V3):
    0   version            4   offset_to_priv
    8   block_status       12  num_pkts
    16  offset_to_first_pkt 20 blk_len       24  seq_num ...

    packet header (struct tpacket3_hdr), 48 bytes, then struct sockaddr_ll:
    0   tp_next_offset     4   tp_sec        8   tp_nsec
    12  tp_snaplen         16  tp_len        20  tp_status
    24  tp_mac             26  tp_net        28  hv1 (rxhash, vlan), padding
    48  sll_family         50  sll_protocol  52  sll_ifindex
    56  sll_hatype         58  sll_pkttype   59  sll_halen   60  sll_addr[8]
"""

from __future__ import annotations

import mmap
import socket
import struct
from collections import deque

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
PACKET_OUTGOING = 4

# Blocks are retired every RETIRE_MILLISECONDS even when nearly empty. So the
# number of blocks sets how long the receiver may fall behind: 128 blocks of
# 8 ms are at least 1 s. A 64 KiB block holds about 400 responses, and the
# ring's 8 MiB is the same for every scan.
BLOCK_BYTES = 1 << 16
BLOCK_COUNT = 128
FRAME_BYTES = 2048
# A block that is not full is handed to the reader this long after it opened,
# so a response waits at most about this long (plus one timer period).
RETIRE_MILLISECONDS = 8

_REQUEST = struct.Struct("=7I")
_BLOCK = struct.Struct("=III")  # block_status, num_pkts, offset_to_first_pkt
_PACKET = struct.Struct("=I8xI8xHH")  # next_offset, snaplen, mac, net
_ADDRESS = struct.Struct("=iHBB8s")  # ifindex, hatype, pkttype, halen, addr
_BLOCK_STATUS = 8
_U32 = struct.Struct("=I")
_ADDRESS_OFFSET = 52

Packet = tuple[bytes, str, bytes]


class ReceiveRing:
    """The ring of one AF_PACKET SOCK_DGRAM socket, read block by block."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        request = _REQUEST.pack(
            BLOCK_BYTES,
            BLOCK_COUNT,
            FRAME_BYTES,
            BLOCK_BYTES * BLOCK_COUNT // FRAME_BYTES,
            RETIRE_MILLISECONDS,
            0,
            0,
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self.memory = mmap.mmap(
            sock.fileno(),
            BLOCK_BYTES * BLOCK_COUNT,
            mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )
        self.block = 0
        self.ready: deque[Packet] = deque()
        self._names: dict[int, str] = {}

    def touch(self) -> None:
        """Map every page of the ring into this process now, so that its
        resident memory does not grow as the scan fills blocks."""
        for offset in range(0, len(self.memory), mmap.PAGESIZE):
            self.memory[offset]

    def receive_nowait(self) -> Packet | None:
        """Return the next incoming packet, or None when no retired block
        contains one. Our own outgoing packets are skipped."""
        while not self.ready:
            if not self._read_block():
                return None
        return self.ready.popleft()

    def ready_block(self) -> int | None:
        """Return the offset of the next block if the kernel has handed it
        over, else None. The caller reads it, then calls `release`."""
        base = self.block * BLOCK_BYTES
        status = _U32.unpack_from(self.memory, base + _BLOCK_STATUS)[0]
        return base if status & TP_STATUS_USER else None

    def release(self) -> None:
        """Hand the block that `ready_block` returned back to the kernel."""
        base = self.block * BLOCK_BYTES
        _U32.pack_into(self.memory, base + _BLOCK_STATUS, TP_STATUS_KERNEL)
        self.block = (self.block + 1) % BLOCK_COUNT

    def name(self, index: int) -> str:
        """Return the name of the interface with this index."""
        return self._name(index)

    def _read_block(self) -> bool:
        """Copy the packets of the next block out, if the kernel has handed
        it over, and return the block; tell whether there was one."""
        base = self.block * BLOCK_BYTES
        memory = self.memory
        status, count, offset = _BLOCK.unpack_from(memory, base + _BLOCK_STATUS)
        if not status & TP_STATUS_USER:
            return False
        position = base + offset
        for _ in range(count):
            next_offset, length, _, network = _PACKET.unpack_from(memory, position)
            index, _, kind, address_len, address = _ADDRESS.unpack_from(
                memory, position + _ADDRESS_OFFSET
            )
            if kind != PACKET_OUTGOING:
                start = position + network
                self.ready.append(
                    (
                        memory[start : start + length],
                        self._name(index),
                        address[:address_len],
                    )
                )
            position += next_offset
        struct.pack_into("=I", memory, base + _BLOCK_STATUS, TP_STATUS_KERNEL)
        self.block = (self.block + 1) % BLOCK_COUNT
        return True

    def _name(self, index: int) -> str:
        name = self._names.get(index)
        if name is None:
            name = socket.if_indextoname(index)
            self._names[index] = name
        return name

    def close(self) -> None:
        self.memory.close()
