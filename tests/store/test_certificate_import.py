"""inventory import of PEM and DER certificate files."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import ssl
from pathlib import Path

from store_helpers import make_der
from typer.testing import CliRunner

from pktscan.store.cli import app

runner = CliRunner()


def _stored(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT sha256, subject FROM certificates")
        return dict(rows.fetchall())


def test_import_pem_bundle(tmp_path: Path) -> None:
    ders = [make_der("one.test"), make_der("two.test")]
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in ders))
    db = tmp_path / "inventory.sqlite"

    result = runner.invoke(app, ["import", str(bundle), "--db", str(db), "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"certificates": 2, "new_certificates": 2}
    assert _stored(db) == {
        hashlib.sha256(ders[0]).hexdigest(): "CN=one.test",
        hashlib.sha256(ders[1]).hexdigest(): "CN=two.test",
    }


def test_import_der_twice_adds_once(tmp_path: Path) -> None:
    der = make_der("der.test")
    path = tmp_path / "leaf.der"
    path.write_bytes(der)
    db = tmp_path / "inventory.sqlite"

    first = runner.invoke(app, ["import", str(path), "--db", str(db)])
    second = runner.invoke(app, ["import", str(path), "--db", str(db)])

    assert first.exit_code == 0, first.output
    assert first.output == f"imported 1 certificates, 1 new, from {path}\n"
    assert second.output == f"imported 1 certificates, 0 new, from {path}\n"
    assert _stored(db) == {hashlib.sha256(der).hexdigest(): "CN=der.test"}


def test_import_text_without_certificate(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("no certificate here\n")

    result = runner.invoke(
        app, ["import", str(path), "--db", str(tmp_path / "inventory.sqlite")]
    )

    assert result.exit_code == 2
    assert f"error: no certificate found in {path}" in result.output
