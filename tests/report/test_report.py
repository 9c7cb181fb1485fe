"""Tests of the HTML report on an inventory with known contents."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from pktscan import certs
from pktscan.report import collect, render
from pktscan.report.cli import report
from pktscan.results import AttemptRecord, CertInfo, PortResult, TlsResult
from pktscan.store.sqlite import Inventory

NOW = datetime(2026, 6, 2, tzinfo=UTC)
T1 = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
T2 = datetime(2026, 6, 1, 1, tzinfo=UTC).timestamp()

runner = CliRunner()
report_app = typer.Typer()
report_app.command()(report)


def issue(
    host: str, issuer: str, not_after: datetime, key: ec.EllipticCurvePrivateKey
) -> CertInfo:
    """Build a leaf for `host` that names `issuer`, signed by `key`."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False
        )
    )
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    return certs.decode_certificate(der)


def result(ip: str, leaf: CertInfo | None, time: float, version: str) -> PortResult:
    if leaf is None:
        return PortResult(ip, 443, "closed", time=time)
    attempt = AttemptRecord(1, "certificate", version=version)
    tls = TlsResult([attempt], 1, version, "TLS_RSA_WITH_AES_128_CBC_SHA", [leaf])
    return PortResult(ip, 443, "open", tls=tls, time=time)


class Leaves:
    """The four leaves of the test inventory, with their expiry."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        self.a = issue("a.example", "CA One", datetime(2028, 3, 1, tzinfo=UTC), key)
        self.b = issue("b.example", "CA One", datetime(2026, 8, 15, tzinfo=UTC), key)
        self.c = issue("c.example", "CA Two", datetime(2026, 6, 20, tzinfo=UTC), key)
        self.old = issue("old.example", "CA Two", datetime(2026, 5, 1, tzinfo=UTC), key)


@pytest.fixture(scope="module")
def leaves() -> Leaves:
    return Leaves()


@pytest.fixture
def db(tmp_path: Path, leaves: Leaves) -> Path:
    """Two scans: .3 changes from B to C, .4 closes, .5 appears expired."""
    path = tmp_path / "inventory.sqlite"
    with Inventory.open(path, background_flush=False) as inventory:
        first = inventory.begin_scan({"n": 1})
        inventory.add_result(first, result("198.18.0.2", leaves.a, T1, "TLSv1.2"))
        inventory.add_result(first, result("198.18.0.3", leaves.b, T1, "TLSv1.2"))
        inventory.add_result(first, result("198.18.0.4", leaves.a, T1, "TLSv1.0"))
        inventory.finish_scan(first, {"open": 3})
        second = inventory.begin_scan({"n": 2})
        inventory.add_result(second, result("198.18.0.2", leaves.a, T2, "TLSv1.2"))
        inventory.add_result(second, result("198.18.0.3", leaves.c, T2, "TLSv1.2"))
        inventory.add_result(second, result("198.18.0.4", None, T2, ""))
        inventory.add_result(second, result("198.18.0.5", leaves.old, T2, "SSLv3"))
        inventory.finish_scan(second, {"open": 3, "closed": 1})
    return path


def render_page(db: Path) -> str:
    with Inventory.open(db, background_flush=False) as inventory:
        data = collect(inventory.connection, "test inventory", NOW)
    return render(data)


def metric(page: str, name: str) -> int:
    found = re.search(rf'data-metric="{name}"><span class="value">(\d+)</span>', page)
    assert found is not None, name
    return int(found.group(1))


def chart(page: str, name: str) -> dict[str, int]:
    """Return the label and value of each bar of the chart called `name`."""
    found = re.search(rf'<svg[^>]*data-chart="{name}".*?</svg>', page, re.DOTALL)
    assert found is not None, name
    pairs = re.findall(r'data-label="([^"]*)" data-value="(\d+)"', found.group(0))
    return {label: int(value) for label, value in pairs}


def test_report_tiles(db: Path) -> None:
    page = render_page(db)

    # .4 is closed now but still counts, with the chain it served last.
    assert metric(page, "endpoints") == 4
    # A, C and old: B is no endpoint's latest leaf any more.
    assert metric(page, "certificates") == 3
    assert metric(page, "expired") == 1
    assert metric(page, "expiring") == 1
    assert metric(page, "changes") == 3
    # expired (high) and ssl_only (critical), both on .5.
    assert metric(page, "urgent") == 2


def test_report_expiry_timeline(db: Path) -> None:
    timeline = chart(render_page(db), "expiry")

    assert list(timeline)[:3] == ["expired", "2026-06", "2026-07"]
    assert list(timeline)[-1] == "later"
    assert len(timeline) == 14
    assert timeline["expired"] == 1
    assert timeline["2026-06"] == 1
    assert timeline["2026-08"] == 0
    assert timeline["later"] == 1
    assert sum(timeline.values()) == 3


def test_report_versions_keys_issuers(db: Path) -> None:
    page = render_page(db)

    assert chart(page, "versions") == {"TLSv1.2": 2, "TLSv1.0": 1, "SSLv3": 1}
    assert chart(page, "keys") == {"EC 256": 3}
    assert chart(page, "issuers") == {"CA Two": 2, "CA One": 1}


def test_report_severities_and_changes(db: Path) -> None:
    page = render_page(db)

    assert chart(page, "severity") == {
        "critical": 1,
        "high": 1,
        # chain_incomplete on each of the four leaves served, expiring on
        # C, endpoint_gone on .4.
        "medium": 6,
        "low": 0,
        "info": 1,
    }
    assert chart(page, "changes") == {"changed": 1, "added": 1, "removed": 1}


def test_report_changes_table(db: Path, leaves: Leaves) -> None:
    page = render_page(db)

    table = re.search(r'<table data-table="changes">.*?</table>', page, re.DOTALL)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.DOTALL)[1:]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert cells == [
        ["198.18.0.3:443", "changed", leaves.b.sha256[:16], leaves.c.sha256[:16]],
        ["198.18.0.4:443", "removed", leaves.a.sha256[:16], ""],
        ["198.18.0.5:443", "added", "", leaves.old.sha256[:16]],
    ]


def test_report_is_self_contained(db: Path) -> None:
    page = render_page(db)

    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "<link" not in page
    assert "<img" not in page
    assert re.search(r"(src|href)=", page) is None
    assert "url(" not in page


def test_report_escapes_names(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue("x.example", "<b>Evil & Co</b>", datetime(2027, 1, 1, tzinfo=UTC), key)
    path = tmp_path / "inventory.sqlite"
    with Inventory.open(path, background_flush=False) as inventory:
        scan = inventory.begin_scan({})
        inventory.add_result(scan, result("198.18.0.9", leaf, T1, "TLSv1.2"))
        inventory.finish_scan(scan, {})

    page = render_page(path)

    assert "<b>Evil" not in page
    assert "&lt;b&gt;Evil &amp; Co&lt;/b&gt;" in page


def test_report_empty_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inventory.sqlite"
    Inventory.open(path, background_flush=False).close()

    page = render_page(path)

    assert metric(page, "endpoints") == 0
    assert "no scans yet" in page
    assert "only one scan recorded" in page


def test_report_command_writes_file(db: Path, tmp_path: Path) -> None:
    output = tmp_path / "report.html"

    outcome = runner.invoke(report_app, ["--html", str(output), "--db", str(db)])

    assert outcome.exit_code == 0, outcome.output
    assert "4 endpoints, 3 certificates, 9 findings, 3 changes" in outcome.output
    assert output.read_text().startswith("<!DOCTYPE html>")


def test_report_command_missing_inventory(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    output = tmp_path / "report.html"

    outcome = runner.invoke(report_app, ["--html", str(output), "--db", str(missing)])

    assert outcome.exit_code == 2
    assert f"error: inventory {missing} not found" in outcome.output
    assert not output.exists()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # IHDR is the first chunk: length, type, then width and height.
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_screenshot_in_chromium(db: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_page(db))
    screenshot = tmp_path / "report.png"
    profile = tempfile.mkdtemp(prefix="pktscan-chromium-")
    try:
        completed = subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={screenshot}",
                "--window-size=1280,2000",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)

    assert completed.returncode == 0, completed.stderr
    assert png_size(screenshot) == (1280, 2000)
    # A page that failed to render is one flat color and compresses to a
    # few kilobytes; the charts and tables take far more.
    assert screenshot.stat().st_size > 50_000
