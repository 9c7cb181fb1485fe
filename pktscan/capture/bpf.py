"""Compile tcpdump filter expressions to classic BPF and attach them to sockets.

libpcap (`pcap_compile`, through ctypes) turns an expression such as
``tcp port 443`` into `struct sock_filter` instructions. The recorder's
AF_PACKET socket is of type SOCK_DGRAM. The kernel runs a filter attached to
such a socket on the packet from its network header on (packet_rcv in
net/packet/af_packet.c). So expressions are compiled for DLT_RAW, where byte
0 of the data the filter receives is the IPv4 or IPv6 version nibble.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
from dataclasses import dataclass

from pktscan.errors import CaptureError, InputError

# DLT_RAW as Linux libpcap numbers it for pcap_open_dead (pcap/dlt.h); the
# LINKTYPE_RAW value 101 is what pcap files store.
DLT_RAW_LINUX = 12
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
SO_ATTACH_FILTER = 26

# One instruction, "ret #0": the filter that drops every packet.
DROP_ALL = (0x06, 0, 0, 0)
# "ret #0xffffffff": keep every packet whole.
ACCEPT_ALL = (0x06, 0, 0, 0xFFFFFFFF)

# Linux classic-BPF extensions (linux/filter.h): loads from SKF_AD_OFF (-4096)
# plus these offsets read packet metadata instead of packet bytes.
SKF_AD_PKTTYPE_ABS = 0xFFFFF000 + 4
SKF_AD_IFINDEX_ABS = 0xFFFFF000 + 8
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
PACKET_OUTGOING = 4


class _BpfInsn(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _BpfProgram(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn)))


@dataclass(frozen=True, slots=True)
class BpfProgram:
    """A compiled classic BPF program.

    Attributes:
        expression: the tcpdump filter expression it was compiled from.
        instructions: (code, jt, jf, k) tuples in program order.
    """

    expression: str
    instructions: tuple[tuple[int, int, int, int], ...]


def _load_libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap")
    if name is None:
        raise CaptureError(
            "libpcap not found, so BPF filter expressions cannot be compiled",
            hint="install the Debian package libpcap0.8 or record without a filter",
        )
    lib = ctypes.CDLL(name)
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = (
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    )
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
    lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgram),)
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    return lib


def compile_filter(expression: str, snaplen: int = 65535) -> BpfProgram:
    """Compile a tcpdump filter expression for packets that start at the IP header.

    Raises:
        InputError: libpcap rejected the expression; the message quotes it and
            libpcap's reason.
        CaptureError: libpcap is not installed.
    """
    lib = _load_libpcap()
    handle = lib.pcap_open_dead(DLT_RAW_LINUX, snaplen)
    if not handle:
        raise CaptureError("pcap_open_dead failed", hint="check the libpcap install")
    program = _BpfProgram()
    try:
        status = lib.pcap_compile(
            handle,
            ctypes.byref(program),
            expression.encode(),
            1,
            PCAP_NETMASK_UNKNOWN,
        )
        if status != 0:
            reason = (lib.pcap_geterr(handle) or b"unknown error").decode(
                errors="replace"
            )
            raise InputError(
                f"invalid BPF filter {expression!r}: {reason}",
                hint="use tcpdump filter syntax for IP packets, "
                "for example 'tcp port 443 or udp port 53'",
            )
        instructions = tuple(
            (insn.code, insn.jt, insn.jf, insn.k)
            for insn in program.bf_insns[: program.bf_len]
        )
        lib.pcap_freecode(ctypes.byref(program))
    finally:
        lib.pcap_close(handle)
    return BpfProgram(expression, instructions)


def skip_outgoing_on(
    ifindex: int, instructions: tuple[tuple[int, int, int, int], ...]
) -> tuple[tuple[int, int, int, int], ...]:
    """Prefix a program so it drops outgoing packets on one interface.

    On a loopback interface every packet is seen twice by a packet socket,
    once outgoing and once incoming. Dropping the outgoing copy in the kernel
    keeps it out of the socket buffer and out of the drop counters. The
    program's jumps are relative, so it runs unchanged after the prefix.
    """
    prefix = (
        (BPF_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE_ABS),
        (BPF_JEQ_K, 0, 3, PACKET_OUTGOING),  # not outgoing: go to the program
        (BPF_LD_W_ABS, 0, 0, SKF_AD_IFINDEX_ABS),
        (BPF_JEQ_K, 0, 1, ifindex),  # another interface: go to the program
        DROP_ALL,
    )
    return prefix + instructions


def attach_filter(
    sock: socket.socket, instructions: tuple[tuple[int, int, int, int], ...]
) -> None:
    """Attach classic BPF instructions to a socket with SO_ATTACH_FILTER.

    The kernel copies the program during setsockopt, so the buffer that the
    `struct sock_fprog` points at only has to live for the call.
    """
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in instructions)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    # struct sock_fprog in native layout: unsigned short len, then a pointer.
    fprog = struct.pack("@HP", len(instructions), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
