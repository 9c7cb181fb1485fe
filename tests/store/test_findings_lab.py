"""Findings of real lab scans: one server per finding kind, then a rescan.

The module brings up a lab of its own, because it replaces one server's
certificate and stops another, which would break the session lab for other
tests. The first scan covers every server by address, so the name check
falls back to each address's PTR name. Between the scans the tls10-12 server
gets a new certificate and the tls12-only server stops.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pktscan.errors import InputError, LabError
from pktscan.lab import Lab
from pktscan.lab.plan import SERVERS
from pktscan.store import query
from pktscan.store.query import Filters, FindingRow
from pktscan.store.sqlite import Inventory

pytestmark = pytest.mark.lab

CHANGED_SERVER = "tls10-12"
STOPPED_SERVER = "tls12-only"
SSL_SERVERS = ("ssl3-only", "ssl2-only", "ssl3-intolerant")


@dataclass
class LabScans:
    """Two scans of one lab into one inventory."""

    manifest: dict[str, Any]
    db: Path
    old_leaf: str
    new_leaf: str
    processes: list[subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def findings_lab() -> Iterator[Lab]:
    # The name is unique to the run, like the session lab's.
    lab = Lab(f"pkt-inv-{secrets.token_hex(4)}")
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def run_scan(lab: Lab, db: Path, output: Path) -> subprocess.CompletedProcess[str]:
    manifest = lab.manifest
    addresses = [server["address"] for server in manifest["servers"]]
    argv = [
        sys.executable, "-m", "pktscan", "scan", *addresses,
        "-p", manifest["ports"],
        "--out", str(output),
        "--db", str(db),
        "--rate", "2000", "--timeout", "3", "--quiet",
    ]  # fmt: skip
    return subprocess.run(
        lab.exec_argv(argv), capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def lab_scans(findings_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> LabScans:
    folder = tmp_path_factory.mktemp("findings-lab")
    db = folder / "inventory.sqlite"
    old_leaf = findings_lab.server(CHANGED_SERVER)["leaf_sha256"]
    first = run_scan(findings_lab, db, folder / "first.jsonl")
    new_leaf = findings_lab.replace_certificate(CHANGED_SERVER)
    findings_lab.stop_server(STOPPED_SERVER)
    second = run_scan(findings_lab, db, folder / "second.jsonl")
    return LabScans(findings_lab.manifest, db, old_leaf, new_leaf, [first, second])


def scan_findings(db: Path, scan: int) -> list[FindingRow]:
    with Inventory.open(db, background_flush=False) as inventory:
        return query.findings(inventory.connection, Filters(scan=scan))


def kinds_by_address(rows: list[FindingRow]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row.address, set()).add(row.kind)
    return found


def server_entry(lab_scans: LabScans, name: str) -> dict[str, Any]:
    return next(
        server for server in lab_scans.manifest["servers"] if server["name"] == name
    )


def test_scans_exit_zero(lab_scans: LabScans) -> None:
    for process in lab_scans.processes:
        assert process.returncode == 0, process.stderr


def test_each_finding_server_triggers_its_kind(lab_scans: LabScans) -> None:
    found = kinds_by_address(scan_findings(lab_scans.db, 1))

    finding_servers = [spec for spec in SERVERS if spec.expected_findings]
    assert len(finding_servers) == 10
    for spec in finding_servers:
        for kind in spec.expected_findings:
            assert kind in found.get(spec.address, set()), spec.name


def test_ssl_servers_report_ssl_only(lab_scans: LabScans) -> None:
    found = kinds_by_address(scan_findings(lab_scans.db, 1))

    for spec in SERVERS:
        reported = "ssl_only" in found.get(spec.address, set())
        assert reported == (spec.name in SSL_SERVERS), spec.name


def test_dh_prime_size_in_message(lab_scans: LabScans) -> None:
    rows = scan_findings(lab_scans.db, 1)

    messages = [row.message for row in rows if row.kind == "weak_dh"]
    assert messages == ["DHE with a 1024-bit prime, under 2048"]


def test_name_checked_against_ptr(lab_scans: LabScans) -> None:
    rows = scan_findings(lab_scans.db, 1)

    mismatches = [row for row in rows if row.kind == "name_mismatch"]
    assert [row.address for row in mismatches] == ["198.18.0.46"]
    assert mismatches[0].message == (
        "not valid for PTR name wrong-name.lab.pktscan.test:"
        " certificate names DNS:elsewhere.pktscan.test"
    )


def test_sound_server_has_no_defect_findings(lab_scans: LabScans) -> None:
    found = kinds_by_address(scan_findings(lab_scans.db, 1))

    # The lab sends each plain leaf without its root, which check_chain
    # reports as incomplete, so that kind is allowed here.
    assert found.get("198.18.0.10", set()) <= {"chain_incomplete"}


def test_replaced_certificate_served(lab_scans: LabScans) -> None:
    entry = server_entry(lab_scans, CHANGED_SERVER)

    assert lab_scans.new_leaf != lab_scans.old_leaf
    assert entry["leaf_sha256"] == lab_scans.new_leaf


def test_inventory_diff_shows_change(lab_scans: LabScans) -> None:
    argv = [
        sys.executable, "-m", "pktscan", "inventory", "diff", "1", "2",
        "--db", str(lab_scans.db), "--json",
    ]  # fmt: skip
    process = subprocess.run(argv, capture_output=True, text=True, check=False)

    assert process.returncode == 0, process.stderr
    changes = json.loads(process.stdout)
    assert {
        "address": "198.18.0.10",
        "port": 443,
        "change": "changed",
        "before": lab_scans.old_leaf,
        "after": lab_scans.new_leaf,
    } in changes
    assert {
        "address": "198.18.0.11",
        "port": 443,
        "change": "removed",
        "before": server_entry(lab_scans, STOPPED_SERVER)["leaf_sha256"],
        "after": None,
    } in changes
    assert len(changes) == 2


def test_rescan_reports_changed_and_gone(lab_scans: LabScans) -> None:
    rows = scan_findings(lab_scans.db, 2)

    changed = [row for row in rows if row.kind == "certificate_changed"]
    gone = [row for row in rows if row.kind == "endpoint_gone"]
    assert [(row.address, row.sha256) for row in changed] == [
        ("198.18.0.10", lab_scans.new_leaf)
    ]
    assert changed[0].message.endswith(f"was {lab_scans.old_leaf[:16]}...")
    assert [row.address for row in gone] == ["198.18.0.11"]
    assert gone[0].message.startswith("no certificate (port closed)")


def test_report_shows_change(lab_scans: LabScans, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    argv = [
        sys.executable, "-c",
        "import typer; from pktscan.report.cli import report; typer.run(report)",
        "--html", str(page), "--db", str(lab_scans.db),
    ]  # fmt: skip
    process = subprocess.run(argv, capture_output=True, text=True, check=False)

    assert process.returncode == 0, process.stderr
    html = page.read_text()
    assert 'data-metric="changes"><span class="value">2</span>' in html
    changed_row = (
        '<td class="mono">198.18.0.10:443</td><td>changed</td>'
        f'<td class="mono">{lab_scans.old_leaf[:16]}</td>'
        f'<td class="mono">{lab_scans.new_leaf[:16]}</td>'
    )
    assert changed_row in html
    assert '<td class="mono">198.18.0.11:443</td><td>removed</td>' in html


def test_replace_rejects_server_without_certificate(findings_lab: Lab) -> None:
    with pytest.raises(LabError, match="lab server 'http' serves no certificate"):
        findings_lab.replace_certificate("http")


def test_stop_rejects_unknown_server(findings_lab: Lab) -> None:
    with pytest.raises(InputError, match="unknown lab server 'nosuch'"):
        findings_lab.stop_server("nosuch")
