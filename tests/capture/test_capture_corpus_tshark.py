"""Run third-party captures through verify, replay and show; compare with tshark.

The environment variable PKTSCAN_CORPUS names the folder (default
shared/corpus/pcaps beside the repository), and the tests are skipped when
it does not exist. Every file must pass the three commands without an escaped
exception, and the certificates that replay recovers must equal the ones
tshark extracts from the same file.

tshark runs with two choices that match what replay does:

- `tcp.reassemble_out_of_order:TRUE`, because replay places segments by
  sequence number whatever their order, while tshark 4.0 leaves segments
  that arrive after a gap out of its reassembly by default;
- only certificates sent by a connection's server are counted, because
  replay recovers what a scan records: the server's chain. A client's
  certificate (mutual authentication) is not part of it.

Files where the two still differ are listed in `KNOWN_DIFFERENCES` with
the reason, and the test asserts the exact difference.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pktscan.capture.cli import app
from pktscan.capture.flows import flows_from_file
from pktscan.capture.replay import replay_flows

# Default: the shared folder beside the repository, as scripts/test sets it.
DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pcaps"
CORPUS = Path(os.environ.get("PKTSCAN_CORPUS", str(DEFAULT_CORPUS)))
FILES = (
    sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix != ".md")
    if CORPUS.is_dir()
    else []
)
TSHARK_SECONDS = 120

pytestmark = pytest.mark.skipif(not FILES, reason=f"no corpus at {CORPUS}")

# File name -> (SHA-256 prefixes only tshark finds, only replay finds, reason).
KNOWN_DIFFERENCES: dict[str, tuple[frozenset[str], frozenset[str], str]] = {
    "suricata-verify_bug-1450-04_tls_DER-incomplete-header.pcap": (
        # tshark 4.0.17 shows "Certificate: 30053084ffffff" and then
        # "[Malformed Packet: TLS]" for packet 6.
        frozenset({"26bd8df98cae"}),
        frozenset({"a8b66060986b"}),
        "Packet 6 carries ServerHello, a 15-byte Certificate message whose one "
        "entry is 9 bytes of broken DER (30 05 30 84 ff ff ff ...), then a "
        "handshake header with length 0xffffff. tshark outputs only the first 7 "
        "bytes of that entry and marks the packet malformed; replay keeps the "
        "whole 9-byte entry, as sent, and stores it raw with its decoding error.",
    ),
}


def _server_endpoints(path: Path) -> set[tuple[str, int]]:
    return {connection.server for connection in flows_from_file(path).connections}


def _tshark_server_certificates(path: Path) -> tuple[set[str], set[str]]:
    """Return SHA-256 prefixes of (server, client) certificates tshark extracts."""
    output = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-o",
            "tcp.reassemble_out_of_order:TRUE",
            "-Y",
            "tls.handshake.certificate",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
            "-e",
            "tls.handshake.certificate",
        ],
        capture_output=True,
        text=True,
        timeout=TSHARK_SECONDS,
        check=False,
    ).stdout
    servers = _server_endpoints(path)
    from_server: set[str] = set()
    from_client: set[str] = set()
    for line in output.splitlines():
        ipv4, ipv6, port, certificates = line.split("|")
        addresses = [*ipv4.split(","), *ipv6.split(",")]
        sent_by_server = any((a, int(port)) in servers for a in addresses if a)
        target = from_server if sent_by_server else from_client
        for value in certificates.split(","):
            if value:
                target.add(hashlib.sha256(bytes.fromhex(value)).hexdigest()[:12])
    return from_server, from_client


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_commands_complete(path: Path) -> None:
    runner = CliRunner()

    verified = runner.invoke(app, ["verify", str(path), "--profile", "any"])
    assert verified.exit_code in (0, 1), verified.output
    replayed = runner.invoke(app, ["replay", str(path)])
    assert replayed.exit_code in (0, 1), replayed.output
    assert "result: " in replayed.output
    shown = runner.invoke(app, ["show", str(path), "--limit", "5"])
    assert shown.exit_code == 0, shown.output
    for result in (verified, replayed, shown):
        assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_certificates_match_tshark(path: Path) -> None:
    report = replay_flows(flows_from_file(path), str(path))
    ours = {hashlib.sha256(der).hexdigest()[:12] for der in report.certificates()}
    theirs, _ = _tshark_server_certificates(path)

    only_tshark, only_ours, _reason = KNOWN_DIFFERENCES.get(
        path.name, (frozenset(), frozenset(), "")
    )
    assert theirs - ours == only_tshark
    assert ours - theirs == only_ours


def _corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{name} is not in the corpus")
    return path


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_corpus_client_certificate_left_out() -> None:
    # The client sends its own certificate in packet 9, after the server's
    # in packet 7. Replay keeps only the server's.
    path = _corpus_file("arkime_ssl-selfsign.pcap")
    report = replay_flows(flows_from_file(path), str(path))
    ours = {hashlib.sha256(der).hexdigest()[:12] for der in report.certificates()}
    from_server, from_client = _tshark_server_certificates(path)

    assert ours == from_server
    assert len(from_server) == 1
    assert len(from_client) == 1
    assert not ours & from_client


def test_corpus_out_of_order_certificate() -> None:
    # The server's first segment is lost and retransmitted after later ones;
    # tshark 4.0 finds the chain only with tcp.reassemble_out_of_order on.
    path = _corpus_file("nDPI_google_ssl.pcap")
    report = replay_flows(flows_from_file(path), str(path))

    assert len(report.flows) == 1
    flow = report.flows[0]
    assert flow.hello_format == "sslv2"
    assert flow.outcome.outcome == "certificate"
    assert flow.outcome.version_name == "TLSv1.0"
    assert flow.outcome.cipher_name == "TLS_RSA_WITH_RC4_128_SHA"
    assert len(flow.outcome.chain) == 3
