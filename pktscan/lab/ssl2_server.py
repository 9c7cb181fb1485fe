"""An SSL 2.0-only server built on scapy's TLSServerAutomaton, for the lab.

Usage: python -m pktscan.lab.ssl2_server --address A --port P --cert PEM
--key PEM

scapy's automaton replies to an SSLv2 CLIENT-HELLO with an SSLv2 SERVER-HELLO
that carries the certificate, whatever version the hello offers. It also
speaks SSL 3.0 and TLS, so this subclass peeks at the first bytes of each
connection and resets any that do not start an SSLv2 CLIENT-HELLO, which
leaves SSL 2.0 as the only version it serves. Connections are served one
at a time, as the automaton does; the others wait in the listen backlog.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct

from scapy.automaton import ATMT
from scapy.layers.tls.automaton_srv import TLSServerAutomaton

from pktscan.lab.serve import prepare_server_process, server_options

logger = logging.getLogger("pktscan.lab.ssl2_server")

SSL2_CLIENT_HELLO = 1
# How long a new connection has to send its first 3 bytes, in seconds.
FIRST_BYTES_TIMEOUT_S = 5.0
LISTEN_BACKLOG = 128


def is_sslv2_client_hello(first_bytes: bytes) -> bool:
    """Return whether the bytes start an SSLv2 record (2-byte header) CLIENT-HELLO."""
    return (
        len(first_bytes) >= 3
        and bool(first_bytes[0] & 0x80)
        and first_bytes[2] == SSL2_CLIENT_HELLO
    )


def _peek_first_bytes(connection: socket.socket) -> bytes:
    """Wait for up to 3 bytes without consuming them; b"" on timeout or EOF."""
    try:
        readable, _, _ = select.select([connection], [], [], FIRST_BYTES_TIMEOUT_S)
        if not readable:
            return b""
        data = connection.recv(3, socket.MSG_PEEK)
        if 0 < len(data) < 3:
            # The rest of the header may trail in the next segment.
            readable, _, _ = select.select([connection], [], [], FIRST_BYTES_TIMEOUT_S)
            data = connection.recv(3, socket.MSG_PEEK)
    except OSError:
        return b""
    return data


def _reset(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    connection.close()


class SSLv2OnlyServer(TLSServerAutomaton):
    """TLSServerAutomaton that only lets SSLv2 CLIENT-HELLOs through."""

    @ATMT.state()
    def BIND(self) -> None:
        """Listen with a real backlog; the parent's listen(1) drops SYNs."""
        server_socket = socket.socket(self.ip_family, socket.SOCK_STREAM)
        server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server_socket.bind((self.local_ip, self.local_port))
        server_socket.listen(LISTEN_BACKLOG)
        self.serversocket = server_socket  # type: ignore[assignment]
        raise self.WAITING_CLIENT()  # type: ignore[misc]

    @ATMT.state()
    def WAITING_CLIENT(self) -> None:
        """Accept connections until one starts with an SSLv2 CLIENT-HELLO."""
        self.buffer_out = []
        self.buffer_in = []
        while True:
            try:
                connection, address = self.serversocket.accept()  # type: ignore[attr-defined]
            except OSError:
                raise self.FINAL() from None  # type: ignore[no-untyped-call]
            peer = f"{address[0]}:{address[1]}"
            first_bytes = _peek_first_bytes(connection)
            if is_sslv2_client_hello(first_bytes):
                break
            logger.info(
                "%s reset: first bytes %s are no SSLv2 CLIENT-HELLO",
                peer,
                first_bytes.hex(),
            )
            _reset(connection)
        logger.info("%s sent an SSLv2 CLIENT-HELLO", peer)
        self.socket = connection
        self.remote_ip, self.remote_port = address[:2]
        raise self.INIT_TLS_SESSION()  # type: ignore[no-untyped-call]


def main() -> None:
    """Parse the command line and serve until SIGTERM."""
    options = server_options(
        "python -m pktscan.lab.ssl2_server", "leaf certificate, PEM"
    )
    prepare_server_process()
    server = SSLv2OnlyServer(  # type: ignore[no-untyped-call]
        server=options.address,
        sport=options.port,
        mycert=options.cert,
        mykey=options.key,
        is_echo_server=False,
        max_client_idle_time=10,
    )
    logger.info("serving SSL 2.0 on %s:%d", options.address, options.port)
    try:
        server.run()
    finally:
        logger.info("stopping")


if __name__ == "__main__":
    main()
