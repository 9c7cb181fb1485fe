"""Tests of merging one inventory into another."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from store_helpers import T0, hours, tls_result
from typer.testing import CliRunner

from pktscan.results import CertInfo
from pktscan.store import query
from pktscan.store.cli import app
from pktscan.store.merge import merge_inventory
from pktscan.store.query import Filters
from pktscan.store.sqlite import Inventory, InventoryError


def write_scan(
    path: Path, shard: str, rows: list[tuple[str, list[CertInfo], float]]
) -> None:
    with Inventory.open(path) as inventory:
        scan = inventory.begin_scan({"targets": ["198.18.0.0/24"]}, shard=shard)
        for address, chain, time in rows:
            inventory.add_result(scan, tls_result(address, 443, chain, time))
        inventory.finish_scan(scan, {"open": len(rows)})


@pytest.fixture
def shards(
    tmp_path: Path,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> tuple[Path, Path]:
    first, second = tmp_path / "shard0.sqlite", tmp_path / "shard1.sqlite"
    write_scan(first, "0/2", [("198.18.0.2", chain_a, T0)])
    write_scan(
        second,
        "1/2",
        [
            ("198.18.0.3", chain_a, T0 - hours(3)),
            ("198.18.0.4", chain_b, T0),
            ("198.18.0.5", expired_chain, T0),
        ],
    )
    return first, second


def test_merge_adds_scans_and_results(
    shards: tuple[Path, Path],
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
) -> None:
    target_path, source_path = shards
    with Inventory.open(target_path) as target:
        counts = merge_inventory(target, source_path)
        connection = target.connection
        rows = query.served(connection, Filters())
        scans = query.list_scans(connection)
        leaf = query.find_certificate(connection, chain_a[0].sha256)[0]
        places = query.placements(connection, chain_a[0].sha256)
        kinds = connection.execute(
            "SELECT e.address, f.kind FROM findings AS f"
            " JOIN observations AS o ON o.id = f.observation"
            " JOIN endpoints AS e ON e.id = o.endpoint ORDER BY f.id"
        ).fetchall()
        integrity = connection.execute("PRAGMA integrity_check").fetchall()
        foreign_keys = connection.execute("PRAGMA foreign_key_check").fetchall()

    assert counts.to_json() == {"scans": 1, "observations": 3, "certificates": 3}
    assert [(row.address, row.scan) for row in rows] == [
        ("198.18.0.2", 1),
        ("198.18.0.3", 2),
        ("198.18.0.4", 2),
        ("198.18.0.5", 2),
    ]
    assert rows[2].sha256 == chain_b[0].sha256
    assert [(scan.id, scan.shard, scan.observations) for scan in scans] == [
        (1, "0/2", 1),
        (2, "1/2", 3),
    ]
    assert leaf.first_seen == "2026-05-31T21:00:00.000Z"
    assert leaf.last_seen == "2026-06-01T00:00:00.000Z"
    assert [(p.address, p.observations) for p in places] == [
        ("198.18.0.2", 1),
        ("198.18.0.3", 1),
    ]
    assert kinds == [
        ("198.18.0.5", "expired"),
        ("198.18.0.5", "self_signed"),
    ]
    assert integrity == [("ok",)]
    assert foreign_keys == []


def test_merge_twice_adds_nothing(shards: tuple[Path, Path]) -> None:
    target_path, source_path = shards
    with Inventory.open(target_path) as target:
        merge_inventory(target, source_path)
        again = merge_inventory(target, source_path)
        observations = target.connection.execute(
            "SELECT count(*) FROM observations"
        ).fetchone()

    assert again.to_json() == {"scans": 0, "observations": 0, "certificates": 0}
    assert observations == (4,)


def test_merge_into_itself_rejected(shards: tuple[Path, Path]) -> None:
    target_path, _ = shards
    with (
        Inventory.open(target_path) as target,
        pytest.raises(InventoryError, match="is the target itself"),
    ):
        merge_inventory(target, target_path)


def test_merge_missing_source_rejected(
    shards: tuple[Path, Path], tmp_path: Path
) -> None:
    target_path, _ = shards
    with (
        Inventory.open(target_path) as target,
        pytest.raises(InventoryError, match="not found"),
    ):
        merge_inventory(target, tmp_path / "absent.sqlite")


def test_merge_corrupt_source_leaves_target(
    shards: tuple[Path, Path], tmp_path: Path
) -> None:
    target_path, _ = shards
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"\x01" * 4096)

    with Inventory.open(target_path) as target:
        with pytest.raises(InventoryError, match="file is not a database"):
            merge_inventory(target, corrupt)
        count = target.connection.execute("SELECT count(*) FROM scans").fetchone()

    assert count == (1,)


def test_import_command(shards: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = shards
    merged = tmp_path / "merged" / "all.sqlite"
    runner = CliRunner()

    one = runner.invoke(app, ["import", str(first), "--db", str(merged)])
    two = runner.invoke(app, ["import", str(second), "--db", str(merged), "--json"])

    assert one.exit_code == 0
    assert one.stdout == (
        f"imported 1 scans, 1 results and 2 new certificates from {first}\n"
    )
    assert two.exit_code == 0
    assert json.loads(two.stdout) == {
        "scans": 1,
        "observations": 3,
        "certificates": 3,
    }
    with sqlite3.connect(merged) as connection:
        shards_seen = connection.execute(
            "SELECT shard FROM scans ORDER BY id"
        ).fetchall()
    assert shards_seen == [("0/2",), ("1/2",)]
