"""Record a real scan-like exchange on loopback and verify it.

A real `openssl s_server` listens on 127.0.0.1. The test sends a SYN probe
from a raw socket (the kernel replies to the SYN/ACK with its own RST, and
the test adds the scanner's), then opens one connection per protocol set in
order, sends the set's ClientHello, reads the flight until a certificate or
the end, and closes with SO_LINGER 0 so close() sends an RST. The recorder
captures all of it, and `capture verify` must find the "scan" profile.

Needs root (AF_PACKET and raw sockets) and the openssl binary.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pktscan.capture.checker import check_file
from pktscan.capture.cli import app
from pktscan.capture.recorder import PcapRecorder
from pktscan.capture.sequence import Profile
from pktscan.capture.tlsview import view_stream
from pktscan.tls.sets import build_set_hello

pytestmark = [
    pytest.mark.rawsock,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]

LOOPBACK = "127.0.0.1"
LINGER_ZERO = struct.pack("ii", 1, 0)
READ_TIMEOUT_S = 2.0
MAX_FLIGHT_BYTES = 65536
SERVER_START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """Start openssl s_server with a fresh self-signed key; yield its port."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=capture.test",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        [
            "openssl", "s_server", "-accept", f"{LOOPBACK}:{port}",
            "-key", str(key), "-cert", str(cert), "-quiet", "-naccept", "10",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_listening(port)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket() as check:
            if check.connect_ex((LOOPBACK, port)) == 0:
                check.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
                return
        time.sleep(0.05)
    raise TimeoutError(f"openssl s_server did not listen on port {port}")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _tcp_header(sport: int, dport: int, seq: int, flags: int) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 1024, 0, 0)
    address = socket.inet_aton(LOOPBACK)
    pseudo = address + address + struct.pack("!BBH", 0, socket.IPPROTO_TCP, 20)
    checksum = _checksum(pseudo + header)
    return header[:16] + struct.pack("!H", checksum) + header[18:]


def send_probe(port: int, source_port: int, isn: int) -> None:
    """Send a SYN probe and the scanner's RST from a raw socket on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP) as raw:
        raw.sendto(_tcp_header(source_port, port, isn, 0x02), (LOOPBACK, 0))
        # The SYN/ACK reaches no socket, so the kernel sends an RST too.
        time.sleep(0.2)
        raw.sendto(_tcp_header(source_port, port, isn + 1, 0x04), (LOOPBACK, 0))


def run_attempt(port: int, set_number: int) -> bool:
    """Send one set's ClientHello, read the flight, close with an RST.

    Returns whether the flight carried a certificate.
    """
    client = socket.create_connection((LOOPBACK, port), timeout=READ_TIMEOUT_S)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    try:
        client.sendall(build_set_hello(set_number, os.urandom(32)))
        flight = b""
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline and len(flight) < MAX_FLIGHT_BYTES:
            view = view_stream(flight, from_client=False)
            if view.certificate_offset is not None or view.alert is not None:
                break
            try:
                chunk = client.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            flight += chunk
        return view_stream(flight, from_client=False).certificate_offset is not None
    finally:
        client.close()


def test_loopback_scan_verifies(tmp_path: Path, tls_server: int) -> None:
    path = tmp_path / "loopback.pcap"
    probe_port = _free_port()
    recorder = PcapRecorder(path, interface="lo", bpf=f"tcp port {tls_server}")
    outcomes: list[bool] = []
    with recorder:
        send_probe(tls_server, probe_port, isn=0x1234_5678)
        for set_number in (1, 2, 3, 4):
            outcomes.append(run_attempt(tls_server, set_number))
            if outcomes[-1]:
                break
        time.sleep(0.2)
    stats = recorder.stop()

    assert outcomes[-1] is True
    report = check_file(path, Profile.SCAN)
    assert report.frames == stats.packets
    assert stats.kernel_drops == 0
    assert len(report.targets) == 1
    verdict = report.targets[0]
    assert verdict.target == f"{LOOPBACK}:{tls_server}"
    assert verdict.probe == "open"
    assert verdict.deviations == ()
    assert [a.set_number for a in verdict.attempts] == list(range(1, len(outcomes) + 1))
    assert [a.certificate for a in verdict.attempts] == outcomes
    assert all(a.close.endswith("RST from scanner") for a in verdict.attempts)

    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{LOOPBACK}:{tls_server}  conforms" in result.output


def test_loopback_fin_close_deviates(tmp_path: Path, tls_server: int) -> None:
    path = tmp_path / "fin.pcap"
    with PcapRecorder(path, interface="lo", bpf=f"tcp port {tls_server}"):
        send_probe(tls_server, _free_port(), isn=77)
        client = socket.create_connection((LOOPBACK, tls_server), timeout=2)
        client.sendall(build_set_hello(3, os.urandom(32)))
        client.recv(65536)
        client.close()  # an orderly close: FIN, not RST
        time.sleep(0.3)
    report = check_file(path, Profile.SCAN)

    deviations = report.targets[0].deviations
    assert len(deviations) == 1
    assert deviations[0].expected == "RST from scanner as its last packet"
    assert deviations[0].seen == "FIN/ACK from scanner"
    result = CliRunner().invoke(app, ["verify", str(path), "--json"])
    assert result.exit_code == 1
