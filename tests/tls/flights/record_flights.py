"""Record real server flights on 127.0.0.1 for the reader tests.

Run from the repository root:

    .venv/bin/python tests/tls/flights/record_flights.py

For each flight it starts one local server (openssl s_server, a tlslite-ng
server or scapy's TLSServerAutomaton) on a free loopback port and sends it
one of our hellos over a plain socket. It saves every byte the server sends
until the HandshakeReader is done, the server closes, or 5 seconds pass.
Then it stops the server by its PID. Certificates and keys are generated here,
once, and kept next to the flights: they are test fixtures, not secrets.
Every connection goes to 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pktscan.tls import hello as h
from pktscan.tls.client import HandshakeReader
from pktscan.tls.sets import build_set_hello

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"
READ_DEADLINE_S = 5.0
SERVER_START_DEADLINE_S = 10.0
BIG_CERT_SAN_COUNT = 700  # about 20 KB of DER, more than one 16 KB record


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)


def _issue(
    subject: str,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    san_count: int = 1,
) -> x509.Certificate:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    names = [x509.DNSName(f"host{i}.flights.pktscan.test") for i in range(san_count)]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates() -> None:
    """Create a CA and RSA, ECDSA and oversized leaves, unless present."""
    if (HERE / "ca.pem").exists():
        return
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _issue("pktscan flights CA", ca_key, "pktscan flights CA", ca_key, ca=True)
    (HERE / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    leaves: dict[str, tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, int]] = {
        "rsa": (rsa.generate_private_key(public_exponent=65537, key_size=2048), 1),
        "ecdsa": (ec.generate_private_key(ec.SECP256R1()), 1),
        "big": (
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            BIG_CERT_SAN_COUNT,
        ),
    }
    for name, (key, san_count) in leaves.items():
        cert = _issue(
            f"{name}.flights.pktscan.test",
            key,
            "pktscan flights CA",
            ca_key,
            ca=False,
            san_count=san_count,
        )
        (HERE / f"{name}-leaf.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
        )
        _write_key(key, HERE / f"{name}-leaf.key")


def _listening(port: int) -> bool:
    """Tell from /proc/net/tcp whether something listens on `port`."""
    wanted = f"{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(":" + wanted) and fields[3] == "0A":
            return True
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running(command: list[str], port: int) -> Iterator[None]:
    """Run a server until the block ends, then stop it by its PID."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVER_START_DEADLINE_S
        while not _listening(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"server did not start: {command}")
            time.sleep(0.05)
        yield
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def exchange(port: int, hello: bytes, hello_format: str) -> bytes:
    """Send `hello` and return every byte the server sends, bounded in time."""
    reader = HandshakeReader("sslv2" if hello_format == "sslv2" else "tls")
    received = bytearray()
    with socket.create_connection((LOOPBACK, port), timeout=READ_DEADLINE_S) as sock:
        sock.sendall(hello)
        deadline = time.monotonic() + READ_DEADLINE_S
        while not reader.done and time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            reader.feed(chunk)
    return bytes(received)


def openssl(port: int, cert: str, *options: str) -> list[str]:
    return [
        "openssl",
        "s_server",
        "-accept",
        f"{LOOPBACK}:{port}",
        "-naccept",
        "1",
        "-cert",
        str(HERE / f"{cert}-leaf.pem"),
        "-key",
        str(HERE / f"{cert}-leaf.key"),
        "-cert_chain",
        str(HERE / "ca.pem"),
        "-quiet",
        *options,
    ]


TLSLITE_SERVER = """
import socket, sys
from tlslite.api import HandshakeSettings, TLSConnection, X509, X509CertChain
from tlslite.api import parsePEMKey
port, cert_path, key_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
chain = X509CertChain([X509().parse(open(cert_path).read())])
key = parsePEMKey(open(key_path).read(), private=True)
settings = HandshakeSettings()
settings.minVersion = (3, 0)
settings.maxVersion = (3, 0)
settings.cipherNames = ["aes128", "aes256", "3des", "rc4"]
settings.keyExchangeNames = ["rsa"]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(1)
listener.settimeout(20)
conn, _ = listener.accept()
conn.settimeout(10)
try:
    TLSConnection(conn).handshakeServer(certChain=chain, privateKey=key,
                                         settings=settings)
except Exception:
    pass
"""

SCAPY_SERVER = """
import sys
from scapy.layers.tls.automaton_srv import TLSServerAutomaton
server = TLSServerAutomaton(server="127.0.0.1", sport=int(sys.argv[1]),
                            mycert=sys.argv[2], mykey=sys.argv[3],
                            max_client_idle_time=10, verbose=False)
server.run()
"""


def tls13_hello(random: bytes) -> bytes:
    """A TLS 1.3 hello with an x25519 key share, to record a 1.3 ServerHello."""
    extensions = (
        h.supported_groups([0x001D]),
        h.signature_algorithms([0x0804, 0x0403]),
        h.Extension(0x002B, bytes.fromhex("02 0304")),  # supported_versions
        h.Extension(0x0033, bytes.fromhex("0024 001d 0020") + bytes(range(1, 33))),
    )
    hello = h.ClientHello(
        0x0301, 0x0303, random, (0x1301,), session_id=bytes(32), extensions=extensions
    )
    return hello.to_bytes()


def flights() -> list[dict[str, object]]:
    """The flights to record: name, server, hello and certificate."""
    return [
        {
            "name": "openssl-tls12-ecdhe-rsa",
            "server": "openssl",
            "cert": "rsa",
            "set": 3,
            "options": ["-cipher", "DEFAULT:@SECLEVEL=0", "-no_tls1_3"],
            "how": "openssl s_server -no_tls1_3 -cipher DEFAULT:@SECLEVEL=0, set 3",
        },
        {
            "name": "openssl-tls12-dhe-rsa",
            "server": "openssl",
            "cert": "rsa",
            "set": 3,
            "options": [
                "-cipher",
                "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
                "-no_tls1_3",
            ],
            "how": "openssl s_server -cipher DHE-RSA-AES128-GCM-SHA256, set 3",
        },
        {
            "name": "openssl-tls12-ecdsa",
            "server": "openssl",
            "cert": "ecdsa",
            "set": 3,
            "options": ["-cipher", "DEFAULT:@SECLEVEL=0", "-no_tls1_3"],
            "how": "openssl s_server with a P-256 ECDSA leaf, set 3",
        },
        {
            "name": "openssl-tls10-set2",
            "server": "openssl",
            "cert": "rsa",
            "set": 2,
            "options": ["-cipher", "DEFAULT:@SECLEVEL=0", "-tls1"],
            "how": "openssl s_server -tls1 -cipher DEFAULT:@SECLEVEL=0, set 2",
        },
        {
            "name": "openssl-tls10-sslv2-hello",
            "server": "openssl",
            "cert": "rsa",
            "set": 1,
            "options": ["-cipher", "DEFAULT:@SECLEVEL=0", "-tls1"],
            "how": "openssl s_server -tls1 -cipher DEFAULT:@SECLEVEL=0, set 1 "
            "(SSLv2-compatible hello)",
        },
        {
            "name": "openssl-big-chain",
            "server": "openssl",
            "cert": "big",
            "set": 3,
            "options": ["-cipher", "DEFAULT:@SECLEVEL=0", "-no_tls1_3"],
            "how": "openssl s_server with a leaf of 700 SANs (Certificate over "
            "16 KB), set 3",
        },
        {
            "name": "openssl-tls13-only-alert",
            "server": "openssl",
            "cert": "rsa",
            "set": 3,
            "options": ["-tls1_3"],
            "how": "openssl s_server -tls1_3, set 3: a protocol_version alert",
        },
        {
            "name": "openssl-tls13",
            "server": "openssl",
            "cert": "rsa",
            "set": "tls13",
            "options": ["-tls1_3"],
            "how": "openssl s_server -tls1_3, a TLS 1.3 hello with an x25519 share",
        },
        {
            "name": "tlslite-ssl3",
            "server": "tlslite",
            "cert": "rsa",
            "set": 4,
            "how": "tlslite-ng 0.8 server, SSL 3.0 only, RSA key exchange, set 4",
        },
        {
            "name": "scapy-sslv2",
            "server": "scapy",
            "cert": "rsa",
            "set": 1,
            "how": "scapy TLSServerAutomaton, SSL 2.0 SERVER-HELLO, set 1",
        },
    ]


def record_flight(flight: dict[str, object]) -> dict[str, object]:
    port = _free_port()
    cert = str(flight["cert"])
    cert_path, key_path = str(HERE / f"{cert}-leaf.pem"), str(HERE / f"{cert}-leaf.key")
    if flight["server"] == "openssl":
        command = openssl(port, cert, *flight.get("options", []))  # type: ignore[misc]
    elif flight["server"] == "tlslite":
        command = [PYTHON, "-c", TLSLITE_SERVER, str(port), cert_path, key_path]
    else:
        command = [PYTHON, "-c", SCAPY_SERVER, str(port), cert_path, key_path]

    random = os.urandom(32)
    set_number = flight["set"]
    if set_number == "tls13":
        hello, hello_format = tls13_hello(random), "tls"
    else:
        assert isinstance(set_number, int)
        hello = build_set_hello(set_number, random, f"{cert}.flights.pktscan.test")
        hello_format = "sslv2" if set_number == 1 else "tls"
    with running(command, port):
        reply = exchange(port, hello, hello_format)
    (HERE / f"{flight['name']}.bin").write_bytes(reply)
    (HERE / f"{flight['name']}.hello.bin").write_bytes(hello)
    return {
        "name": flight["name"],
        "set": set_number,
        "hello_format": hello_format,
        "cert": f"{cert}-leaf.pem",
        "how": flight["how"],
        "reply_len": len(reply),
    }


def main() -> None:
    make_certificates()
    manifest = [record_flight(flight) for flight in flights()]
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for entry in manifest:
        print(entry["name"], entry["reply_len"])


if __name__ == "__main__":
    main()
