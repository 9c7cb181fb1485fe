"""Merging one inventory into another, for scans split across machines.

Each machine of a sharded scan writes its own inventory; `merge_inventory`
copies the scans of one file into another in a single transaction. Endpoints,
certificates and chains are merged by their natural keys (address and port,
SHA-256, the ordered SHA-256 list), certificates keep the earliest
first_seen and the latest last_seen, and scans, observations and findings
get new ids. A scan whose start time, arguments and shard are already in
the target is skipped, so merging the same file twice adds nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pktscan.store import schema
from pktscan.store.sqlite import Inventory, InventoryError

__all__ = ["MergeCounts", "merge_inventory"]


@dataclass(frozen=True, slots=True)
class MergeCounts:
    """Rows added to the target by a merge."""

    scans: int
    observations: int
    certificates: int

    def to_json(self) -> dict[str, int]:
        return {
            "scans": self.scans,
            "observations": self.observations,
            "certificates": self.certificates,
        }


# Scans of the source that the target does not have yet, oldest first.
_NEW_SCANS = """
    SELECT id, arguments, started, ended, counts, shard FROM source.scans AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM main.scans AS m
        WHERE m.started = s.started AND m.arguments = s.arguments
          AND m.shard IS s.shard)
    ORDER BY id
"""

_MERGE_STATEMENTS = (
    """
    INSERT INTO main.endpoints (address, port, name, ptr)
    SELECT address, port, name, ptr FROM source.endpoints WHERE true
    ON CONFLICT (address, port) DO UPDATE SET
        name = coalesce(excluded.name, name), ptr = coalesce(excluded.ptr, ptr)
    """,
    """
    CREATE TEMP TABLE endpoint_map AS
    SELECT s.id AS old, m.id AS new FROM source.endpoints AS s
    JOIN main.endpoints AS m ON m.address = s.address AND m.port = s.port
    """,
    """
    INSERT INTO main.certificates
    SELECT * FROM source.certificates WHERE true
    ON CONFLICT (sha256) DO UPDATE SET
        first_seen = min(first_seen, excluded.first_seen),
        last_seen = max(last_seen, excluded.last_seen)
    """,
    """
    INSERT INTO main.chains (certificates)
    SELECT certificates FROM source.chains WHERE true
    ON CONFLICT (certificates) DO NOTHING
    """,
    """
    CREATE TEMP TABLE chain_map AS
    SELECT s.id AS old, m.id AS new FROM source.chains AS s
    JOIN main.chains AS m ON m.certificates = s.certificates
    """,
    """
    INSERT OR IGNORE INTO main.chain_certificates (chain, position, certificate)
    SELECT chain_map.new, cc.position, cc.certificate
    FROM source.chain_certificates AS cc
    JOIN chain_map ON chain_map.old = cc.chain
    """,
    """
    INSERT INTO main.observations (id, scan, endpoint, chain, state, attempt_set,
        version, cipher, http_server, time, result)
    SELECT :base + o.id, scan_map.new, endpoint_map.new, chain_map.new, o.state,
        o.attempt_set, o.version, o.cipher, o.http_server, o.time, o.result
    FROM source.observations AS o
    JOIN scan_map ON scan_map.old = o.scan
    JOIN endpoint_map ON endpoint_map.old = o.endpoint
    LEFT JOIN chain_map ON chain_map.old = o.chain
    ORDER BY o.id
    """,
    """
    INSERT INTO main.findings (observation, certificate, kind, severity, message)
    SELECT :base + f.observation, f.certificate, f.kind, f.severity, f.message
    FROM source.findings AS f
    JOIN source.observations AS o ON o.id = f.observation
    JOIN scan_map ON scan_map.old = o.scan
    ORDER BY f.id
    """,
)


def merge_inventory(target: Inventory, source_path: Path) -> MergeCounts:
    """Copy the scans of the inventory at `source_path` into `target`.

    The source is migrated to the current schema first if it is older.
    Everything is copied in one transaction, so a failure adds nothing.

    Raises:
        InventoryError: the source is missing, not an inventory, or SQLite
            failed during the copy.
    """
    source_path = Path(source_path)
    if not source_path.is_file():
        raise InventoryError(
            f"inventory {source_path} not found", hint="give an existing file"
        )
    if source_path.resolve() == target.path.resolve():
        raise InventoryError(
            f"invalid merge: inventory {source_path} is the target itself",
            hint="give another inventory file",
        )
    Inventory.open(source_path, background_flush=False).close()
    with target.lock:
        target.flush()
        connection = target.connection
        try:
            connection.execute("ATTACH DATABASE ? AS source", (str(source_path),))
        except sqlite3.Error as exc:
            raise InventoryError(
                f"failed to attach inventory {source_path}: {exc}",
                hint="check that the file is a readable pktscan inventory",
            ) from exc
        try:
            return _copy(connection, source_path)
        finally:
            connection.execute("DETACH DATABASE source")


def _copy(connection: sqlite3.Connection, source_path: Path) -> MergeCounts:
    version = connection.execute("PRAGMA source.user_version").fetchone()[0]
    if version != schema.SCHEMA_VERSION:
        raise InventoryError(
            f"inventory {source_path} has schema version {version},"
            f" expected {schema.SCHEMA_VERSION}",
            hint="upgrade pktscan on the machine that reads both files",
        )
    connection.execute("BEGIN IMMEDIATE")
    try:
        counts = _copy_rows(connection)
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        connection.execute("ROLLBACK")
        raise InventoryError(
            f"failed to merge inventory {source_path}: {exc}",
            hint="the target is unchanged; check both files with"
            " PRAGMA integrity_check",
        ) from exc
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    finally:
        for table in ("scan_map", "endpoint_map", "chain_map"):
            connection.execute(f"DROP TABLE IF EXISTS temp.{table}")
    return counts


def _copy_rows(connection: sqlite3.Connection) -> MergeCounts:
    certificates_before = _count(connection, "main.certificates")
    observations_before = _count(connection, "main.observations")
    connection.execute("CREATE TEMP TABLE scan_map (old INTEGER, new INTEGER)")
    new_scans = connection.execute(_NEW_SCANS).fetchall()
    for old_id, *values in new_scans:
        cursor = connection.execute(
            "INSERT INTO main.scans (arguments, started, ended, counts, shard)"
            " VALUES (?, ?, ?, ?, ?)",
            values,
        )
        connection.execute(
            "INSERT INTO scan_map VALUES (?, ?)", (old_id, cursor.lastrowid)
        )
    # Observation ids are offset past the target's highest id, so findings
    # can follow their observation without a mapping table.
    base_row = connection.execute("SELECT max(id) FROM main.observations")
    base = base_row.fetchone()[0] or 0
    for statement in _MERGE_STATEMENTS:
        connection.execute(statement, {"base": base})
    return MergeCounts(
        scans=len(new_scans),
        observations=_count(connection, "main.observations") - observations_before,
        certificates=_count(connection, "main.certificates") - certificates_before,
    )


def _count(connection: sqlite3.Connection, table: str) -> int:
    return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
