"""Record real server flights on 127.0.0.1 for the reader tests.

Run from the repository root:

    .venv/bin/python tests/tls/flights/record_flights.py
    .venv/bin/python tests/tls/flights/record_flights.py --real-networks

The first form records the flights of `manifest.json`. The second records
the flights of `real-networks.json`, for tests/tls/test_real_networks.py.
Those are replies that a scanner must survive: a client certificate
request, anonymous DH, warning alerts, an alert to the SSLv2-format hello,
a stapled OCSP response and an HTTP 400 page.

For each flight it starts one local server (openssl s_server, a tlslite-ng
server, scapy's TLSServerAutomaton or nginx) on a free loopback port and sends it
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
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
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


def _receive(
    sock: socket.socket,
    received: bytearray,
    on_chunk: Callable[[bytes], object],
    until: Callable[[], bool],
) -> None:
    """Append what the server sends until `until()`, EOF, reset or the deadline."""
    deadline = time.monotonic() + READ_DEADLINE_S
    while not until() and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return
        if not chunk:
            return
        received += chunk
        on_chunk(chunk)


def exchange(
    port: int, hello: bytes, hello_format: str, after_done: bytes = b""
) -> bytes:
    """Send `hello` and return every byte the server sends, bounded in time.

    With `after_done`, those bytes are sent once the reader is done, and
    the reply is read on until the server closes or the deadline passes.
    """
    reader = HandshakeReader("sslv2" if hello_format == "sslv2" else "tls")
    received = bytearray()
    with socket.create_connection((LOOPBACK, port), timeout=READ_DEADLINE_S) as sock:
        sock.sendall(hello)
        _receive(sock, received, reader.feed, lambda: reader.done)
        if after_done and reader.done:
            sock.sendall(after_done)
            _receive(sock, received, lambda chunk: [], lambda: False)
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


# An empty client Certificate message (RFC 5246 7.4.6), in a TLS 1.2 record:
# what a client without a certificate sends to a CertificateRequest.
EMPTY_CLIENT_CERTIFICATE = bytes.fromhex("16 0303 0007 0b 000003 000000")
ANON_DH_SUITES = (0x0034, 0x00A6)  # TLS_DH_anon_WITH_AES_128_{CBC_SHA,GCM_SHA256}


def anon_dh_hello(random: bytes) -> bytes:
    """A TLS 1.2 hello offering only anonymous DH suites, which no set offers."""
    suites = (*ANON_DH_SUITES, 0x00FF)  # and TLS_EMPTY_RENEGOTIATION_INFO_SCSV
    extensions = (h.signature_algorithms([0x0401, 0x0804]),)
    return h.ClientHello(
        0x0301, 0x0303, random, suites, extensions=extensions
    ).to_bytes()


def make_ocsp_response() -> Path:
    """Write a "good" OCSP response for the RSA leaf, signed by the leaf's key.

    openssl s_server -status_file staples the file's bytes as they are; a
    client that checked the response would reject this responder, but the
    reader only frames it.
    """
    path = HERE / "ocsp-response.der"
    if path.exists():
        return path
    leaf = x509.load_pem_x509_certificate((HERE / "rsa-leaf.pem").read_bytes())
    issuer = x509.load_pem_x509_certificate((HERE / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key(
        (HERE / "rsa-leaf.key").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=issuer,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + datetime.timedelta(days=3650),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, leaf)
    )
    response = builder.sign(key, hashes.SHA256())
    path.write_bytes(response.public_bytes(serialization.Encoding.DER))
    return path


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 16; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 400; }}
    }}
}}
"""


def nginx_http(port: int, prefix: Path) -> list[str]:
    """Command line of an nginx that serves plain HTTP on 127.0.0.1:`port`.

    A ClientHello is no HTTP request, so nginx sends its 400 page; the
    location returns 400 for any request that does parse.
    """
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port))
    return ["nginx", "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "err")]


def _server_command(flight: dict[str, object], port: int, prefix: Path) -> list[str]:
    cert = str(flight["cert"])
    cert_path, key_path = str(HERE / f"{cert}-leaf.pem"), str(HERE / f"{cert}-leaf.key")
    if flight["server"] == "openssl":
        return openssl(port, cert, *flight.get("options", []))  # type: ignore[misc]
    if flight["server"] == "tlslite":
        return [PYTHON, "-c", TLSLITE_SERVER, str(port), cert_path, key_path]
    if flight["server"] == "nginx":
        return nginx_http(port, prefix)
    return [PYTHON, "-c", SCAPY_SERVER, str(port), cert_path, key_path]


def _hello(flight: dict[str, object], random: bytes) -> tuple[bytes, str]:
    set_number = flight["set"]
    if set_number == "tls13":
        return tls13_hello(random), "tls"
    if set_number == "anon-dh":
        return anon_dh_hello(random), "tls"
    assert isinstance(set_number, int)
    sni = str(flight.get("sni", f"{flight['cert']}.flights.pktscan.test"))
    hello = build_set_hello(set_number, random, sni)
    return hello, "sslv2" if set_number == 1 else "tls"


def record_flight(flight: dict[str, object]) -> dict[str, object]:
    port = _free_port()
    hello, hello_format = _hello(flight, os.urandom(32))
    after_done = bytes.fromhex(str(flight.get("after_done", "")))
    with tempfile.TemporaryDirectory() as prefix:
        command = _server_command(flight, port, Path(prefix))
        with running(command, port):
            reply = exchange(port, hello, hello_format, after_done)
    (HERE / f"{flight['name']}.bin").write_bytes(reply)
    (HERE / f"{flight['name']}.hello.bin").write_bytes(hello)
    entry = {
        "name": flight["name"],
        "set": flight["set"],
        "hello_format": hello_format,
        "cert": f"{flight['cert']}-leaf.pem",
        "how": flight["how"],
        "reply_len": len(reply),
    }
    if after_done:
        entry["after_done"] = after_done.hex()
    return entry


def real_network_flights() -> list[dict[str, object]]:
    """Flights of replies a scanner meets on real networks, from real servers."""
    modern = ["-cipher", "DEFAULT:@SECLEVEL=0", "-no_tls1_3"]
    other_name = [
        "-servername",
        "rsa.flights.pktscan.test",
        "-cert2",
        str(HERE / "ecdsa-leaf.pem"),
        "-key2",
        str(HERE / "ecdsa-leaf.key"),
    ]
    return [
        {
            "name": "openssl-client-cert-request",
            "server": "openssl",
            "cert": "rsa",
            "set": 3,
            "options": [*modern, "-Verify", "1"],
            "after_done": EMPTY_CLIENT_CERTIFICATE.hex(),
            "how": "openssl s_server -Verify 1, set 3; after ServerHelloDone the "
            "recorder sent an empty client Certificate, and the server's fatal "
            "alert follows the flight",
        },
        {
            "name": "openssl-anon-dh",
            "server": "openssl",
            "cert": "rsa",
            "set": "anon-dh",
            "options": [
                "-cipher",
                "ADH-AES128-SHA:ADH-AES128-GCM-SHA256:@SECLEVEL=0",
                "-no_tls1_3",
                "-nocert",
            ],
            "how": "openssl s_server -nocert -cipher ADH-AES128-SHA, a TLS 1.2 "
            "hello offering only DH_anon suites (anon_dh_hello)",
        },
        {
            "name": "openssl-sni-warning",
            "server": "openssl",
            "cert": "rsa",
            "set": 3,
            "sni": "other.flights.pktscan.test",
            "options": [*modern, *other_name],
            "how": "openssl s_server -servername rsa.flights.pktscan.test, set 3 "
            "with SNI other.flights.pktscan.test: a warning unrecognized_name "
            "alert before the ServerHello",
        },
        {
            "name": "openssl-sni-warning-then-fatal",
            "server": "openssl",
            "cert": "rsa",
            "set": 3,
            "sni": "other.flights.pktscan.test",
            "options": ["-cipher", "aNULL:@SECLEVEL=0", "-no_tls1_3", *other_name],
            "how": "openssl s_server -servername rsa.flights.pktscan.test -cipher "
            "aNULL, set 3 with another SNI: a warning unrecognized_name, then a "
            "fatal handshake_failure",
        },
        {
            "name": "openssl-tls12-only-sslv2-hello",
            "server": "openssl",
            "cert": "rsa",
            "set": 1,
            "options": ["-cipher", "DEFAULT:@SECLEVEL=0", "-tls1_2"],
            "how": "openssl s_server -tls1_2, set 1 (SSLv2-compatible hello): a "
            "TLS protocol_version alert",
        },
        {
            "name": "openssl-ocsp-stapling",
            "server": "openssl",
            "cert": "rsa",
            "set": 3,
            "options": [*modern, "-status_file", str(HERE / "ocsp-response.der")],
            "how": "openssl s_server -status_file ocsp-response.der, set 3: "
            "CertificateStatus between Certificate and ServerKeyExchange",
        },
        {
            "name": "nginx-http-400",
            "server": "nginx",
            "cert": "rsa",
            "set": 1,
            "how": "nginx serving plain HTTP, set 1 (SSLv2-compatible hello): an "
            "HTTP 400 page",
        },
    ]


def main() -> None:
    make_certificates()
    if sys.argv[1:] == ["--real-networks"]:
        make_ocsp_response()
        chosen, manifest_name = real_network_flights(), "real-networks.json"
    else:
        chosen, manifest_name = flights(), "manifest.json"
    manifest = [record_flight(flight) for flight in chosen]
    (HERE / manifest_name).write_text(json.dumps(manifest, indent=2) + "\n")
    for entry in manifest:
        print(entry["name"], entry["reply_len"])


if __name__ == "__main__":
    main()
