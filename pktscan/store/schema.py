"""The inventory's SQLite schema and its numbered migrations.

The schema version is SQLite's ``PRAGMA user_version``: 0 for an empty
file, then the number of migrations applied. Migration N (counting from 1)
is ``MIGRATIONS[N - 1]``. Each one runs in its own ``BEGIN IMMEDIATE``
transaction together with the version bump, so a migration interrupted at
any point leaves the file at the previous version. Append new migrations
and never edit a released one.

Tables of version 1::

    scans               one row per scan run (or per shard of a run)
    endpoints           one row per address and port ever probed
    certificates        one row per distinct DER, keyed by its SHA-256
    chains              one row per distinct ordered list of certificates
    chain_certificates  the certificates of each chain, by position
    observations        one row per PortResult: scan, endpoint, chain
    findings            problems found in an observation's chain

Version 2 adds ``scans.run``, a name that the processes running the shards
of one scan share, so that they all write into one scan row.

Times are ISO 8601 UTC text that sorts in time order: certificate validity
to the second (``2026-01-01T00:00:00Z``), scan and observation times to the
millisecond (``2026-01-01T00:00:00.000Z``).
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

_VERSION_1 = (
    """
    CREATE TABLE scans (
        id INTEGER PRIMARY KEY,
        arguments TEXT NOT NULL,
        started TEXT NOT NULL,
        ended TEXT,
        counts TEXT,
        shard TEXT
    )
    """,
    """
    CREATE TABLE endpoints (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL,
        port INTEGER NOT NULL,
        name TEXT,
        ptr TEXT,
        UNIQUE (address, port)
    )
    """,
    """
    CREATE TABLE certificates (
        sha256 TEXT PRIMARY KEY,
        der BLOB NOT NULL,
        subject TEXT,
        issuer TEXT,
        not_before TEXT,
        not_after TEXT,
        serial TEXT,
        key_type TEXT,
        key_bits INTEGER,
        signature_algorithm TEXT,
        san TEXT NOT NULL,
        error TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE chains (
        id INTEGER PRIMARY KEY,
        certificates TEXT NOT NULL UNIQUE
    )
    """,
    """
    CREATE TABLE chain_certificates (
        chain INTEGER NOT NULL REFERENCES chains (id),
        position INTEGER NOT NULL,
        certificate TEXT NOT NULL REFERENCES certificates (sha256),
        PRIMARY KEY (chain, position)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE observations (
        id INTEGER PRIMARY KEY,
        scan INTEGER NOT NULL REFERENCES scans (id),
        endpoint INTEGER NOT NULL REFERENCES endpoints (id),
        chain INTEGER REFERENCES chains (id),
        state TEXT NOT NULL,
        attempt_set INTEGER,
        version TEXT,
        cipher TEXT,
        http_server TEXT,
        time TEXT NOT NULL,
        result TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE findings (
        id INTEGER PRIMARY KEY,
        observation INTEGER NOT NULL REFERENCES observations (id),
        certificate TEXT NOT NULL REFERENCES certificates (sha256),
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        message TEXT NOT NULL
    )
    """,
    "CREATE INDEX observations_scan ON observations (scan)",
    "CREATE INDEX observations_endpoint_time ON observations (endpoint, time)",
    "CREATE INDEX observations_chain ON observations (chain)",
    "CREATE INDEX chain_certificates_certificate ON chain_certificates (certificate)",
    "CREATE INDEX certificates_not_after ON certificates (not_after)",
    "CREATE INDEX findings_observation ON findings (observation)",
    "CREATE INDEX findings_certificate ON findings (certificate)",
    "CREATE INDEX findings_kind ON findings (kind)",
)

_VERSION_2 = (
    "ALTER TABLE scans ADD COLUMN run TEXT",
    "CREATE UNIQUE INDEX scans_run ON scans (run)",
)

#: The statements of each migration, in order; migration N is index N - 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_VERSION_1, _VERSION_2)

#: The version a fully migrated database has.
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(connection: sqlite3.Connection) -> int:
    """Read the database's schema version (``PRAGMA user_version``)."""
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(connection: sqlite3.Connection) -> int:
    """Apply the migrations the database lacks and return the new version.

    The connection must be in autocommit mode (``isolation_level=None``) with
    no transaction open. Two processes that migrate the same file at once
    are safe: ``BEGIN IMMEDIATE`` serialises them and each re-reads the
    version inside its transaction.

    Raises:
        ValueError: the database is newer than this code, or the connection
            has a transaction open.
        sqlite3.Error: SQLite failed; the failed migration is rolled back.
    """
    if connection.in_transaction:
        raise ValueError("migrate() needs a connection with no open transaction")
    version = schema_version(connection)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"schema version {version} is newer than this pktscan's {SCHEMA_VERSION}"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        _apply_migration(connection, target)
    return schema_version(connection)


def _apply_migration(connection: sqlite3.Connection, target: int) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have applied it since this one read the version.
        if schema_version(connection) < target:
            for statement in MIGRATIONS[target - 1]:
                connection.execute(statement)
            # PRAGMA takes no parameters, and target is an int from this module.
            connection.execute(f"PRAGMA user_version = {target}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
