"""Tests of capture replay: hello framing, replayed flows, results and the CLI.

Captures are built packet by packet with capture_builders, so every
expected chain, outcome and packet number is known exactly.
"""

from __future__ import annotations

import datetime
import json
import random
import sqlite3
from pathlib import Path
from typing import get_args

import dpkt
import pytest
from capture_builders import (
    SCANNER,
    TARGET,
    AttemptPlan,
    CaptureBuilder,
    Conversation,
    alert_flight,
    certificate_flight,
    certificate_message,
    handshake,
    record,
    scan_target,
    server_hello,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from pktscan.capture.cli import app
from pktscan.capture.replay import (
    FOREIGN_SET,
    ReplayReport,
    client_hello_bytes,
    hello_format_of,
    replay_file,
)
from pktscan.tls.client import Outcome
from pktscan.tls.sets import build_set_hello

RANDOM = bytes(range(32))
# The DER that certificate_flight() puts in its Certificate message.
FLIGHT_DER = bytes((i * 7) & 0xFF for i in range(900))


def _replay(builder: CaptureBuilder, tmp_path: Path) -> ReplayReport:
    return replay_file(builder.write(tmp_path / "built.pcap"))


# Hello framing


def test_hello_format_of_sets() -> None:
    assert hello_format_of(build_set_hello(1, RANDOM)) == "sslv2"
    for set_number in (2, 3, 4):
        assert hello_format_of(build_set_hello(set_number, RANDOM)) == "tls"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET / HTTP/1.1\r\n",
        record(22, server_hello()),  # a handshake record, but not a ClientHello
        record(21, b"\x02\x28"),  # an alert record
        b"\x80\x10\x04" + bytes(16),  # SSLv2 header, SERVER-HELLO type
    ],
)
def test_hello_format_of_other(data: bytes) -> None:
    assert hello_format_of(data) is None


@pytest.mark.parametrize("set_number", [1, 2, 3, 4])
def test_client_hello_bytes_whole(set_number: int) -> None:
    hello = build_set_hello(set_number, RANDOM, "www.lab.test")

    assert client_hello_bytes(hello) == hello
    assert client_hello_bytes(hello + b"\x14\x03\x01\x00\x01\x01") == hello
    for end in range(len(hello)):
        assert client_hello_bytes(hello[:end]) is None


def test_client_hello_bytes_two_records() -> None:
    message = build_set_hello(3, RANDOM)[5:]  # the handshake message
    first = record(22, message[:100], 0x0301)
    second = record(22, message[100:], 0x0301)
    trailing = record(20, b"\x01", 0x0301)

    assert client_hello_bytes(first + second + trailing) == first + second
    assert client_hello_bytes(first) is None
    assert client_hello_bytes(first + record(21, b"\x02\x28")) is None


# Replayed flows and results


def test_replay_scan_attempts(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    numbers = scan_target(
        builder, [AttemptPlan(1, certificate=False), AttemptPlan(2)], name="a.test"
    )
    report = _replay(builder, tmp_path)

    assert [flow.set_number for flow in report.flows] == [1, 2]
    assert [flow.hello_format for flow in report.flows] == ["sslv2", "tls"]
    first, second = report.flows
    assert first.connection.first_number == numbers.attempts[0]["syn"]
    assert first.outcome.outcome == "alert"
    assert first.outcome.alert_name == "handshake_failure"
    assert second.outcome.outcome == "certificate"
    assert second.outcome.chain == (FLIGHT_DER,)
    assert second.stop is None
    assert report.certificates() == {FLIGHT_DER}


def test_replay_scan_result(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    scan_target(builder, [AttemptPlan(1, certificate=False), AttemptPlan(2)])
    report = _replay(builder, tmp_path)

    assert len(report.results) == 1
    result = report.results[0]
    assert (result.ip, result.port, result.state) == (TARGET, 443, "open")
    assert result.name == "www.lab.test"
    assert result.ptr == "www.lab.test"
    assert result.time == builder.packets[-1][0]
    assert result.tls is not None
    attempts = [(a.set_number, a.outcome, a.alert) for a in result.tls.attempts]
    assert attempts == [(1, "alert", "handshake_failure"), (2, "certificate", None)]
    assert [a.source_port for a in result.tls.attempts] == [50001, 50002]
    assert result.tls.set_number == 2
    assert result.tls.version == "TLSv1.2"
    assert result.tls.cipher == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert [cert.der for cert in result.tls.chain] == [FLIGHT_DER]
    # ECDHE is only known from a ServerKeyExchange, which the flight lacks.
    assert result.tls.key_exchange is None


def _attempt_with_reply(builder: CaptureBuilder, port: int, reply: bytes) -> None:
    conversation = Conversation(builder, (SCANNER, port), (TARGET, 443))
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(build_set_hello(3, RANDOM))
    if reply:
        conversation.server_data(reply)


def test_replay_stop_reasons(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    half = certificate_flight()[:300]
    _attempt_with_reply(builder, 50001, half)
    builder.tcp((TARGET, 443), (SCANNER, 50001), dpkt.tcp.TH_RST, 5001 + len(half))
    _attempt_with_reply(builder, 50002, b"")
    builder.tcp(
        (TARGET, 443), (SCANNER, 50002), dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, 5001
    )
    _attempt_with_reply(builder, 50003, b"")
    report = _replay(builder, tmp_path)

    stops = [(flow.stop, flow.outcome.outcome) for flow in report.flows]
    assert stops == [("reset", "truncated"), ("eof", "closed"), ("timeout", "timeout")]


def test_replay_foreign_hello(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    hello = record(22, handshake(1, b"\x03\x03" + RANDOM + bytes(8)), 0x0301)
    conversation = Conversation(builder, (SCANNER, 40000), (TARGET, 8443))
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(hello)
    conversation.server_data(alert_flight(70))
    report = _replay(builder, tmp_path)

    assert len(report.flows) == 1
    assert report.flows[0].set_number == FOREIGN_SET
    assert report.flows[0].outcome.alert_name == "protocol_version"
    assert report.results[0].tls is not None
    assert report.results[0].tls.attempts[0].set_number == FOREIGN_SET


def test_replay_server_without_syn(tmp_path: Path) -> None:
    # The capture starts after the handshake and the ClientHello, so only the
    # server's flight is there; the server's TLS record makes it a TLS flow.
    builder = CaptureBuilder()
    builder.tcp(
        (TARGET, 443),
        (SCANNER, 40001),
        dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
        9000,
        1,
        certificate_flight(),
    )
    report = _replay(builder, tmp_path)

    assert len(report.flows) == 1
    assert report.flows[0].hello_format == "tls"
    assert report.flows[0].set_number == FOREIGN_SET
    assert report.flows[0].outcome.chain == (FLIGHT_DER,)


def test_replay_closed_and_filtered(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    closed = Conversation(builder, (SCANNER, 61000), (TARGET, 443))
    closed.syn()
    closed.server_rst_ack()
    filtered = Conversation(builder, (SCANNER, 61001), ("198.18.0.3", 443))
    filtered.syn()
    filtered.syn()
    report = _replay(builder, tmp_path)

    assert report.flows == ()
    states = [(r.ip, r.state, r.tls) for r in report.results]
    assert states == [(TARGET, "closed", None), ("198.18.0.3", "filtered", None)]


def test_replay_http_result(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    conversation = Conversation(builder, (SCANNER, 40002), (TARGET, 80))
    conversation.syn()
    conversation.syn_ack()
    conversation.client_ack()
    conversation.client_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    conversation.server_data(b"HTTP/1.1 301 Moved\r\nServer: lab/1\r\n\r\n")
    report = _replay(builder, tmp_path)

    assert report.flows == ()
    result = report.results[0]
    assert result.state == "open"
    assert result.tls is None
    assert result.http is not None
    assert (result.http.status, result.http.server) == ("HTTP/1.1 301 Moved", "lab/1")


# The command


def _scan_file(tmp_path: Path) -> Path:
    builder = CaptureBuilder()
    scan_target(builder, [AttemptPlan(1, certificate=False), AttemptPlan(2)])
    return builder.write(tmp_path / "scan.pcap")


def test_replay_cli_text(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["replay", str(_scan_file(tmp_path))])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "set 1 (sslv2 format)  alert  alert handshake_failure" in lines[1]
    assert "set 2 (tls format)  certificate  TLSv1.2" in lines[2]
    assert lines[3].startswith("  chain of 1, leaf sha256 ")
    assert "invalid X.509 DER (900 bytes)" in lines[3]
    assert lines[-1] == (
        "result: 2 TLS flows; 1 target (1 open), 1 with a certificate; "
        "1 distinct certificate"
    )


def test_replay_cli_json_lines(tmp_path: Path) -> None:
    path = _scan_file(tmp_path)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["replay", str(path), "--out", str(out)])

    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    written = json.loads(lines[0])
    expected = replay_file(path).results[0].to_json()
    assert written == json.loads(json.dumps(expected))
    assert written["tls"]["set"] == 2


def test_replay_cli_stdout(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["replay", str(_scan_file(tmp_path)), "--out", "-"]
    )

    assert result.exit_code == 0
    assert json.loads(result.stdout.splitlines()[0])["ip"] == TARGET
    assert "result: 2 TLS flows" in result.stderr


def test_replay_cli_inventory(tmp_path: Path) -> None:
    db = tmp_path / "inventory.sqlite"
    path = _scan_file(tmp_path)
    result = CliRunner().invoke(app, ["replay", str(path), "--db", str(db)])

    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as connection:
        scans = connection.execute("SELECT arguments, counts FROM scans").fetchall()
        certificates = connection.execute("SELECT COUNT(*) FROM certificates")
        certificate_count = certificates.fetchone()[0]
    assert len(scans) == 1
    assert json.loads(scans[0][0]) == {"replay": str(path)}
    assert json.loads(scans[0][1]) == {"open": 1}
    assert certificate_count == 1


def test_replay_cli_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pcap"
    result = CliRunner().invoke(app, ["replay", str(missing)])

    assert result.exit_code == 2
    assert f"cannot read capture file {missing}" in result.output


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("127.0.0.1", "invalid server '127.0.0.1': expected HOST:PORT"),
        ("127.0.0.1:0", "invalid port '0' in '127.0.0.1:0': expected 1 to 65535"),
        ("127.0.0.1:https", "invalid port 'https'"),
        (":443", "invalid server ':443': expected HOST:PORT"),
    ],
)
def test_replay_cli_invalid_server(tmp_path: Path, server: str, message: str) -> None:
    path = _scan_file(tmp_path)
    result = CliRunner().invoke(app, ["replay", str(path), "--to", server])

    assert result.exit_code == 2
    assert message in result.output


def test_replay_cli_flow_not_found(tmp_path: Path) -> None:
    path = _scan_file(tmp_path)
    argv = ["replay", str(path), "--to", "127.0.0.1:9", "--flow", "3"]
    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 2
    assert "flow 3 not found" in result.output
    assert "has 2 TLS flows" in result.output


# Damaged input

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
MUTATIONS_PER_FILE = 40
OUTCOMES = set(get_args(Outcome))


@pytest.mark.parametrize(
    "name",
    [
        "tls12-only.pcap",
        "ssl2-only.pcap",
        "bigchain.pcap",
        "http.pcap",
    ],
)
def test_replay_mutated_captures(tmp_path: Path, name: str) -> None:
    original = (CAPTURES / name).read_bytes()
    generator = random.Random(name)
    path = tmp_path / name
    for _ in range(MUTATIONS_PER_FILE):
        data = bytearray(original)
        for _ in range(generator.randint(1, 8)):
            position = generator.randrange(24, len(data))
            data[position] = generator.randrange(256)
        cut = generator.randrange(24, len(data) + 1)
        path.write_bytes(bytes(data[:cut]))

        report = replay_file(path)
        assert report.frames >= 0
        for flow in report.flows:
            assert flow.outcome.outcome in OUTCOMES
        result = CliRunner().invoke(app, ["replay", str(path), "-o", "-"])
        assert result.exit_code in (0, 1), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def _der_with_invalid_subject() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert der.count(b"bad.test") == 1
    # 0xff never occurs in UTF-8, so the subject's UTF8String is invalid.
    return der.replace(b"bad.test", b"\xffad.test")


def test_replay_invalid_subject(tmp_path: Path) -> None:
    der = _der_with_invalid_subject()
    flight = record(22, server_hello() + certificate_message(der) + handshake(14, b""))
    builder = CaptureBuilder()
    _attempt_with_reply(builder, 50001, flight)
    report = _replay(builder, tmp_path)

    result = report.results[0]
    assert result.tls is not None
    assert result.tls.chain[0].der == der
    assert result.tls.chain[0].subject is None
    assert result.tls.chain[0].issuer == "CN=ca"
    assert (result.tls.chain[0].error or "").startswith("subject: ")
