"""Tests of the inventory's numbered migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pktscan.store import schema

TABLES = [
    "certificates",
    "chain_certificates",
    "chains",
    "endpoints",
    "findings",
    "observations",
    "scans",
]


def open_autocommit(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def table_names(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall()
    return [row[0] for row in rows]


def test_migrate_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.touch()
    connection = open_autocommit(path)

    version = schema.migrate(connection)

    assert version == schema.SCHEMA_VERSION == 2
    assert schema.schema_version(connection) == 2
    assert table_names(connection) == TABLES
    assert connection.in_transaction is False


def test_migrate_up_to_date_file(tmp_path: Path) -> None:
    path = tmp_path / "current.sqlite"
    connection = open_autocommit(path)
    schema.migrate(connection)
    connection.execute(
        "INSERT INTO scans (arguments, started) VALUES ('{}', '2026-06-01')"
    )
    before = connection.execute("SELECT sql FROM sqlite_master ORDER BY name")
    before_sql = before.fetchall()

    version = schema.migrate(open_autocommit(path))

    after_sql = connection.execute(
        "SELECT sql FROM sqlite_master ORDER BY name"
    ).fetchall()
    assert version == schema.SCHEMA_VERSION
    assert after_sql == before_sql
    assert connection.execute("SELECT count(*) FROM scans").fetchone() == (1,)


def test_migrate_newer_file_rejected(tmp_path: Path) -> None:
    connection = open_autocommit(tmp_path / "newer.sqlite")
    connection.execute("PRAGMA user_version = 99")

    with pytest.raises(ValueError, match="schema version 99 is newer"):
        schema.migrate(connection)


def test_migrate_in_transaction_rejected(tmp_path: Path) -> None:
    connection = open_autocommit(tmp_path / "busy.sqlite")
    connection.execute("BEGIN")

    with pytest.raises(ValueError, match="no open transaction"):
        schema.migrate(connection)


def test_failed_migration_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (
        "CREATE TABLE first_table (id INTEGER)",
        "CREATE TABLE broken (",
    )
    monkeypatch.setattr(schema, "MIGRATIONS", (broken,))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    connection = open_autocommit(tmp_path / "broken.sqlite")

    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(connection)

    assert schema.schema_version(connection) == 0
    assert table_names(connection) == []
    assert connection.in_transaction is False


def test_migrations_apply_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = ("ALTER TABLE scans ADD COLUMN note TEXT",)
    connection = open_autocommit(tmp_path / "two.sqlite")
    schema.migrate(connection)
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, second))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)

    version = schema.migrate(connection)

    columns = [row[1] for row in connection.execute("PRAGMA table_info(scans)")]
    assert version == 3
    assert columns[-1] == "note"


def test_version_1_file_gains_run_column(tmp_path: Path) -> None:
    connection = open_autocommit(tmp_path / "old.sqlite")
    for statement in schema.MIGRATIONS[0]:
        connection.execute(statement)
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO scans (arguments, started) VALUES ('{}', '2026-06-01')"
    )

    version = schema.migrate(connection)

    columns = [row[1] for row in connection.execute("PRAGMA table_info(scans)")]
    assert version == 2
    assert columns[-1] == "run"
    assert connection.execute("SELECT run FROM scans").fetchall() == [(None,)]
