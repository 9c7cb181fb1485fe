"""Tests of the SQLite inventory: writing, batching, reopening and queries."""

from __future__ import annotations

import ipaddress
import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from store_helpers import T0, closed_result, hours, http_result, tls_result

from pktscan import certs
from pktscan.results import CertInfo
from pktscan.store import query
from pktscan.store.query import Filters
from pktscan.store.schema import SCHEMA_VERSION
from pktscan.store.sqlite import (
    Inventory,
    InventoryError,
    connect,
    default_inventory_path,
)


class FakeClock:
    """Monotonic clock that advances only when a test sets `now`."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def count(path: Path, table: str) -> int:
    """Count rows through a separate connection, so only commits are seen."""
    with sqlite3.connect(path) as other:
        row = other.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "pktscan" / "inventory.sqlite"


def test_open_creates_parents_and_schema(db: Path) -> None:
    with Inventory.open(db) as inventory:
        mode = inventory.connection.execute("PRAGMA journal_mode").fetchone()[0]
        version = inventory.connection.execute("PRAGMA user_version").fetchone()[0]

    assert db.is_file()
    assert mode == "wal"
    assert version == SCHEMA_VERSION


def test_reopen_keeps_first_and_last_seen(
    db: Path, chain_a: list[CertInfo], chain_b: list[CertInfo]
) -> None:
    leaf_a, ca_a = chain_a
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({"targets": ["198.18.0.0/29"]})
        inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))
        inventory.add_result(scan, tls_result("198.18.0.3", 8443, chain_b, T0))
        inventory.finish_scan(scan, {"open": 2})
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({"targets": ["198.18.0.0/29"]})
        later = T0 + hours(2)
        inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, later))
        inventory.add_result(scan, tls_result("198.18.0.4", 443, chain_a, later))
        inventory.finish_scan(scan, {"open": 2})

    with Inventory.open(db) as inventory:
        found = query.find_certificate(inventory.connection, leaf_a.sha256)
        places = query.placements(inventory.connection, ca_a.sha256)

    assert len(found) == 1
    record = found[0]
    assert record.der == leaf_a.der
    assert record.subject == "CN=a.example"
    assert record.issuer == "CN=CA One"
    assert record.san == ("DNS:a.example",)
    assert record.first_seen == "2026-06-01T00:00:00.000Z"
    assert record.last_seen == "2026-06-01T02:00:00.000Z"
    assert [(p.address, p.port, p.position) for p in places] == [
        ("198.18.0.2", 443, 1),
        ("198.18.0.4", 443, 1),
    ]
    assert [(p.first_seen, p.last_seen, p.observations) for p in places] == [
        ("2026-06-01T00:00:00.000Z", "2026-06-01T02:00:00.000Z", 2),
        ("2026-06-01T02:00:00.000Z", "2026-06-01T02:00:00.000Z", 1),
    ]


def test_certificate_seen_out_of_order(db: Path, chain_a: list[CertInfo]) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))
        earlier = T0 - hours(5)
        inventory.add_result(scan, tls_result("198.18.0.3", 443, chain_a, earlier))
        record = query.find_certificate(inventory.connection, chain_a[0].sha256)[0]

    assert record.first_seen == "2026-05-31T19:00:00.000Z"
    assert record.last_seen == "2026-06-01T00:00:00.000Z"


def test_chains_and_endpoints_deduplicated(db: Path, chain_a: list[CertInfo]) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        for offset in range(3):
            result = tls_result("198.18.0.2", 443, chain_a, T0 + offset)
            inventory.add_result(scan, result)
        inventory.add_result(scan, tls_result("198.18.0.5", 443, chain_a, T0))

    assert count(db, "observations") == 4
    assert count(db, "endpoints") == 2
    assert count(db, "chains") == 1
    assert count(db, "chain_certificates") == 2
    assert count(db, "certificates") == 2


def test_chain_order_makes_distinct_chains(db: Path, chain_a: list[CertInfo]) -> None:
    reversed_chain = list(reversed(chain_a))
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))
        inventory.add_result(scan, tls_result("198.18.0.3", 443, reversed_chain, T0))
        rows = inventory.connection.execute(
            "SELECT certificates FROM chains ORDER BY id"
        ).fetchall()

    assert rows == [
        (f"{chain_a[0].sha256},{chain_a[1].sha256}",),
        (f"{chain_a[1].sha256},{chain_a[0].sha256}",),
    ]


def test_endpoint_keeps_known_names(db: Path, chain_a: list[CertInfo]) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        named = tls_result("198.18.0.2", 443, chain_a, T0, name="a.example")
        named.ptr = "host2.lab.example"
        inventory.add_result(scan, named)
        inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0 + 1))
        row = inventory.connection.execute(
            "SELECT address, port, name, ptr FROM endpoints"
        ).fetchall()

    assert row == [("198.18.0.2", 443, "a.example", "host2.lab.example")]


def test_observation_columns(db: Path, chain_a: list[CertInfo]) -> None:
    tls = tls_result("198.18.0.2", 443, chain_a, T0)
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        inventory.add_result(scan, tls)
        inventory.add_result(scan, closed_result("198.18.0.2", 444, T0))
        inventory.add_result(scan, http_result("198.18.0.2", T0))
        rows = inventory.connection.execute(
            "SELECT chain, state, attempt_set, version, cipher, http_server, time,"
            " result FROM observations ORDER BY id"
        ).fetchall()

    assert rows[0][:7] == (
        1,
        "open",
        1,
        "TLS 1.0",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        None,
        "2026-06-01T00:00:00.000Z",
    )
    assert json.loads(rows[0][7]) == tls.to_json()
    assert rows[1][:6] == (None, "closed", None, None, None, None)
    assert rows[2][:6] == (None, "open", None, None, None, "nginx/1.22.1")


def test_findings_stored_per_observation(
    db: Path, expired_chain: list[CertInfo], chain_a: list[CertInfo]
) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        old = tls_result("198.18.0.2", 443, expired_chain, T0, name="old.example")
        inventory.add_result(scan, old)
        wrong = tls_result("198.18.0.3", 443, chain_a, T0, name="c.example")
        inventory.add_result(scan, wrong)
        rows = inventory.connection.execute(
            "SELECT observation, certificate, kind, severity FROM findings ORDER BY id"
        ).fetchall()

    assert rows == [
        (1, expired_chain[0].sha256, "expired", "high"),
        (1, expired_chain[0].sha256, "self_signed", "medium"),
        (2, chain_a[0].sha256, "name_mismatch", "high"),
    ]


def test_undecodable_certificate_stored(db: Path) -> None:
    junk = certs.decode_chain([b"\x30\x03\x02\x01\x00"])
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        inventory.add_result(scan, tls_result("198.18.0.2", 443, junk, T0))
        row = inventory.connection.execute(
            "SELECT der, subject, error FROM certificates"
        ).fetchone()
        kinds = inventory.connection.execute("SELECT kind FROM findings").fetchall()

    assert row[0] == b"\x30\x03\x02\x01\x00"
    assert row[1] is None
    assert row[2].startswith("invalid X.509 DER (5 bytes)")
    assert kinds == [("undecodable",)]


def test_batch_commits_at_size(db: Path, chain_a: list[CertInfo]) -> None:
    clock = FakeClock()
    Inventory.open(db).close()
    inventory = Inventory(connect(db), db, batch_size=3, clock=clock)
    scan = inventory.begin_scan({})

    inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))
    inventory.add_result(scan, tls_result("198.18.0.3", 443, chain_a, T0))
    before = count(db, "observations")
    inventory.add_result(scan, tls_result("198.18.0.4", 443, chain_a, T0))
    after = count(db, "observations")
    inventory.close()

    assert before == 0
    assert after == 3
    assert inventory.pending_results == 0


def test_batch_commits_after_interval(db: Path, chain_a: list[CertInfo]) -> None:
    clock = FakeClock()
    Inventory.open(db).close()
    inventory = Inventory(
        connect(db), db, batch_size=100, commit_interval=1.0, clock=clock
    )
    scan = inventory.begin_scan({})

    inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))
    clock.now += 0.5
    inventory.add_result(scan, tls_result("198.18.0.3", 443, chain_a, T0))
    pending = inventory.pending_results
    before = count(db, "observations")
    clock.now += 0.5
    inventory.add_result(scan, tls_result("198.18.0.4", 443, chain_a, T0))
    after = count(db, "observations")
    inventory.close()

    assert pending == 2
    assert before == 0
    assert after == 3


def test_flush_if_due_uses_interval(db: Path, chain_a: list[CertInfo]) -> None:
    clock = FakeClock()
    Inventory.open(db).close()
    inventory = Inventory(connect(db), db, commit_interval=2.0, clock=clock)
    scan = inventory.begin_scan({})
    inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))

    clock.now += 1.9
    inventory.flush_if_due()
    early = count(db, "observations")
    clock.now += 0.1
    inventory.flush_if_due()
    due = count(db, "observations")
    inventory.close()

    assert early == 0
    assert due == 1


def test_background_flush_commits_idle_batch(db: Path, chain_a: list[CertInfo]) -> None:
    inventory = Inventory.open(db, batch_size=100, commit_interval=0.05)
    scan = inventory.begin_scan({})
    inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))

    # Wait for the thread's commit. The bound only keeps a failure from hanging.
    committed = 0
    for _ in range(600):
        committed = count(db, "observations")
        if committed:
            break
        threading.Event().wait(0.05)
    pending = inventory.pending_results
    inventory.close()

    assert committed == 1
    assert pending == 0


def test_begin_scan_committed_at_once(db: Path) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({"ports": [443], "path": Path("/x")}, "1/4")
        rows = (
            sqlite3.connect(db)
            .execute("SELECT id, arguments, ended, counts, shard FROM scans")
            .fetchall()
        )

    assert rows == [(scan, '{"path": "/x", "ports": [443]}', None, None, "1/4")]


def test_finish_scan_records_counts(db: Path) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        inventory.finish_scan(scan, {"open": 3, "closed": 1})
        scans = query.list_scans(inventory.connection)

    assert len(scans) == 1
    assert scans[0].counts == {"closed": 1, "open": 3}
    assert scans[0].ended is not None
    assert scans[0].ended >= scans[0].started


def test_finish_unknown_scan_rejected(db: Path) -> None:
    with (
        Inventory.open(db) as inventory,
        pytest.raises(ValueError, match="no scan with id 42"),
    ):
        inventory.finish_scan(42, {})


def test_failed_result_leaves_no_rows(db: Path, chain_a: list[CertInfo]) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({})
        with pytest.raises(InventoryError, match="FOREIGN KEY"):
            inventory.add_result(999, tls_result("198.18.0.9", 443, chain_a, T0))
        inventory.add_result(scan, tls_result("198.18.0.2", 443, chain_a, T0))

    assert count(db, "observations") == 1
    assert count(db, "endpoints") == 1
    with sqlite3.connect(db) as other:
        addresses = other.execute("SELECT address FROM endpoints").fetchall()
    assert addresses == [("198.18.0.2",)]


def test_open_corrupt_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "inventory.sqlite"
    path.write_bytes(b"this is not an SQLite database" * 100)

    with pytest.raises(InventoryError) as caught:
        Inventory.open(path)

    assert "file is not a database" in caught.value.message
    assert str(path) in caught.value.message
    assert caught.value.hint is not None
    assert "corrupt" in caught.value.hint


def test_open_newer_schema_rejected(tmp_path: Path) -> None:
    path = tmp_path / "inventory.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(InventoryError, match="newer than this pktscan") as caught:
        Inventory.open(path)

    assert caught.value.hint == "upgrade pktscan, or pass another --db path"


def test_open_under_a_file_rejected(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    with pytest.raises(InventoryError, match="failed to create directory"):
        Inventory.open(blocker / "inventory.sqlite")


def test_default_path_uses_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    assert default_inventory_path() == tmp_path / "xdg/pktscan/inventory.sqlite"


@pytest.mark.parametrize("value", [None, "", "relative/dir"])
def test_default_path_falls_back_to_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", value)

    expected = tmp_path / ".local/share/pktscan/inventory.sqlite"
    assert default_inventory_path() == expected


# --- queries ----------------------------------------------------------------


@pytest.fixture
def two_scans(
    db: Path,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> Path:
    """Two scans: .3 changes from chain A to B, .4 disappears, .5 appears."""
    with Inventory.open(db) as inventory:
        first = inventory.begin_scan({"n": 1})
        inventory.add_result(first, tls_result("198.18.0.2", 443, chain_a, T0))
        inventory.add_result(first, tls_result("198.18.0.3", 443, chain_a, T0))
        inventory.add_result(first, tls_result("198.18.0.4", 8443, chain_b, T0))
        inventory.finish_scan(first, {"open": 3})
        second = inventory.begin_scan({"n": 2})
        later = T0 + hours(1)
        inventory.add_result(second, tls_result("198.18.0.2", 443, chain_a, later))
        inventory.add_result(second, tls_result("198.18.0.3", 443, chain_b, later))
        inventory.add_result(second, closed_result("198.18.0.4", 8443, later))
        old = tls_result("198.18.1.5", 443, expired_chain, later, name="old.example")
        inventory.add_result(second, old)
        inventory.finish_scan(second, {"open": 3, "closed": 1})
    return db


def served_endpoints(db: Path, filters: Filters) -> list[tuple[str, int, str]]:
    with Inventory.open(db) as inventory:
        rows = query.served(inventory.connection, filters)
    return [(row.address, row.port, row.sha256) for row in rows]


def test_served_latest_chain_per_endpoint(
    two_scans: Path,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> None:
    assert served_endpoints(two_scans, Filters()) == [
        ("198.18.0.2", 443, chain_a[0].sha256),
        ("198.18.0.3", 443, chain_b[0].sha256),
        ("198.18.0.4", 8443, chain_b[0].sha256),
        ("198.18.1.5", 443, expired_chain[0].sha256),
    ]


def test_served_filters(
    two_scans: Path, chain_a: list[CertInfo], chain_b: list[CertInfo]
) -> None:
    subnet = ipaddress.ip_network("198.18.1.0/24")
    cutoff = "2026-06-01T00:00:00Z"

    by_subnet = served_endpoints(two_scans, Filters(subnet=subnet))
    by_port = served_endpoints(two_scans, Filters(port=8443))
    by_issuer = served_endpoints(two_scans, Filters(issuer="ca one"))
    by_expiry = served_endpoints(two_scans, Filters(expires_before=cutoff))
    by_finding = served_endpoints(two_scans, Filters(finding="expired"))
    by_scan = served_endpoints(two_scans, Filters(scan=1))

    assert [row[0] for row in by_subnet] == ["198.18.1.5"]
    assert [row[:2] for row in by_port] == [("198.18.0.4", 8443)]
    assert [row[0] for row in by_issuer] == ["198.18.0.2"]
    assert [row[0] for row in by_expiry] == ["198.18.1.5"]
    assert [row[0] for row in by_finding] == ["198.18.1.5"]
    assert by_scan == [
        ("198.18.0.2", 443, chain_a[0].sha256),
        ("198.18.0.3", 443, chain_a[0].sha256),
        ("198.18.0.4", 8443, chain_b[0].sha256),
    ]


def test_findings_query_latest(two_scans: Path, expired_chain: list[CertInfo]) -> None:
    with Inventory.open(two_scans) as inventory:
        rows = query.findings(inventory.connection, Filters(finding="expired"))

    assert [(row.address, row.kind, row.sha256) for row in rows] == [
        ("198.18.1.5", "expired", expired_chain[0].sha256)
    ]
    assert rows[0].message == (
        "expired at 2026-05-01T00:00:00Z, 31 days before 2026-06-01T01:00:00Z"
    )


def test_findings_changed_and_gone(
    two_scans: Path, chain_a: list[CertInfo], chain_b: list[CertInfo]
) -> None:
    with Inventory.open(two_scans) as inventory:
        connection = inventory.connection
        changed = query.findings(connection, Filters(finding="certificate_changed"))
        gone = query.findings(connection, Filters(finding="endpoint_gone"))
        first_scan = query.findings(connection, Filters(scan=1))

    assert [(row.address, row.port, row.sha256) for row in changed] == [
        ("198.18.0.3", 443, chain_b[0].sha256)
    ]
    assert changed[0].message == (
        f"leaf changed since 2026-06-01T00:00:00.000Z: was {chain_a[0].sha256[:16]}..."
    )
    assert [(row.address, row.port, row.sha256) for row in gone] == [
        ("198.18.0.4", 8443, chain_b[0].sha256)
    ]
    assert gone[0].message == (
        "no certificate (port closed); last served at 2026-06-01T00:00:00.000Z"
    )
    assert gone[0].observed == "2026-06-01T01:00:00.000Z"
    history = {"certificate_changed", "endpoint_gone"}
    assert [row for row in first_scan if row.kind in history] == []


def test_shards_of_one_scan_not_compared(
    db: Path, chain_a: list[CertInfo], chain_b: list[CertInfo]
) -> None:
    with Inventory.open(db) as inventory:
        scan = inventory.begin_scan({"n": 1}, shard="1/2")
        inventory.add_result(scan, tls_result("198.18.0.3", 443, chain_a, T0))
        inventory.add_result(scan, tls_result("198.18.0.3", 443, chain_b, T0 + 1))
        inventory.flush()
        rows = inventory.connection.execute("SELECT kind FROM findings").fetchall()

    assert ("certificate_changed",) not in rows


def test_diff_scans(
    two_scans: Path,
    chain_a: list[CertInfo],
    chain_b: list[CertInfo],
    expired_chain: list[CertInfo],
) -> None:
    with Inventory.open(two_scans) as inventory:
        changes = query.diff_scans(inventory.connection, 1, 2)

    assert [c.to_json() for c in changes] == [
        {
            "address": "198.18.0.3",
            "port": 443,
            "change": "changed",
            "before": chain_a[0].sha256,
            "after": chain_b[0].sha256,
        },
        {
            "address": "198.18.0.4",
            "port": 8443,
            "change": "removed",
            "before": chain_b[0].sha256,
            "after": None,
        },
        {
            "address": "198.18.1.5",
            "port": 443,
            "change": "added",
            "before": None,
            "after": expired_chain[0].sha256,
        },
    ]


def test_diff_unknown_scan_rejected(two_scans: Path) -> None:
    with (
        Inventory.open(two_scans) as inventory,
        pytest.raises(ValueError, match="scan 7 not found"),
    ):
        query.diff_scans(inventory.connection, 1, 7)


def test_find_certificate_by_prefix(two_scans: Path, chain_a: list[CertInfo]) -> None:
    sha256 = chain_a[0].sha256
    with Inventory.open(two_scans) as inventory:
        by_prefix = query.find_certificate(inventory.connection, sha256[:12].upper())
        with pytest.raises(ValueError, match="invalid SHA-256 prefix 'xyz'"):
            query.find_certificate(inventory.connection, "xyz")

    assert [record.sha256 for record in by_prefix] == [sha256]


def test_disk_full_keeps_committed_results(db: Path, chain_a: list[CertInfo]) -> None:
    inventory = Inventory.open(db, batch_size=10, background_flush=False)
    scan = inventory.begin_scan({})
    for index in range(10):
        address = f"198.18.0.{index + 1}"
        inventory.add_result(scan, tls_result(address, 443, chain_a, T0))
    pages = inventory.connection.execute("PRAGMA page_count").fetchone()[0]
    # max_page_count makes SQLite report SQLITE_FULL like a full disk.
    inventory.connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    # SQLite may fail only the statement or roll back the whole batch on
    # SQLITE_FULL. In the second case the error names the results lost.
    added = 0
    with pytest.raises(InventoryError, match="database or disk is full") as caught:
        for index in range(10, 500):
            address = f"198.18.{index // 250}.{index % 250 + 1}"
            inventory.add_result(scan, tls_result(address, 443, chain_a, T0))
            added += 1
    rolled_back = re.search(r"rolled back the (\d+) uncommitted", caught.value.message)
    lost = int(rolled_back.group(1)) if rolled_back else 0
    inventory.connection.execute("PRAGMA max_page_count = 1073741823")
    inventory.add_result(scan, tls_result("198.18.9.9", 443, chain_a, T0))
    inventory.close()

    with sqlite3.connect(db) as other:
        integrity = other.execute("PRAGMA integrity_check").fetchall()
        stored = other.execute("SELECT count(*) FROM observations").fetchone()[0]
        orphans = other.execute(
            "SELECT count(*) FROM endpoints AS e WHERE NOT EXISTS"
            " (SELECT 1 FROM observations AS o WHERE o.endpoint = e.id)"
        ).fetchone()[0]
    assert integrity == [("ok",)]
    # The first batch of 10, the results of the failed batch that were not
    # rolled back, and the result added after space came back.
    assert stored == 10 + added - lost + 1
    assert orphans == 0
