"""Tests of `capture replay --to` against real TLS servers on loopback.

Each server is Python's `ssl` module (OpenSSL) on 127.0.0.1 with a fresh
self-signed certificate. The recorded flow is made the way a scan makes
it: the set 3 ClientHello is sent to the server over a real connection and
its real reply is written into a capture around a TCP handshake.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from capture_builders import SCANNER, CaptureBuilder, Conversation
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from pktscan.capture.cli import app
from pktscan.grab.sockets import LINGER_ABORT
from pktscan.tls.client import HandshakeReader
from pktscan.tls.sets import build_set_hello

LOOPBACK = "127.0.0.1"
RANDOM = bytes(range(32))
SOCKET_TIMEOUT = 5.0
# Connections one server accepts before its thread ends, so that no test can
# leave it running.
MAX_CONNECTIONS = 8


def _write_self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file = folder / f"{name}.crt"
    key_file = folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _TlsServer:
    """A TLS server on a loopback port that completes handshakes in a thread."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.listener = socket.create_server((LOOPBACK, 0))
        self.listener.settimeout(SOCKET_TIMEOUT)
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            connection.settimeout(SOCKET_TIMEOUT)
            try:
                with self.context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                # The client resets once it has the server's flight.
                pass

    def close(self) -> None:
        # On Linux, shutdown() wakes the thread blocked in accept().
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(SOCKET_TIMEOUT)


ServerFactory = Callable[[str], _TlsServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    servers: list[_TlsServer] = []

    def make(name: str) -> _TlsServer:
        server = _TlsServer(*_write_self_signed(tmp_path, name))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def _record_flight(port: int) -> tuple[bytes, bytes]:
    """Send the set 3 hello to a loopback port; return it and the reply."""
    hello = build_set_hello(3, RANDOM)
    reader = HandshakeReader("tls")
    reply = b""
    with socket.create_connection((LOOPBACK, port), SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ABORT)
        sock.sendall(hello)
        while not reader.done:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
            reader.feed(data)
    assert reader.done
    return hello, reply


def _capture(path: Path, port: int) -> Path:
    hello, reply = _record_flight(port)
    builder = CaptureBuilder()
    conversation = Conversation(builder, (SCANNER, 50001), (LOOPBACK, port))
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(hello)
    conversation.server_data(reply)
    conversation.client_rst()
    return builder.write(path)


def _replay_to(path: Path, port: int, *options: str) -> tuple[int, list[str]]:
    argv = ["replay", str(path), "--to", f"{LOOPBACK}:{port}", *options]
    result = CliRunner().invoke(app, argv)
    return result.exit_code, result.output.splitlines()


def _field_states(lines: list[str]) -> dict[str, str]:
    states = {}
    for line in lines:
        for name in ("outcome", "version", "cipher", "alert", "key exchange"):
            if line.startswith(f"  {name} "):
                states[name] = line.split()[len(name.split())]
        if line.startswith("  chain sha256 "):
            states["chain sha256"] = line.split()[2]
    return states


def test_live_same_server(tmp_path: Path, make_server: ServerFactory) -> None:
    server = make_server("one.loop.test")
    path = _capture(tmp_path / "one.pcap", server.port)
    exit_code, lines = _replay_to(path, server.port)

    assert exit_code == 0, lines
    assert "certificate  TLSv1.2" in lines[1]
    assert lines[-8].startswith("sent the ")
    expected_end = f"ClientHello of the flow at packet 1 to {LOOPBACK}:{server.port}"
    assert lines[-8].endswith(expected_end)
    assert _field_states(lines) == dict.fromkeys(
        ["outcome", "version", "cipher", "alert", "key exchange", "chain sha256"],
        "same",
    )
    assert lines[-1] == "result: the live reply matches the recorded one"


def test_live_other_certificate(tmp_path: Path, make_server: ServerFactory) -> None:
    recorded = make_server("one.loop.test")
    other = make_server("two.loop.test")
    path = _capture(tmp_path / "one.pcap", recorded.port)
    exit_code, lines = _replay_to(path, other.port)

    assert exit_code == 1
    states = _field_states(lines)
    assert states.pop("chain sha256") == "DIFFERS"
    assert set(states.values()) == {"same"}
    assert lines[-1] == "result: the live reply differs from the recorded one"


def test_live_no_reply(tmp_path: Path, make_server: ServerFactory) -> None:
    recorded = make_server("one.loop.test")
    path = _capture(tmp_path / "one.pcap", recorded.port)
    # The kernel completes the TCP handshake from the backlog, and nothing
    # ever reads or writes, so the live attempt ends by the timeout.
    with socket.create_server((LOOPBACK, 0)) as silent:
        port = int(silent.getsockname()[1])
        exit_code, lines = _replay_to(path, port, "--timeout", "0.5")

    assert exit_code == 1
    outcome = next(line for line in lines if line.startswith("  outcome "))
    assert outcome.split() == [
        "outcome",
        "DIFFERS",
        "recorded",
        "certificate;",
        "live",
        "timeout",
    ]


def test_live_connection_refused(tmp_path: Path, make_server: ServerFactory) -> None:
    recorded = make_server("one.loop.test")
    path = _capture(tmp_path / "one.pcap", recorded.port)
    with socket.create_server((LOOPBACK, 0)) as closed:
        port = int(closed.getsockname()[1])
    exit_code, lines = _replay_to(path, port)

    assert exit_code == 2
    assert f"error: failed to connect to {LOOPBACK}:{port}: Connection refused" in (
        lines
    )
