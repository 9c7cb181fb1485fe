"""The discovery scan end to end against the lab's real servers.

One scan of the whole lab runs per test module, from inside the lab's
scanner namespace, as a user runs it; the tests read what it wrote.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

pytestmark = pytest.mark.lab


@dataclass
class ScanRun:
    manifest: dict[str, Any]
    results: dict[tuple[str, int], dict[str, Any]]
    folder: Path
    process: subprocess.CompletedProcess[str]


def _servers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {server["name"]: server for server in manifest["servers"]}


@pytest.fixture(scope="module")
def scan_run(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> ScanRun:
    folder = tmp_path_factory.mktemp("scan")
    manifest = lab.manifest
    argv = [
        sys.executable, "-m", "pktscan", "scan",
        f"@{manifest['targets_file']}",
        "-p", manifest["ports"],
        "--out", str(folder / "results.jsonl"),
        "--db", str(folder / "inventory.sqlite"),
        "--pcap", str(folder / "scan.pcap"),
        "--rate", "2000", "--timeout", "3", "--quiet",
    ]  # fmt: skip
    process = subprocess.run(
        lab.exec_argv(argv), capture_output=True, text=True, timeout=600, check=False
    )
    results = {}
    output = folder / "results.jsonl"
    if output.exists():
        for line in output.read_text().splitlines():
            record = json.loads(line)
            results[(record["ip"], record["port"])] = record
    return ScanRun(manifest, results, folder, process)


def _leaf_sha256(cert_file: str) -> str:
    certificate = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def test_scan_exits_zero(scan_run: ScanRun) -> None:
    assert scan_run.process.returncode == 0, scan_run.process.stderr


def test_every_lab_port_has_a_result(scan_run: ScanRun) -> None:
    for server in scan_run.manifest["servers"]:
        assert (server["address"], server["port"]) in scan_run.results, server["name"]


def test_port_states_match_the_lab(scan_run: ScanRun) -> None:
    for server in scan_run.manifest["servers"]:
        record = scan_run.results[(server["address"], server["port"])]
        assert record["state"] == server["expected_state"], server["name"]


@pytest.mark.parametrize(
    ("name", "expected_set", "expected_version"),
    [
        ("tls10-12", 1, "TLSv1.0"),
        ("ssl3-only", 1, "SSLv3"),
        ("ssl2-only", 1, "SSLv2"),
        ("tls10-no-ext", 1, "TLSv1.0"),
        ("bigchain", 1, "TLSv1.0"),
        ("tls10-no-v2hello", 2, "TLSv1.0"),
        ("tls12-only", 3, "TLSv1.2"),
        ("ssl3-intolerant", 4, "SSLv3"),
    ],
)
def test_certificate_set_version_and_fingerprint(
    scan_run: ScanRun, name: str, expected_set: int, expected_version: str
) -> None:
    server = _servers(scan_run.manifest)[name]
    tls = scan_run.results[(server["address"], server["port"])]["tls"]
    assert tls["set"] == expected_set
    assert tls["version"] == expected_version
    assert tls["chain"][0]["sha256"] == _leaf_sha256(server["cert_file"])
    assert [a["set"] for a in tls["attempts"]] == list(range(1, expected_set + 1))
    assert tls["attempts"][-1]["outcome"] == "certificate"


def test_bigchain_keeps_the_whole_chain(scan_run: ScanRun) -> None:
    server = _servers(scan_run.manifest)["bigchain"]
    tls = scan_run.results[(server["address"], server["port"])]["tls"]
    expected = [_leaf_sha256(path) for path in server["chain_files"]]
    assert [cert["sha256"] for cert in tls["chain"]] == expected


def test_tls13_only_server_has_no_certificate_yet(scan_run: ScanRun) -> None:
    server = _servers(scan_run.manifest)["tls13-only"]
    tls = scan_run.results[(server["address"], server["port"])]["tls"]
    assert tls["chain"] == []
    assert [a["set"] for a in tls["attempts"]] == [1, 2, 3, 4]
    assert all(a["outcome"] != "certificate" for a in tls["attempts"])


def test_names_and_ptr_come_from_the_lab_dns(scan_run: ScanRun) -> None:
    server = _servers(scan_run.manifest)["tls12-only"]
    record = scan_run.results[(server["address"], server["port"])]
    assert record["name"] == server["hostname"]
    assert record["ptr"] == server["hostname"]


def test_http_server_header(scan_run: ScanRun) -> None:
    server = _servers(scan_run.manifest)["http"]
    record = scan_run.results[(server["address"], 80)]
    assert record["http"]["status"].startswith("HTTP/1.1 ")
    assert record["http"]["server"].startswith("nginx")


def test_inventory_holds_the_leaf_certificates(scan_run: ScanRun) -> None:
    with sqlite3.connect(scan_run.folder / "inventory.sqlite") as db:
        stored = {row[0] for row in db.execute("SELECT sha256 FROM certificates")}
    for name in ("tls10-12", "ssl2-only", "tls12-only", "ssl3-intolerant"):
        server = _servers(scan_run.manifest)[name]
        assert _leaf_sha256(server["cert_file"]) in stored, name


def test_capture_follows_the_documented_sequence(scan_run: ScanRun) -> None:
    verify = subprocess.run(
        [sys.executable, "-m", "pktscan", "capture", "verify", "--json",
         str(scan_run.folder / "scan.pcap")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]
