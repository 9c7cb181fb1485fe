"""Servers for the raw engine's namespace tests, one behaviour per port.

Usage: usertcp_server.py PORT_BASE. Each server reads one line (the
request), then:

  PORT_BASE + 0  writes BIG_REPLY_LEN bytes of a known pattern in small writes
  PORT_BASE + 1  closes with a FIN
  PORT_BASE + 2  closes with an RST (SO_LINGER 0)
  PORT_BASE + 3  sends nothing

Prints "ready" once every server listens; exits after 120 s at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys

BIG_REPLY_LEN = 400_000
WRITE_SIZE = 1000
LIFETIME_SECONDS = 120


def pattern(length: int) -> bytes:
    """The big reply: 4-byte big-endian offsets, so a misplaced byte shows."""
    words = (length + 3) // 4
    return b"".join(struct.pack("!I", 4 * index) for index in range(words))[:length]


async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    data = pattern(BIG_REPLY_LEN)
    for offset in range(0, len(data), WRITE_SIZE):
        writer.write(data[offset : offset + WRITE_SIZE])
        await writer.drain()
    await _wait_for_close(reader, writer)


async def fin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"bye\n")
    await writer.drain()
    writer.close()


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    await _wait_for_close(reader, writer)


async def _wait_for_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(reader.read(), LIFETIME_SECONDS)
    writer.close()


async def main(base: int) -> None:
    servers = []
    for offset, handler in enumerate((big, fin, reset, silent)):
        server = await asyncio.start_server(
            handler, host=["0.0.0.0", "::"], port=base + offset, reuse_address=True
        )
        servers.append(server)
    print("ready", flush=True)
    await asyncio.sleep(LIFETIME_SECONDS)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
