"""A TCP front that imitates version-intolerant servers, for the lab.

Usage: python -m pktscan.lab.front --listen A:P --backend A:P
[--reject FEATURE]...

The front reads the client's first record. When the ClientHello in it has
a rejected feature, the front resets the connection (close with SO_LINGER
0, so the kernel sends an RST), the way version-intolerant servers fail.
Otherwise it sends the bytes on to a real TLS server and relays both ways.
Features:

- v2hello: the SSLv2-compatible CLIENT-HELLO format (RFC 6101 appendix E).
- above-ssl3: a client_version above SSL 3.0 (3,0), in either format.
- extensions: a TLS ClientHello carrying an extensions block.

Record headers the front distinguishes:

    SSLv2:  | 1LLLLLLL | LLLLLLLL | msg_type=1 | version (2) | ...
    TLS:    | type=22  | version (2) | length (2) | hs_type=1 | len (3)
            | client_version (2) | random (32) | session_id | ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import struct
import sys
from dataclasses import dataclass

logger = logging.getLogger("pktscan.lab.front")

FEATURES = ("v2hello", "above-ssl3", "extensions")
SSL3_VERSION = 0x0300
TLS_HANDSHAKE = 22
CLIENT_HELLO = 1
SSL2_CLIENT_HELLO = 1
# Maximum record body we accept: 2^14 plaintext plus 2048 bytes of
# expansion (RFC 5246 section 6.2.3).
MAX_RECORD_BODY = 16384 + 2048
FIRST_RECORD_TIMEOUT_S = 10.0
RELAY_IDLE_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 512
_RELAY_CHUNK = 65536


class _UnreadableRecord(Exception):
    """The first bytes are not a record header the front can size."""


@dataclass(frozen=True, slots=True)
class HelloFeatures:
    """Features of the client's hello, read from its first record.

    Attributes:
        v2hello: the record is an SSLv2-format CLIENT-HELLO.
        client_version: the version the hello offers, or None when the
            record is no hello.
        extensions: the TLS ClientHello has bytes after its compression
            methods, which is its extensions block.
    """

    v2hello: bool
    client_version: int | None
    extensions: bool


def record_length(header: bytes) -> int:
    """Return the full length of the record that starts with `header`.

    `header` must hold at least 5 bytes for a TLS record, 2 for SSLv2.
    """
    if header[0] & 0x80:
        # SSLv2 2-byte header: the high bit set, then a 15-bit length.
        return 2 + (((header[0] & 0x7F) << 8) | header[1])
    length = (header[3] << 8) | header[4]
    if length > MAX_RECORD_BODY:
        raise _UnreadableRecord(f"record length {length} above {MAX_RECORD_BODY}")
    return 5 + length


def inspect_hello(record: bytes) -> HelloFeatures:
    """Read the format, client_version and extension presence of a hello."""
    if record[0] & 0x80:
        if len(record) >= 5 and record[2] == SSL2_CLIENT_HELLO:
            return HelloFeatures(True, (record[3] << 8) | record[4], False)
        return HelloFeatures(True, None, False)
    if record[0] != TLS_HANDSHAKE or len(record) < 11 or record[5] != CLIENT_HELLO:
        return HelloFeatures(False, None, False)
    client_version = (record[9] << 8) | record[10]
    return HelloFeatures(False, client_version, _has_extensions(record))


def _has_extensions(record: bytes) -> bool:
    """Return whether bytes follow the compression methods of a ClientHello.

    NOTE: only the first record is read, so a ClientHello fragmented over
    several records counts as having extensions when its first fragment
    ends before them.
    """
    body_end = min(len(record), 9 + int.from_bytes(record[6:9], "big"))
    offset = 9 + 2 + 32
    if offset >= body_end:
        return False
    offset += 1 + record[offset]
    if offset + 2 > body_end:
        return True
    offset += 2 + ((record[offset] << 8) | record[offset + 1])
    if offset >= body_end:
        return True
    offset += 1 + record[offset]
    return offset < body_end


def rejection(features: HelloFeatures, rejected: frozenset[str]) -> str | None:
    """Return why the hello is rejected, or None to relay it."""
    if "v2hello" in rejected and features.v2hello:
        return "SSLv2-format hello"
    version = features.client_version
    if "above-ssl3" in rejected and version is not None and version > SSL3_VERSION:
        return f"client_version 0x{version:04x} above SSL 3.0"
    if "extensions" in rejected and features.extensions:
        return "hello with extensions"
    return None


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()


async def _read_first_record(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(2)
    if not header[0] & 0x80:
        header += await reader.readexactly(3)
    total = record_length(header)
    return header + await reader.readexactly(total - len(header))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while True:
        data = await asyncio.wait_for(source.read(_RELAY_CHUNK), RELAY_IDLE_TIMEOUT_S)
        if not data:
            break
        sink.write(data)
        await sink.drain()


class Front:
    """The listening front: classifies, resets or relays each connection."""

    def __init__(self, backend: tuple[str, int], rejected: frozenset[str]) -> None:
        self.backend = backend
        self.rejected = rejected
        self.active = 0

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one client connection."""
        peer_address = writer.get_extra_info("peername")
        peer = f"{peer_address[0]}:{peer_address[1]}"
        if self.active >= MAX_CONNECTIONS:
            logger.warning("%s reset: %d connections already open", peer, self.active)
            _reset(writer)
            return
        self.active += 1
        try:
            await self._serve(peer, reader, writer)
        finally:
            self.active -= 1

    async def _serve(
        self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            record = await asyncio.wait_for(
                _read_first_record(reader), FIRST_RECORD_TIMEOUT_S
            )
        except (TimeoutError, asyncio.IncompleteReadError, OSError) as error:
            logger.info("%s closed before a full first record: %r", peer, error)
            writer.transport.abort()
            return
        except _UnreadableRecord as error:
            logger.info("%s reset: %s", peer, error)
            _reset(writer)
            return

        reason = rejection(inspect_hello(record), self.rejected)
        if reason is not None:
            logger.info("%s reset: %s", peer, reason)
            _reset(writer)
            return
        await self._relay(peer, record, reader, writer)

    async def _relay(
        self,
        peer: str,
        record: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            backend_reader, backend_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.backend), FIRST_RECORD_TIMEOUT_S
            )
        except (TimeoutError, OSError) as error:
            logger.error(
                "%s reset: backend %s:%d failed: %r", peer, *self.backend, error
            )
            _reset(writer)
            return
        logger.info("%s relayed to %s:%d", peer, *self.backend)
        backend_writer.write(record)
        upstream = asyncio.create_task(_pipe(reader, backend_writer))
        downstream = asyncio.create_task(_pipe(backend_reader, writer))
        done, pending = await asyncio.wait(
            {upstream, downstream}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

        # Pass a reset on: the side that reset makes the front reset the other.
        failed = [task for task in done if task.exception() is not None]
        if downstream in failed:
            _reset(writer)
        else:
            writer.transport.close()
        if upstream in failed:
            _reset(backend_writer)
        else:
            backend_writer.transport.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"invalid ADDRESS:PORT {text!r}")
    return host, int(port)


async def _serve(listen: tuple[str, int], front: Front) -> None:
    server = await asyncio.start_server(front.handle, *listen, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info(
        "listening on %s:%d, backend %s:%d, rejecting %s",
        *listen,
        *front.backend,
        ", ".join(sorted(front.rejected)) or "nothing",
    )
    async with server:
        await stop.wait()
    logger.info("stopping")


def main() -> None:
    """Parse the command line and run the front until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m pktscan.lab.front")
    parser.add_argument("--listen", type=_address, required=True)
    parser.add_argument("--backend", type=_address, required=True)
    parser.add_argument("--reject", action="append", choices=FEATURES, default=[])
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    front = Front(options.backend, frozenset(options.reject))
    asyncio.run(_serve(options.listen, front))


if __name__ == "__main__":
    main()
