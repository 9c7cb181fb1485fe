"""The PostgreSQL inventory against a real server that the tests start.

Most tests write the same results into a SQLite file and a PostgreSQL
database and compare what the queries return, so the two backends must
agree on every row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from store_helpers import T0, closed_result, hours, http_result, tls_result
from test_inventory_kill import (
    BATCH_SIZE,
    KILL_AFTER,
    MAX_RESULTS,
    MAX_WAIT_SECONDS,
    WRITER,
    read_until_committed,
)
from typer.testing import CliRunner

from pktscan.report import collect
from pktscan.results import CertInfo
from pktscan.store import open_inventory, query, schema
from pktscan.store.cli import app
from pktscan.store.postgres import MIGRATIONS, PostgresInventory, migrate, redact
from pktscan.store.query import Filters
from pktscan.store.sql import SqlConnection, to_psycopg
from pktscan.store.sqlite import Inventory, InventoryError

SHARD_WRITER = Path(__file__).with_name("shard_writer.py")
SHARDS = 4
RESULTS_PER_SHARD = 60

runner = CliRunner()


def fill(
    inventory: Inventory | PostgresInventory,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> None:
    """Write two scans: .3 changes from A to B, .4 closes, .5 appears."""
    first = inventory.begin_scan({"n": 1})
    inventory.add_result(first, tls_result("198.18.0.2", 443, chain_a, T0))
    inventory.add_result(first, tls_result("198.18.0.3", 443, chain_a, T0))
    inventory.add_result(first, tls_result("198.18.0.4", 8443, chain_b, T0))
    inventory.add_result(first, http_result("198.18.0.6", T0))
    inventory.finish_scan(first, {"open": 4})
    second = inventory.begin_scan({"n": 2})
    later = T0 + hours(1)
    inventory.add_result(second, tls_result("198.18.0.2", 443, chain_a, later))
    inventory.add_result(second, tls_result("198.18.0.3", 443, chain_b, later))
    inventory.add_result(second, closed_result("198.18.0.4", 8443, later))
    old = tls_result("198.18.1.5", 443, expired_chain, later, name="old.example")
    inventory.add_result(second, old)
    inventory.finish_scan(second, {"open": 3, "closed": 1})


def answers(connection: SqlConnection) -> dict[str, Any]:
    """Run every read query and return the rows as plain values."""
    scans = query.list_scans(connection)
    cutoff = "2026-06-01T00:00:00Z"
    return {
        "served": [asdict(row) for row in query.served(connection, Filters())],
        "served_issuer": [
            row.address for row in query.served(connection, Filters(issuer="ca ONE"))
        ],
        "served_expiry": [
            row.address
            for row in query.served(connection, Filters(expires_before=cutoff))
        ],
        "served_scan": [
            row.sha256 for row in query.served(connection, Filters(scan=1))
        ],
        "findings": [asdict(row) for row in query.findings(connection, Filters())],
        "diff": [asdict(change) for change in query.diff_scans(connection, 1, 2)],
        "scans": [
            (scan.id, scan.shard, scan.arguments, scan.counts, scan.observations)
            for scan in scans
        ],
        "leaves": [asdict(row) for row in query.leaves(connection)],
    }


@pytest.fixture
def both(
    tmp_path: Path,
    pg_url: str,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> tuple[Path, str]:
    sqlite_path = tmp_path / "inventory.sqlite"
    with Inventory.open(sqlite_path, background_flush=False) as inventory:
        fill(inventory, chain_a, chain_b, expired_chain)
    with PostgresInventory.open(pg_url, background_flush=False) as inventory:
        fill(inventory, chain_a, chain_b, expired_chain)
    return sqlite_path, pg_url


def test_migrations_match_sqlite() -> None:
    assert len(MIGRATIONS) == schema.SCHEMA_VERSION


def test_schema_has_sqlite_columns(tmp_path: Path, pg_url: str) -> None:
    with Inventory.open(tmp_path / "i.sqlite", background_flush=False) as inventory:
        tables = [
            row[0]
            for row in inventory.connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        sqlite_columns = {
            table: [
                row[1]
                for row in inventory.connection.execute(f"PRAGMA table_info({table})")
            ]
            for table in tables
        }
    with PostgresInventory.open(pg_url, background_flush=False) as inventory:
        pg_columns = {
            table: [
                row[0]
                for row in inventory.connection.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = ? ORDER BY ordinal_position",
                    (table,),
                ).fetchall()
            ]
            for table in tables
        }

    assert len(tables) == 7
    assert pg_columns == sqlite_columns


def test_migrate_twice_keeps_version(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as raw:
        first = migrate(raw)
        second = migrate(raw)
        tables = raw.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema = 'public'"
        ).fetchone()

    assert first == second == schema.SCHEMA_VERSION
    # Seven inventory tables and pktscan_schema.
    assert tables == (8,)


def test_newer_schema_rejected(pg_url: str) -> None:
    PostgresInventory.open(pg_url, background_flush=False).close()
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("UPDATE pktscan_schema SET version = 99")

    with pytest.raises(InventoryError, match="schema version 99 is newer"):
        PostgresInventory.open(pg_url, background_flush=False)


def test_queries_agree_with_sqlite(both: tuple[Path, str]) -> None:
    sqlite_path, pg_url = both
    with Inventory.open(sqlite_path, background_flush=False) as inventory:
        expected = answers(inventory.connection)
    with PostgresInventory.open(pg_url, background_flush=False) as inventory:
        actual = answers(inventory.connection)

    assert actual["served"] == expected["served"]
    assert actual["served_issuer"] == expected["served_issuer"] == ["198.18.0.2"]
    assert actual["served_expiry"] == expected["served_expiry"] == ["198.18.1.5"]
    assert actual["served_scan"] == expected["served_scan"]
    assert actual["findings"] == expected["findings"]
    assert actual["diff"] == expected["diff"]
    assert actual["leaves"] == expected["leaves"]
    # Start times differ between the two runs; the rest must match.
    assert actual["scans"] == expected["scans"]
    kinds = {row["kind"] for row in actual["findings"]}
    assert {"certificate_changed", "endpoint_gone", "expired"} <= kinds


def test_certificate_bytes_round_trip(
    both: tuple[Path, str], chain_a: list[CertInfo]
) -> None:
    _, pg_url = both
    with PostgresInventory.open(pg_url, background_flush=False) as inventory:
        records = query.find_certificate(inventory.connection, chain_a[0].sha256[:12])
        places = query.placements(inventory.connection, chain_a[0].sha256)

    assert [record.der for record in records] == [chain_a[0].der]
    assert records[0].san == chain_a[0].san
    assert [(place.address, place.observations) for place in places] == [
        ("198.18.0.2", 2),
        ("198.18.0.3", 1),
    ]


def test_report_numbers_agree(both: tuple[Path, str]) -> None:
    sqlite_path, pg_url = both
    now = datetime(2026, 6, 2, tzinfo=UTC)
    with Inventory.open(sqlite_path, background_flush=False) as inventory:
        expected = collect(inventory.connection, "same", now)
    with PostgresInventory.open(pg_url, background_flush=False) as inventory:
        actual = collect(inventory.connection, "same", now)

    assert actual.endpoints == expected.endpoints == 4
    assert actual.timeline == expected.timeline
    assert actual.severities == expected.severities
    assert actual.kinds == expected.kinds
    assert actual.changes == expected.changes


def test_cli_lists_postgres_inventory(both: tuple[Path, str]) -> None:
    sqlite_path, pg_url = both

    from_pg = runner.invoke(app, ["list", "--db", pg_url, "--json"])
    from_sqlite = runner.invoke(app, ["list", "--db", str(sqlite_path), "--json"])

    assert from_pg.exit_code == 0, from_pg.output
    rows = json.loads(from_pg.output)
    expected = json.loads(from_sqlite.output)
    for row in [*rows, *expected]:
        del row["observed"]
    assert rows == expected
    assert len(rows) == 4


def test_batch_written_when_full(pg_url: str, chain_a: list[CertInfo]) -> None:
    inventory = PostgresInventory.open(pg_url, batch_size=3, background_flush=False)
    scan = inventory.begin_scan({})
    with psycopg.connect(pg_url, autocommit=True) as other:
        for index in range(2):
            address = f"198.18.0.{index + 1}"
            inventory.add_result(scan, tls_result(address, 443, chain_a, T0))
        before = other.execute("SELECT count(*) FROM observations").fetchone()
        inventory.add_result(scan, tls_result("198.18.0.3", 443, chain_a, T0))
        after = other.execute("SELECT count(*) FROM observations").fetchone()
    inventory.close()

    assert before == (0,)
    assert after == (3,)
    assert inventory.pending_results == 0


def test_failed_batch_leaves_no_rows(pg_url: str, chain_a: list[CertInfo]) -> None:
    inventory = PostgresInventory.open(pg_url, batch_size=2, background_flush=False)
    scan = inventory.begin_scan({})
    inventory.add_result(scan, tls_result("198.18.0.1", 443, chain_a, T0))

    with pytest.raises(InventoryError, match="failed to store 2 results from"):
        # Scan 42 does not exist, so the foreign key fails the batch.
        inventory.add_result(42, tls_result("198.18.0.2", 443, chain_a, T0))
    observations = inventory.connection.execute(
        "SELECT count(*) FROM observations"
    ).fetchone()
    inventory.close()

    assert observations == (0,)


def test_unreachable_server_reported(tmp_path: Path) -> None:
    # A socket directory with no server in it: nothing leaves the machine.
    url = f"postgresql://postgres@/pktscan?host={tmp_path}&port=5432"

    with pytest.raises(InventoryError, match="failed to connect to inventory"):
        PostgresInventory.open(url)


def test_open_inventory_picks_backend(tmp_path: Path, pg_url: str) -> None:
    with open_inventory(pg_url, background_flush=False) as inventory:
        assert isinstance(inventory, PostgresInventory)
    with open_inventory(str(tmp_path / "x.sqlite"), background_flush=False) as store:
        assert isinstance(store, Inventory)


def test_redact_hides_password() -> None:
    url = "postgresql://scanner:s3cret@db.example:5433/inventory"

    assert redact(url) == "postgresql://scanner:***@db.example:5433/inventory"
    assert redact("postgresql://scanner@/x?host=/run") == (
        "postgresql://scanner@/x?host=/run"
    )


def test_placeholders_rewritten() -> None:
    sql = "SELECT * FROM t WHERE a = ? AND b LIKE '%' || :issuer || '%' AND c::text"

    assert to_psycopg(sql) == (
        "SELECT * FROM t WHERE a = %s AND b ILIKE '%%' || %(issuer)s || '%%'"
        " AND c::text"
    )


def run_shards(
    db: str, run: str, chains_file: Path
) -> list[subprocess.CompletedProcess[str]]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(SHARD_WRITER.parent), *sys.path])
    )
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(SHARD_WRITER),
                db,
                run,
                str(index),
                str(SHARDS),
                str(RESULTS_PER_SHARD),
                str(chains_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for index in range(1, SHARDS + 1)
    ]
    finished = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        finished.append(
            subprocess.CompletedProcess(
                process.args, process.returncode, stdout, stderr
            )
        )
    return finished


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_shards_share_one_scan(
    backend: str,
    pg_url: str,
    tmp_path: Path,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
) -> None:
    db = pg_url if backend == "postgresql" else str(tmp_path / "shared.sqlite")
    chains_file = tmp_path / "chains.json"
    listed = [[cert.der.hex() for cert in chain] for chain in (chain_a, chain_b)]
    chains_file.write_text(json.dumps(listed))

    finished = run_shards(db, "nightly-2026-06-01", chains_file)

    for process in finished:
        assert process.returncode == 0, process.stderr
    scan_ids = {int(process.stdout.split()[-1]) for process in finished}
    with open_inventory(db, background_flush=False) as inventory:
        scans = query.list_scans(inventory.connection)
        endpoints = inventory.connection.execute(
            "SELECT count(*) FROM endpoints"
        ).fetchone()
        certificates = inventory.connection.execute(
            "SELECT count(*) FROM certificates"
        ).fetchone()
    assert len(scan_ids) == 1
    assert [scan.id for scan in scans] == list(scan_ids)
    assert scans[0].observations == SHARDS * RESULTS_PER_SHARD
    assert scans[0].counts == {"open": SHARDS * RESULTS_PER_SHARD}
    assert sorted((scans[0].shard or "").split(",")) == [
        f"{index}/{SHARDS}" for index in range(1, SHARDS + 1)
    ]
    assert scans[0].ended is not None
    assert endpoints == (SHARDS * RESULTS_PER_SHARD,)
    assert certificates == (4,)


def test_sigkill_keeps_committed_results(pg_url: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WRITER.parent), *sys.path]))
    process = subprocess.Popen(
        [sys.executable, str(WRITER), pg_url, str(BATCH_SIZE), str(MAX_RESULTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        committed, lines = read_until_committed(process)
        os.kill(process.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=MAX_WAIT_SECONDS)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    assert committed >= KILL_AFTER, (lines[-5:], stderr)
    assert process.returncode == -signal.SIGKILL
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = raw.execute(
            "SELECT c.oid::regclass::text FROM pg_index AS i"
            " JOIN pg_class AS c ON c.oid = i.indexrelid"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' ORDER BY 1"
        ).fetchall()
        for (index,) in indexes:
            # Raises when the index and its table disagree.
            raw.execute("SELECT bt_index_parent_check(%s::regclass, true)", (index,))
        stored = raw.execute("SELECT count(*) FROM observations").fetchone()
        endpoints = raw.execute("SELECT count(*) FROM endpoints").fetchone()
        orphans = raw.execute(
            "SELECT count(*) FROM observations AS o"
            " LEFT JOIN chain_certificates AS cc ON cc.chain = o.chain"
            " LEFT JOIN certificates AS c ON c.sha256 = cc.certificate"
            " WHERE c.sha256 IS NULL"
        ).fetchone()

    assert stored is not None
    # Every result reported committed is there, and only whole batches.
    assert stored[0] >= committed
    assert stored[0] % BATCH_SIZE == 0
    assert endpoints == stored
    assert orphans == (0,)
    # The primary keys, the unique keys and the indexes of migration 1 and 2.
    assert len(indexes) >= 15
