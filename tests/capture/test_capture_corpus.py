"""Run third-party captures through the reader, flows, verify and show.

The files stay where they are: the environment variable PKTSCAN_CORPUS
names the folder, and the tests are skipped when it does not exist. Each
file must pass every stage without an escaped exception; a few carry known
facts (damage position, link type, certificate packet) asserted exactly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pktscan.capture.checker import check_flows
from pktscan.capture.cli import app
from pktscan.capture.flows import ConnectionKind, flows_from_file
from pktscan.capture.ladder import render_ladder, render_svg
from pktscan.capture.reader import read_capture
from pktscan.capture.sequence import Profile

# Default: the shared folder beside the repository, as scripts/test sets it.
DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pcaps"
CORPUS = Path(os.environ.get("PKTSCAN_CORPUS", str(DEFAULT_CORPUS)))
FILES = (
    sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix != ".md")
    if CORPUS.is_dir()
    else []
)

pytestmark = pytest.mark.skipif(not FILES, reason=f"no corpus at {CORPUS}")


def _corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{name} is not in the corpus")
    return path


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_every_stage(path: Path) -> None:
    flows = flows_from_file(path)
    report = check_flows(flows, Profile.ANY, str(path))
    start = flows.start_time or 0.0
    for connection in flows.connections[:20]:
        assert render_ladder(connection, start)
    assert render_svg(list(flows.connections[:5]), start).startswith("<svg")

    assert flows.frames > 0
    assert report.frames == flows.frames
    result = CliRunner().invoke(app, ["verify", str(path), "--profile", "any"])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    shown = CliRunner().invoke(app, ["show", str(path), "--limit", "3"])
    assert shown.exit_code == 0, shown.output


def _tshark_tcp_conversations(path: Path) -> int:
    output = subprocess.run(
        ["tshark", "-r", str(path), "-q", "-z", "conv,tcp"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return sum(1 for line in output.splitlines() if re.search(r"<->", line))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
@pytest.mark.parametrize(
    "name",
    [
        "zeek_ssl.v3.pcap",
        "zeek_missing-intermediate.pcap",
        "nDPI_synscan.pcap",
        "nDPI_tcp_scan.pcapng",
        "arkime_pppoe.pcap",
        "nDPI_tls_alert.pcap",
    ],
)
def test_corpus_matches_tshark(name: str) -> None:
    path = _corpus_file(name)
    flows = flows_from_file(path)
    assert len(flows.connections) == _tshark_tcp_conversations(path)


def test_corpus_damaged_file() -> None:
    path = _corpus_file("suricata-verify_bug-1450-04_tls_DER-incomplete-header.pcap")
    with read_capture(path) as reader:
        frames = list(reader)
        damage = reader.damage
    assert len(frames) == 6
    assert damage is not None
    assert (damage.number, damage.offset) == (7, 5035)
    assert "4325376" in damage.reason
    result = CliRunner().invoke(app, ["verify", str(path), "--profile", "any"])
    assert result.exit_code == 1
    assert "packet 7 at byte offset 5035" in result.output


def test_corpus_format_by_magic() -> None:
    named_pcap = _corpus_file("nDPI_tls_alert.pcap")
    named_pcapng = _corpus_file("nDPI_tcp_scan.pcapng")
    with read_capture(named_pcap) as reader:
        assert reader.format == "pcapng"
    with read_capture(named_pcapng) as reader:
        assert reader.format == "pcap"


def test_corpus_null_link_type() -> None:
    flows = flows_from_file(_corpus_file("arkime_ssl-selfsign.pcap"))
    report = check_flows(flows, Profile.ANY)
    assert len(flows.connections) == 1
    assert report.targets[0].target.endswith(":4443")
    assert report.targets[0].attempts[0].certificate


def test_corpus_sslv2_server_hello() -> None:
    flows = flows_from_file(_corpus_file("zeek_ssl-v2.pcap"))
    attempt = check_flows(flows, Profile.ANY).targets[0].attempts[0]
    assert attempt.hello == "ClientHello (SSLv2 format, no protocol set)"
    assert attempt.certificate_number == 6


def test_corpus_fragmented_certificate() -> None:
    flows = flows_from_file(_corpus_file("zeek_tls-fragmented-handshake.pcap"))
    connection = flows.connections[0]
    attempt = check_flows(flows, Profile.ANY).targets[0].attempts[0]
    assert connection.server_stream.gaps == ()
    assert attempt.certificate
    assert len(connection.server_stream.data) > 327874


def test_corpus_synscan_kinds() -> None:
    flows = flows_from_file(_corpus_file("nDPI_synscan.pcap"))
    kinds = [connection.kind for connection in flows.connections]
    assert kinds.count(ConnectionKind.PROBE) == 3
    assert kinds.count(ConnectionKind.CLOSED) == 5
    assert kinds.count(ConnectionKind.UNANSWERED) == 1986
