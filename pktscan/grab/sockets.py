"""Sockets for the kernel engine: connections that end with an RST.

SO_LINGER on with a zero timeout makes close() abort the connection: the
kernel sends an RST at once instead of a FIN, needs no answer from the
peer, and frees the socket's buffers immediately.
"""

from __future__ import annotations

import asyncio
import socket
import struct

RECEIVE_SIZE = 65536
# struct linger { int l_onoff; int l_linger; }: on, zero seconds => RST.
LINGER_ABORT = struct.pack("ii", 1, 0)


def open_abortive_socket(ip: str) -> socket.socket:
    """Create a non-blocking TCP socket whose close() sends an RST."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
    return sock


async def connect_abortive(ip: str, port: int, timeout: float) -> socket.socket:
    """Connect to ip:port with an abortive-close socket.

    Raises:
        TimeoutError: no SYN/ACK within the timeout.
        OSError: the connection was refused or the network is unreachable.
    """
    loop = asyncio.get_running_loop()
    sock = open_abortive_socket(ip)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (ip, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock
