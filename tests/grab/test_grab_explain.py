"""Tests of `pktscan grab` and its --explain transcript.

The explanation is tested on transcripts built from recorded server
flights (tests/tls/flights), cut into chunks at chosen offsets, and end to
end against the lab's ssl2-only and ssl3-intolerant servers, with the CLI
run inside the lab's scanner namespace.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner, Result

from pktscan.errors import InputError
from pktscan.grab.cli import grab, parse_host_port
from pktscan.grab.explain import (
    HINT_ABOVE_SSL3_REJECTED,
    HINT_CONNECT_FAILED,
    HINT_FALLBACK,
    HINT_SSLV2_REJECTED,
    explain_attempt,
    explain_grab,
    hint_for,
)
from pktscan.grab.kernel import grab_tls, record_from_outcome
from pktscan.grab.transcript import (
    AttemptTranscript,
    GrabTranscript,
    ReceivedChunk,
    grab_recorded,
)
from pktscan.lab import Lab
from pktscan.results import AttemptRecord, TlsResult
from pktscan.tls.client import HandshakeReader
from pktscan.tls.sets import protocol_set

FLIGHTS = Path(__file__).parent.parent / "tls" / "flights"
GRAB_ARGV = [sys.executable, "-m", "pktscan", "grab"]
CLI_TIMEOUT_S = 120


def flight(name: str) -> tuple[bytes, bytes]:
    """Return the hello and the server's reply of a recorded flight."""
    hello = (FLIGHTS / f"{name}.hello.bin").read_bytes()
    return hello, (FLIGHTS / f"{name}.bin").read_bytes()


def transcript(
    set_number: int,
    hello: bytes,
    reply: bytes,
    cuts: list[int],
    reason: str | None = None,
) -> AttemptTranscript:
    """Build the transcript of an attempt whose reply arrived cut at `cuts`."""
    chosen = protocol_set(set_number)
    bounds = [0, *cuts, len(reply)]
    chunks = tuple(
        ReceivedChunk(start, 0.001 * (i + 1), reply[start:end])
        for i, (start, end) in enumerate(itertools.pairwise(bounds))
        if end > start
    )
    reader = HandshakeReader(chosen.hello_format)
    for chunk in chunks:
        reader.feed(chunk.data)
    outcome = reader.finish(reason)  # type: ignore[arg-type]
    record = record_from_outcome(chosen, outcome, 40000)
    return AttemptTranscript(
        chosen,
        ("198.18.0.1", 40000),
        0.0001,
        None,
        hello,
        0.0002,
        chunks,
        reason,  # type: ignore[arg-type]
        0.01,
        outcome,
        record,
    )


def der_sha256(pem_name: str) -> str:
    cert = x509.load_pem_x509_certificate((FLIGHTS / pem_name).read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


# HOST:PORT parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.0.10:443", ("198.18.0.10", 443)),
        ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
        ("www.example.test:1", ("www.example.test", 1)),
    ],
)
def test_parse_host_port_valid(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("198.18.0.10", "no :PORT"),
        ("198.18.0.10:", "invalid port ''"),
        ("198.18.0.10:0", "invalid port '0'"),
        ("198.18.0.10:65536", "invalid port '65536'"),
        ("198.18.0.10:https", "invalid port 'https'"),
        (":443", "empty host"),
        ("2001:db8::1:443", "no :PORT"),
        ("[2001:db8::1]443", "no ]:PORT"),
        ("[2001:db8::1", "no ]:PORT"),
    ],
)
def test_parse_host_port_invalid(text: str, named: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_host_port(text)
    assert named in caught.value.message
    assert repr(text) in caught.value.message
    assert caught.value.hint is not None
    assert "HOST:PORT" in caught.value.hint


def test_grab_command_rejects_bad_target() -> None:
    app = typer.Typer()
    app.command()(grab)
    result = CliRunner().invoke(app, ["198.18.0.10:70000"])
    assert isinstance(result.exception, InputError)
    assert "invalid port '70000'" in result.exception.message


def test_grab_command_rejects_zero_timeout() -> None:
    app = typer.Typer()
    app.command()(grab)
    result = CliRunner().invoke(app, ["198.18.0.10:443", "--timeout", "0"])
    assert isinstance(result.exception, InputError)
    assert "invalid --timeout 0.0" in result.exception.message


# Explanations of recorded flights


def test_explain_tls12_flight_names_records() -> None:
    hello, reply = flight("openssl-tls12-ecdhe-rsa")
    attempt = transcript(3, hello, reply, [100])
    text = "\n".join(explain_attempt(attempt, "198.18.0.11", 443))

    assert "attempt 3: set 3, TLS 1.2, TLS 1.1, TLS 1.0" in text
    assert "TCP connect 198.18.0.1:40000 -> 198.18.0.11:443" in text
    assert "> ClientHello, set 3, offers TLSv1.2, TLSv1.1, TLSv1.0" in text
    assert "TLS record format; highest version: TLSv1.2" in text
    assert "< 100 bytes, offsets 000000-000063" in text
    assert "000000  record handshake, TLSv1.2, 65 bytes" in text
    assert "000005  ServerHello: TLSv1.2, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in text
    assert "continues the record that starts at 000046" in text
    assert "Certificate: 2 certificates, leaf first" in text
    assert f"SHA-256 {der_sha256('rsa-leaf.pem')}" in text
    assert f"SHA-256 {der_sha256('ca.pem')}" in text
    assert "ServerKeyExchange: kind ECDHE, group x25519" in text
    assert "ServerHelloDone" in text
    assert "> RST: close() with SO_LINGER 0" in text
    assert "outcome: certificate (TLSv1.2, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)" in (
        text
    )
    assert "hint:" not in text


def test_explain_events_in_offset_order() -> None:
    hello, reply = flight("openssl-tls12-ecdhe-rsa")
    lines = explain_attempt(transcript(3, hello, reply, []), "198.18.0.11", 443)
    offsets = [
        int(match.group(1), 16)
        for line in lines
        if (match := re.match(r"\s+([0-9a-f]{6})  ", line))
    ]
    assert offsets == sorted(offsets)
    assert len(offsets) == 8  # four records, four messages


def test_explain_sslv2_server_hello() -> None:
    hello, reply = flight("scapy-sslv2")
    attempt = transcript(1, hello, reply, [1, 5])
    text = "\n".join(explain_attempt(attempt, "198.18.0.14", 443))

    assert "SSLv2-compatible format; highest version offered: TLSv1.0" in text
    assert "< 1 bytes, offsets 000000-000000" in text
    assert "SSL 2.0 record, 2-byte header" in text
    assert (
        "SSL 2.0 SERVER-HELLO: version SSLv2, certificate_type SSL_CT_X509_CERTIFICATE"
        in (text)
    )
    assert f"SHA-256 {der_sha256('rsa-leaf.pem')}" in text
    assert "outcome: certificate (SSLv2" in text


def test_explain_non_tls_shows_hex_and_ascii() -> None:
    hello, _ = flight("openssl-tls12-ecdhe-rsa")
    reply = b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n"
    attempt = transcript(3, hello, reply, [], reason="eof")
    text = "\n".join(explain_attempt(attempt, "198.18.0.19", 80))

    assert "not TLS or SSL 2.0; the reply starts:" in text
    assert (
        "0000  48 54 54 50 2f 31 2e 31 20 34 30 30 20 42 61 64  |HTTP/1.1 400 Bad|"
        in (text)
    )
    assert "outcome: non_tls" in text
    assert "> RST after the server's FIN" in text


def test_explain_reply_after_done_not_read() -> None:
    hello, reply = flight("openssl-tls13-only-alert")
    attempt = transcript(3, hello, reply + b"\x15\x03\x03", [len(reply)])
    text = "\n".join(explain_attempt(attempt, "198.18.0.12", 443))
    assert "Alert: fatal protocol_version (70)" in text
    assert "not read: the reader was already done" in text


def test_explain_grab_summary_and_ipv6() -> None:
    hello, reply = flight("openssl-tls13-only-alert")
    attempt = transcript(3, hello, reply, [])
    result = TlsResult(attempts=[attempt.record])
    grab_transcript = GrabTranscript("2001:db8::1", 443, None, 5.0, (attempt,), result)
    text = explain_grab(grab_transcript)

    assert text.startswith("grab [2001:db8::1]:443, SNI none, timeout 5 s per attempt")
    assert "-> [2001:db8::1]:443: SYN, SYN/ACK, ACK" in text
    assert "outcome: alert (protocol_version)" in text
    assert text.endswith("result: no certificate after 1 attempt\n")


def test_transcript_json_keeps_bytes() -> None:
    hello, reply = flight("openssl-tls10-set2")
    attempt = transcript(2, hello, reply, [10])
    document = attempt.to_json()

    assert document["set"] == 2
    assert bytes.fromhex(document["hello"]) == hello
    assert [c["offset"] for c in document["chunks"]] == [0, 10]
    joined = "".join(c["hex"] for c in document["chunks"])
    assert bytes.fromhex(joined) == reply
    assert document["outcome"]["outcome"] == "certificate"
    assert json.loads(json.dumps(document)) == document


def test_connect_failure_explained() -> None:
    chosen = protocol_set(1)
    record = AttemptRecord(1, "connect_failed", detail="Connection refused")
    attempt = AttemptTranscript(
        chosen,
        None,
        None,
        "Connection refused",
        b"",
        None,
        (),
        None,
        None,
        None,
        record,
    )
    lines = explain_attempt(attempt, "127.0.0.1", 9)
    assert "TCP connect to 127.0.0.1:9 failed: Connection refused" in lines[1]
    assert lines[-2:] == [
        "  outcome: connect_failed",
        f"  hint: {HINT_CONNECT_FAILED}",
    ]
    assert hint_for(attempt) == HINT_CONNECT_FAILED


def test_explain_marks_records_after_done() -> None:
    hello, reply = flight("openssl-client-cert-request")
    text = "\n".join(explain_attempt(transcript(3, hello, reply, []), "::1", 443))
    alert_offset = len(reply) - 7
    assert "CertificateRequest: the server asks for a client certificate" in text
    assert "ServerHelloDone: the server's flight is complete" in text
    assert (
        f"{alert_offset:06x}  record alert, TLSv1.2, 2 bytes; not read: the reader "
        "was already done"
    ) in text
    assert "Alert:" not in text
    assert "record handshake, TLSv1.2, 4 bytes\n" in text + "\n"


# Hints


def test_hint_reset_after_sslv2_hello() -> None:
    hello, _ = flight("scapy-sslv2")
    attempt = transcript(1, hello, b"", [], reason="reset")
    assert attempt.record.outcome == "reset"
    assert hint_for(attempt) == HINT_SSLV2_REJECTED


def test_hint_reset_after_versions_above_ssl3() -> None:
    hello, _ = flight("openssl-tls12-ecdhe-rsa")
    for set_number in (2, 3):
        attempt = transcript(set_number, hello, b"", [], reason="reset")
        assert hint_for(attempt) == HINT_ABOVE_SSL3_REJECTED


def test_no_hint_reset_after_ssl3_only_hello() -> None:
    hello, _ = flight("tlslite-ssl3")
    attempt = transcript(4, hello, b"", [], reason="reset")
    assert hint_for(attempt) is None


def test_hint_protocol_version_alert() -> None:
    hello, reply = flight("openssl-tls13-only-alert")
    attempt = transcript(3, hello, reply, [])
    hint = hint_for(attempt)
    assert hint is not None
    assert hint.startswith("protocol_version: the server supports none of")
    assert "(TLSv1.2, TLSv1.1, TLSv1.0)" in hint


@pytest.mark.parametrize(
    ("description", "expected"),
    [(86, HINT_FALLBACK), (40, "handshake_failure: usually no common cipher suite")],
)
def test_hint_fatal_alerts(description: int, expected: str) -> None:
    hello, _ = flight("openssl-tls10-set2")
    alert = bytes([21, 3, 1, 0, 2, 2, description])
    hint = hint_for(transcript(2, hello, alert, []))
    assert hint is not None
    assert hint.startswith(expected)


def test_no_hint_after_certificate() -> None:
    hello, reply = flight("openssl-tls10-set2")
    assert hint_for(transcript(2, hello, reply, [])) is None


# The CLI against a loopback server


def _load_recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "record_flights", FLIGHTS / "record_flights.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tls12_only_server(connections: int, args: list[str]) -> Result:
    """Run `grab 127.0.0.1:PORT ARGS` against an openssl server of TLS 1.2 only."""
    recorder = _load_recorder()
    port = recorder._free_port()
    command = recorder.openssl(port, "rsa", "-cipher", "DEFAULT:@SECLEVEL=0", "-tls1_2")
    command[command.index("-naccept") + 1] = str(connections)
    app = typer.Typer()
    app.command()(grab)
    with recorder.running(command, port):
        return CliRunner().invoke(app, [f"127.0.0.1:{port}", *args])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_grab_cli_tls12_only_loopback() -> None:
    result = run_tls12_only_server(3, ["--explain"])
    assert result.exit_code == 0, result.output
    blocks = attempt_blocks(result.output)

    assert list(blocks) == [1, 2, 3]
    for set_number in (1, 2):
        assert "Alert: fatal protocol_version (70)" in blocks[set_number]
        assert "outcome: alert (protocol_version)" in blocks[set_number]
        assert "hint: protocol_version: the server supports none" in blocks[set_number]
    assert "> RST: close() with SO_LINGER 0" in blocks[1]
    assert "ServerHello: TLSv1.2" in blocks[3]
    assert der_sha256("rsa-leaf.pem") in blocks[3]
    assert "result: certificate from set 3, TLSv1.2" in result.output


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_grab_cli_explain_json_loopback() -> None:
    result = run_tls12_only_server(1, ["--explain", "--json", "--set", "1"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.output)

    assert document["ip"] == "127.0.0.1"
    assert document["tls"]["set"] is None
    (attempt,) = document["transcript"]
    assert attempt["set"] == 1
    assert attempt["outcome"]["alert"] == "protocol_version"
    assert attempt["hint"].startswith("protocol_version: the server supports none")
    received = bytes.fromhex("".join(chunk["hex"] for chunk in attempt["chunks"]))
    assert received == bytes.fromhex("15 0301 0002 02 46")
    first_field = attempt["hello_fields"][0]
    assert first_field["field"] == "record header"
    assert first_field["offset"] == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_recorded_ladder_matches_grab_tls() -> None:
    recorder = _load_recorder()
    port = recorder._free_port()
    command = recorder.openssl(port, "rsa", "-cipher", "DEFAULT:@SECLEVEL=0", "-tls1_2")
    command[command.index("-naccept") + 1] = "6"

    async def both() -> tuple[TlsResult, TlsResult]:
        plain = await grab_tls("127.0.0.1", port, timeout=5.0)
        recorded = await grab_recorded("127.0.0.1", port, timeout=5.0)
        return plain, recorded.result

    with recorder.running(command, port):
        plain, recorded = asyncio.run(both())
    plain_json, recorded_json = plain.to_json(), recorded.to_json()
    for document in (plain_json, recorded_json):
        for attempt in document["attempts"]:
            attempt["source_port"] = None
    assert recorded_json == plain_json
    assert [a["outcome"] for a in plain_json["attempts"]] == [
        "alert",
        "alert",
        "certificate",
    ]


# The CLI against the lab


def run_grab(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = lab.exec_argv([*GRAB_ARGV, *args])
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )


def attempt_blocks(text: str) -> dict[int, str]:
    """Split an explanation into its attempts, keyed by set number."""
    blocks = re.split(r"\n(?=attempt \d)", text)
    return {
        int(block.split()[1].rstrip(":")): block
        for block in blocks
        if block.startswith("attempt ")
    }


@pytest.mark.lab
def test_grab_explain_ssl2_only(lab: Lab) -> None:
    server = lab.server("ssl2-only")
    completed = run_grab(lab, f"{server['address']}:443", "--explain", "--timeout", "5")
    assert completed.returncode == 0, completed.stderr
    blocks = attempt_blocks(completed.stdout)

    assert list(blocks) == [1]
    block = blocks[1]
    assert "> ClientHello, set 1, offers TLSv1.0, SSLv3, SSLv2" in block
    assert "SSL 2.0 SERVER-HELLO: version SSLv2" in block
    assert f"SHA-256 {server['leaf_sha256']}" in block
    assert "outcome: certificate (SSLv2" in block
    assert "> RST: close() with SO_LINGER 0" in block
    assert "hint:" not in block
    assert "result: certificate from set 1, SSLv2" in completed.stdout


@pytest.mark.lab
def test_grab_explain_ssl3_intolerant(lab: Lab) -> None:
    server = lab.server("ssl3-intolerant")
    completed = run_grab(lab, f"{server['address']}:443", "--explain", "--timeout", "5")
    assert completed.returncode == 0, completed.stderr
    blocks = attempt_blocks(completed.stdout)

    assert list(blocks) == [1, 2, 3, 4]
    for set_number in (1, 2, 3):
        assert "outcome: reset" in blocks[set_number]
        assert "the server reset the connection" in blocks[set_number]
    assert f"hint: {HINT_SSLV2_REJECTED}" in blocks[1]
    assert f"hint: {HINT_ABOVE_SSL3_REJECTED}" in blocks[2]
    assert f"hint: {HINT_ABOVE_SSL3_REJECTED}" in blocks[3]
    assert "ServerHello: SSLv3" in blocks[4]
    assert f"SHA-256 {server['leaf_sha256']}" in blocks[4]
    assert "outcome: certificate (SSLv3" in blocks[4]
    assert "hint:" not in blocks[4]
    assert "result: certificate from set 4, SSLv3" in completed.stdout


@pytest.mark.lab
def test_grab_json_by_name(lab: Lab) -> None:
    server = lab.server("ssl3-intolerant")
    completed = run_grab(lab, f"{server['hostname']}:443", "--json", "--set", "4")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)

    assert document["ip"] == server["address"]
    assert document["name"] == server["hostname"]
    assert [a["set"] for a in document["tls"]["attempts"]] == [4]
    assert document["tls"]["version"] == "SSLv3"
    assert document["tls"]["chain"][0]["sha256"] == server["leaf_sha256"]


@pytest.mark.lab
def test_grab_no_certificate_exit_code(lab: Lab) -> None:
    server = lab.server("ssl3-intolerant")
    completed = run_grab(lab, f"{server['address']}:443", "--set", "2")
    assert completed.returncode == 1, completed.stderr
    assert "set 2: reset" in completed.stdout
    assert "result: no certificate after 1 attempt" in completed.stdout
