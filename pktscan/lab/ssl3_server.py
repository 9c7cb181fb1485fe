"""An SSL 3.0-only server built on tlslite-ng, for the lab.

Usage: python -m pktscan.lab.ssl3_server --address A --port P --cert PEM
--key PEM

Debian's OpenSSL 3 is built without SSL 3.0, so tlslite-ng, a pure-Python
TLS implementation that still speaks it, serves the lab's SSL 3.0 servers.
Its record layer also reads SSLv2-format ClientHellos (RFC 6101 appendix
E), so a compatible hello offering SSL 3.0 gets an SSL 3.0 ServerHello.
Each connection runs in its own thread; a peer that resets in the middle
of the handshake only ends its own thread.
"""

from __future__ import annotations

import logging
import socket
import socketserver

from tlslite.api import (
    HandshakeSettings,
    TLSConnection,
    X509CertChain,
    parsePEMKey,
)
from tlslite.errors import TLSError

from pktscan.lab.serve import prepare_server_process, server_options

logger = logging.getLogger("pktscan.lab.ssl3_server")

SSL3 = (3, 0)
# Bounds a peer that connects and sends nothing, in seconds.
CONNECTION_TIMEOUT_S = 10.0


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        sock: socket.socket = self.request
        sock.settimeout(CONNECTION_TIMEOUT_S)
        connection = TLSConnection(sock)
        try:
            connection.handshakeServer(
                certChain=self.server.cert_chain,
                privateKey=self.server.private_key,
                settings=self.server.settings,
            )
        except (TLSError, OSError) as error:
            logger.info("%s handshake failed: %r", peer, error)
            return
        logger.info("%s handshake done, version %s", peer, connection.version)
        try:
            connection.write(b"ssl3-only\n")
            connection.close()
        except (TLSError, OSError) as error:
            logger.info("%s closed early: %r", peer, error)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], cert: str, key: str) -> None:
        with open(cert) as cert_file:
            self.cert_chain = X509CertChain()
            self.cert_chain.parsePemList(cert_file.read())
        with open(key) as key_file:
            self.private_key = parsePEMKey(key_file.read(), private=True)
        settings = HandshakeSettings()
        settings.minVersion = SSL3
        settings.maxVersion = SSL3
        self.settings = settings
        super().__init__(address, _Handler)


def main() -> None:
    """Parse the command line and serve until SIGTERM."""
    options = server_options("python -m pktscan.lab.ssl3_server", "leaf and chain, PEM")
    prepare_server_process()
    with _Server((options.address, options.port), options.cert, options.key) as server:
        logger.info("serving SSL 3.0 on %s:%d", options.address, options.port)
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            logger.info("stopping")


if __name__ == "__main__":
    main()
