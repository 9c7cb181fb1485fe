"""Tests of the ``pktscan inventory`` commands on a real inventory file."""

from __future__ import annotations

import csv
import io
import json
import ssl
from pathlib import Path

import pytest
from store_helpers import T0, closed_result, hours, tls_result
from typer.testing import CliRunner

from pktscan.results import CertInfo
from pktscan.store.cli import app
from pktscan.store.sqlite import Inventory

runner = CliRunner()


@pytest.fixture
def db(
    tmp_path: Path,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> Path:
    path = tmp_path / "inventory.sqlite"
    with Inventory.open(path) as inventory:
        first = inventory.begin_scan({"n": 1})
        inventory.add_result(first, tls_result("198.18.0.2", 443, chain_a, T0))
        inventory.add_result(first, tls_result("198.18.0.10", 443, chain_b, T0))
        inventory.finish_scan(first, {"open": 2})
        second = inventory.begin_scan({"n": 2})
        later = T0 + hours(1)
        inventory.add_result(second, tls_result("198.18.0.2", 443, chain_b, later))
        inventory.add_result(second, closed_result("198.18.0.10", 443, later))
        old = tls_result("198.18.1.5", 8443, expired_chain, later, name="old.example")
        inventory.add_result(second, old)
        inventory.finish_scan(second, {"open": 2, "closed": 1})
    return path


def run_json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_json(db: Path, chain_b: list[CertInfo]) -> None:
    rows = run_json("list", "--db", str(db))

    assert isinstance(rows, list)
    assert [(row["address"], row["port"], row["scan"]) for row in rows] == [
        ("198.18.0.2", 443, 2),
        ("198.18.0.10", 443, 1),
        ("198.18.1.5", 8443, 2),
    ]
    assert rows[0]["sha256"] == chain_b[0].sha256
    assert rows[0]["issuer"] == "CN=CA Two"
    assert rows[0]["chain_length"] == 2
    assert rows[0]["observed"] == "2026-06-01T01:00:00.000Z"


@pytest.mark.parametrize(
    ("options", "addresses"),
    [
        (["--subnet", "198.18.1.0/24"], ["198.18.1.5"]),
        (["--port", "8443"], ["198.18.1.5"]),
        (["--issuer", "ca two"], ["198.18.0.2", "198.18.0.10"]),
        (["--finding", "expired"], ["198.18.1.5"]),
        (["--scan", "1"], ["198.18.0.2", "198.18.0.10"]),
        (["--expires-within", "0"], ["198.18.1.5"]),
        (["--expires-within", "36500"], ["198.18.0.2", "198.18.0.10", "198.18.1.5"]),
    ],
)
def test_list_filters(db: Path, options: list[str], addresses: list[str]) -> None:
    rows = run_json("list", "--db", str(db), *options)

    assert isinstance(rows, list)
    assert [row["address"] for row in rows] == addresses


def test_list_table(db: Path) -> None:
    result = runner.invoke(app, ["list", "--db", str(db)], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    assert "endpoints: 3" in result.stdout
    assert "198.18.1.5:8443" in result.stdout
    assert "CN=old.example" in result.stdout


def test_show_by_prefix(db: Path, chain_a: list[CertInfo]) -> None:
    leaf = chain_a[0]

    record = run_json("show", leaf.sha256[:10], "--db", str(db))

    assert isinstance(record, dict)
    assert record["sha256"] == leaf.sha256
    assert record["subject"] == "CN=a.example"
    assert record["first_seen"] == "2026-06-01T00:00:00.000Z"
    assert record["last_seen"] == "2026-06-01T00:00:00.000Z"
    assert record["served_at"] == [
        {
            "address": "198.18.0.2",
            "port": 443,
            "name": None,
            "position": 0,
            "first_seen": "2026-06-01T00:00:00.000Z",
            "last_seen": "2026-06-01T00:00:00.000Z",
            "observations": 1,
        }
    ]


def test_show_pem(db: Path, chain_a: list[CertInfo]) -> None:
    result = runner.invoke(app, ["show", chain_a[0].sha256, "--db", str(db), "--pem"])

    assert result.exit_code == 0
    assert result.stdout.startswith("-----BEGIN CERTIFICATE-----\n")
    assert ssl.PEM_cert_to_DER_cert(result.stdout) == chain_a[0].der


def test_show_unknown_certificate(db: Path) -> None:
    result = runner.invoke(app, ["show", "00" * 32, "--db", str(db)])

    assert result.exit_code == 2
    assert f"error: no certificate with SHA-256 {'00' * 32}" in result.stderr
    assert "hint: list them with pktscan inventory list" in result.stderr


def test_findings_json(db: Path, expired_chain: list[CertInfo]) -> None:
    rows = run_json("findings", "--db", str(db), "--finding", "expired")

    assert rows == [
        {
            "address": "198.18.1.5",
            "port": 8443,
            "name": "old.example",
            "sha256": expired_chain[0].sha256,
            "kind": "expired",
            "severity": "high",
            "message": "expired at 2026-05-01T00:00:00Z,"
            " 31 days before 2026-06-01T01:00:00Z",
            "observed": "2026-06-01T01:00:00.000Z",
        }
    ]


def test_scans_json(db: Path) -> None:
    rows = run_json("scans", "--db", str(db))

    assert isinstance(rows, list)
    assert [(row["id"], row["observations"], row["counts"]) for row in rows] == [
        (1, 2, {"open": 2}),
        (2, 3, {"closed": 1, "open": 2}),
    ]


def test_diff_json(
    db: Path,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> None:
    rows = run_json("diff", "1", "2", "--db", str(db))

    assert isinstance(rows, list)
    assert [(row["address"], row["change"]) for row in rows] == [
        ("198.18.0.2", "changed"),
        ("198.18.0.10", "removed"),
        ("198.18.1.5", "added"),
    ]
    assert rows[0]["before"] == chain_a[0].sha256
    assert rows[0]["after"] == chain_b[0].sha256


def test_diff_unknown_scan(db: Path) -> None:
    result = runner.invoke(app, ["diff", "1", "9", "--db", str(db)])

    assert result.exit_code == 2
    assert "error: scan 9 not found" in result.stderr


def test_export_pem(
    db: Path, tmp_path: Path, chain_b: list[CertInfo], expired_chain: list[CertInfo]
) -> None:
    output = tmp_path / "leaves.pem"

    result = runner.invoke(
        app, ["export", "--format", "pem", "--db", str(db), "-o", str(output)]
    )

    text = output.read_text()
    blocks = text.split("-----END CERTIFICATE-----\n")[:-1]
    assert result.exit_code == 0
    assert len(blocks) == 2
    assert f"# sha256 {chain_b[0].sha256}\n" in blocks[0]
    assert "# served at 198.18.0.2:443\n# served at 198.18.0.10:443\n" in blocks[0]
    pem = blocks[1][blocks[1].index("-----BEGIN") :] + "-----END CERTIFICATE-----\n"
    assert ssl.PEM_cert_to_DER_cert(pem) == expired_chain[0].der


def test_export_csv(db: Path) -> None:
    result = runner.invoke(app, ["export", "--format", "csv", "--db", str(db)])

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.exit_code == 0
    assert [(row["address"], row["port"]) for row in rows] == [
        ("198.18.0.2", "443"),
        ("198.18.0.10", "443"),
        ("198.18.1.5", "8443"),
    ]
    assert rows[2]["name"] == "old.example"


def test_export_json_matches_list(db: Path) -> None:
    exported = runner.invoke(app, ["export", "--db", str(db), "--port", "443"])
    listed = run_json("list", "--db", str(db), "--port", "443")

    assert exported.exit_code == 0
    assert json.loads(exported.stdout) == listed


def test_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"

    result = runner.invoke(app, ["list", "--db", str(missing)])

    assert result.exit_code == 2
    assert f"error: inventory {missing} not found" in result.stderr
    assert "hint: run pktscan scan to create it, or pass --db PATH" in result.stderr
    assert not missing.exists()


def test_corrupt_database(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"\x00garbage" * 512)

    result = runner.invoke(app, ["findings", "--db", str(corrupt)])

    assert result.exit_code == 2
    assert "file is not a database" in result.stderr
    assert "hint: the file is corrupt or not an inventory" in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--subnet", "198.18.0.0/33"], "error: invalid --subnet '198.18.0.0/33'"),
        (["--port", "70000"], "error: invalid --port 70000"),
        (["--expires-within", "-3"], "error: invalid --expires-within -3"),
        (["--finding", "ugly"], "error: invalid --finding 'ugly'"),
    ],
)
def test_invalid_filters(db: Path, options: list[str], message: str) -> None:
    result = runner.invoke(app, ["list", "--db", str(db), *options])

    assert result.exit_code == 2
    assert message in result.stderr
    assert "hint: " in result.stderr


def test_export_invalid_format(db: Path) -> None:
    result = runner.invoke(app, ["export", "--format", "xml", "--db", str(db)])

    assert result.exit_code == 2
    assert "error: invalid --format 'xml'" in result.stderr
    assert "hint: give one of pem, json, csv" in result.stderr
