"""The certificate inventory, an SQLite database that scans append to.

Writes are batched: `Inventory.add_result` opens a transaction and commits
it after `batch_size` results, or once `commit_interval` seconds have passed
since the last commit. The time check runs at each `add_result` and, in an
inventory from `Inventory.open`, in a background thread every
`commit_interval` seconds, so a result waits at most about two intervals
for its commit even when no further result arrives.

The database runs in WAL mode, so a scanner killed at any moment leaves a
consistent file that contains every result committed before the kill and none
of the uncommitted batch. Each result is written inside its own savepoint,
so a result that fails to store leaves none of its rows behind.

The tables are described in `pktscan.store.schema`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pktscan import certs
from pktscan.errors import LocalError
from pktscan.results import CertInfo, PortResult
from pktscan.store import schema
from pktscan.store.sql import SqlConnection

__all__ = [
    "Inventory",
    "InventoryError",
    "default_inventory_path",
    "format_epoch",
    "insert_result",
    "insert_scan",
    "update_scan_end",
    "upsert_in_key_order",
]

#: Results per transaction when the caller does not choose.
DEFAULT_BATCH_SIZE = 500

#: Maximum age, in seconds, of a pending batch before it is committed.
DEFAULT_COMMIT_INTERVAL = 1.0

#: Milliseconds a writer waits for another process's lock before failing.
BUSY_TIMEOUT_MS = 30_000

# Milliseconds between attempts to switch a locked file to WAL mode.
_WAL_RETRY_MS = 20


class InventoryError(LocalError):
    """The inventory database cannot be opened, read or written."""


def default_inventory_path() -> Path:
    """Return the default inventory file in the user's data directory.

    That is ``$XDG_DATA_HOME/pktscan/inventory.sqlite``, or
    ``~/.local/share/pktscan/inventory.sqlite`` when ``XDG_DATA_HOME`` is
    unset, empty or relative (the XDG Base Directory specification treats a
    relative value as invalid).
    """
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else None
    if base is None:
        base = Path.home() / ".local" / "share"
    return base / "pktscan" / "inventory.sqlite"


def format_epoch(seconds: float) -> str:
    """Format a Unix time as ISO 8601 UTC to the millisecond, ``...Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def connect(path: Path) -> sqlite3.Connection:
    """Open an inventory file in autocommit mode, WAL and foreign keys on.

    Raises:
        InventoryError: the file is not an SQLite database or cannot be opened.
    """
    try:
        # Inventory serialises all use of the connection with its lock, so
        # the background flush thread may share it.
        connection = sqlite3.connect(
            path,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise _error("failed to open inventory", path, exc) from exc
    try:
        _enable_wal(connection)
        # NORMAL keeps every commit across a process crash in WAL mode and
        # can lose only the last commits on a power loss.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        connection.close()
        raise _error("failed to open inventory", path, exc) from exc
    return connection


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to WAL mode, retrying while another process locks it.

    Two processes that open a new file together can get "database is
    locked" from this PRAGMA without the busy timeout applying (seen with
    SQLite 3.40.1), so the switch is retried for up to `BUSY_TIMEOUT_MS`.
    """
    attempts = max(1, BUSY_TIMEOUT_MS // _WAL_RETRY_MS)
    for attempt in range(attempts):
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(_WAL_RETRY_MS / 1000)


def _error(action: str, path: Path, exc: sqlite3.Error) -> InventoryError:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        hint = "the file is corrupt or not an inventory: pass another --db path"
    elif isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        hint = "another process holds the database locked; retry when it ends"
    else:
        hint = "check the path, its permissions and the free disk space"
    return InventoryError(f"{action} {path}: {exc}", hint=hint)


class Inventory:
    """A connection to the inventory that records scans and their results.

    The methods are thread-safe: a lock serialises them. Several processes
    (shards of one scan) may write the same file at once: SQLite serialises their
    transactions and a writer waits up to `BUSY_TIMEOUT_MS` for the lock.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1: {batch_size}")
        if commit_interval < 0:
            raise ValueError(f"commit_interval must be >= 0: {commit_interval}")
        self.path = path
        self._connection = connection
        self._batch_size = batch_size
        self._commit_interval = commit_interval
        self._clock = clock
        self._pending = 0
        self._last_commit = clock()
        self._lock = threading.RLock()
        self._stop_flusher = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_error: InventoryError | None = None

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
        background_flush: bool = True,
    ) -> Inventory:
        """Open or create the inventory at `path` and migrate its schema.

        Args:
            path: the database file. Missing parent directories are created.
            batch_size: results per transaction.
            commit_interval: seconds after which the pending batch is
                committed even when it is smaller than `batch_size`.
            background_flush: start the thread that commits a pending batch
                once it is `commit_interval` seconds old.

        Raises:
            InventoryError: the file cannot be created, is not an SQLite
                database, or has a schema newer than this pktscan.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InventoryError(
                f"failed to create directory {path.parent}: {exc.strerror}",
                hint="pass a writable --db path",
            ) from exc
        connection = connect(path)
        try:
            schema.migrate(connection)
        except ValueError as exc:
            connection.close()
            raise InventoryError(
                f"invalid inventory {path}: {exc}",
                hint="upgrade pktscan, or pass another --db path",
            ) from exc
        except sqlite3.Error as exc:
            connection.close()
            raise _error("failed to migrate inventory", path, exc) from exc
        inventory = cls(
            connection, path, batch_size=batch_size, commit_interval=commit_interval
        )
        if background_flush and commit_interval > 0:
            inventory.start_background_flush()
        return inventory

    def start_background_flush(self) -> None:
        """Start a daemon thread that runs `flush_if_due` every interval.

        An error in that thread is raised by the next `add_result`, `flush`,
        `finish_scan` or `close`.
        """
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._run_flusher, name="pktscan-inventory-flush", daemon=True
            )
            self._flusher.start()

    def _run_flusher(self) -> None:
        # Event.wait returns True when close() sets the event, ending the loop.
        while not self._stop_flusher.wait(self._commit_interval):
            try:
                self.flush_if_due()
            except InventoryError as exc:
                self._flusher_error = exc
                return

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection, for the read queries of `pktscan.store.query`."""
        return self._connection

    @property
    def lock(self) -> threading.RLock:
        """The lock to hold while using `connection` directly."""
        return self._lock

    @property
    def pending_results(self) -> int:
        """Results added since the last commit."""
        return self._pending

    def begin_scan(
        self,
        arguments: dict[str, object],
        shard: str | None = None,
        *,
        run: str | None = None,
    ) -> int:
        """Record the start of a scan and commit it at once.

        Args:
            arguments: the scan's options, stored as JSON. Values that JSON
                cannot represent are stored as their ``str()``.
            shard: which part of a shared scan this process runs, as ``i/n``.
            run: a name that every process of one sharded scan passes, so
                that they all get the same scan id. Without it, each call
                records a new scan.

        Returns:
            The scan id to pass to `add_result` and `finish_scan`.
        """
        with self._lock:
            self.flush()
            with self._write("begin scan"):
                return insert_scan(self._connection, arguments, shard, run)

    def add_result(self, scan_id: int, result: PortResult) -> None:
        """Store one result, committing the batch when it is full or old.

        The endpoint, the certificates and their chain are merged with the rows
        already stored. Findings are computed for the chain at the
        result's time, with `result.name` as the name to match.
        """
        with self._lock:
            self._raise_flusher_error()
            self._add_result(scan_id, result)

    def _add_result(self, scan_id: int, result: PortResult) -> None:
        if not self._connection.in_transaction:
            self._execute("BEGIN IMMEDIATE", "begin batch")
        try:
            with self._write(f"store result {result.ip}:{result.port}"):
                self._connection.execute("SAVEPOINT result")
                try:
                    insert_result(self._connection, scan_id, result)
                except BaseException:
                    # Errors such as SQLITE_FULL roll back the whole
                    # transaction, and then no savepoint is left to undo.
                    if self._connection.in_transaction:
                        self._connection.execute("ROLLBACK TO result")
                        self._connection.execute("RELEASE result")
                    raise
                self._connection.execute("RELEASE result")
        except InventoryError as exc:
            if self._pending and not self._connection.in_transaction:
                lost, self._pending = self._pending, 0
                raise InventoryError(
                    f"{exc.message}; SQLite rolled back the {lost} uncommitted"
                    " results before it",
                    hint=exc.hint,
                ) from exc
            raise
        self._pending += 1
        age = self._clock() - self._last_commit
        if self._pending >= self._batch_size or age >= self._commit_interval:
            self.flush()

    def flush(self) -> None:
        """Commit the pending results now."""
        with self._lock:
            self._raise_flusher_error()
            if self._connection.in_transaction:
                self._execute("COMMIT", "commit batch")
            self._pending = 0
            self._last_commit = self._clock()

    def flush_if_due(self) -> None:
        """Commit the pending results if the last commit is an interval old."""
        with self._lock:
            age = self._clock() - self._last_commit
            if self._pending and age >= self._commit_interval:
                self.flush()

    def _raise_flusher_error(self) -> None:
        if self._flusher_error is not None:
            error, self._flusher_error = self._flusher_error, None
            raise error

    def finish_scan(self, scan_id: int, counts: dict[str, int]) -> None:
        """Record the end of a scan with its counts, and commit everything.

        A scan shared by several processes (see `begin_scan`) adds `counts`
        to those that the others recorded.

        Raises:
            ValueError: no scan has this id.
        """
        with self._lock:
            self.flush()
            with self._write("finish scan"):
                self._connection.execute("BEGIN IMMEDIATE")
                try:
                    found = update_scan_end(self._connection, scan_id, counts)
                    self._connection.execute("COMMIT")
                except BaseException:
                    if self._connection.in_transaction:
                        self._connection.execute("ROLLBACK")
                    raise
        if not found:
            raise ValueError(f"no scan with id {scan_id} in {self.path}")

    def close(self) -> None:
        """Stop the background thread, commit the pending results and close."""
        self._stop_flusher.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._lock:
            try:
                self.flush()
            finally:
                self._connection.close()

    def __enter__(self) -> Inventory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _execute(self, statement: str, action: str) -> None:
        with self._write(action):
            self._connection.execute(statement)

    def _write(self, action: str) -> _SqliteErrors:
        return _SqliteErrors(action, self.path)


class _SqliteErrors:
    """Context manager that turns `sqlite3.Error` into `InventoryError`."""

    def __init__(self, action: str, path: Path) -> None:
        self._action = action
        self._path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise _error(f"failed to {self._action} in", self._path, exc) from exc


def insert_scan(
    connection: SqlConnection,
    arguments: dict[str, object],
    shard: str | None,
    run: str | None,
) -> int:
    """Insert a scan row, or join the row of `run`, and return its id.

    Shards that join one row keep the earliest start time, and their shard
    texts are joined with commas.
    """
    text = json.dumps(arguments, sort_keys=True, default=str)
    row = connection.execute(
        "INSERT INTO scans (arguments, started, shard, run) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (run) DO UPDATE SET"
        " started = CASE WHEN excluded.started < scans.started"
        " THEN excluded.started ELSE scans.started END,"
        " shard = CASE WHEN scans.shard IS NULL THEN excluded.shard"
        " WHEN excluded.shard IS NULL THEN scans.shard"
        " ELSE scans.shard || ',' || excluded.shard END"
        " RETURNING id",
        (text, format_epoch(time.time()), shard, run),
    ).fetchone()
    return int(row[0])


def update_scan_end(
    connection: SqlConnection,
    scan_id: int,
    counts: dict[str, int],
    lock_clause: str = "",
) -> bool:
    """Record a scan's end time and counts; return False if it is not found.

    Counts of a scan with a run name are added to those stored, because
    each shard finishes on its own. Call it inside a transaction that keeps
    other writers from the row: SQLite's ``BEGIN IMMEDIATE``, or
    PostgreSQL's with `lock_clause` ``" FOR UPDATE"``.
    """
    row = connection.execute(
        "SELECT counts, run FROM scans WHERE id = ?" + lock_clause, (scan_id,)
    ).fetchone()
    if row is None:
        return False
    merged = dict(counts)
    if row[1] is not None and row[0] is not None:
        for key, value in json.loads(row[0]).items():
            merged[key] = merged.get(key, 0) + int(value)
    connection.execute(
        "UPDATE scans SET ended = ?, counts = ? WHERE id = ?",
        (format_epoch(time.time()), json.dumps(merged, sort_keys=True), scan_id),
    )
    return True


def insert_result(connection: SqlConnection, scan_id: int, result: PortResult) -> None:
    """Insert one result with its endpoint, chain and findings."""
    seen_epoch = result.time if result.time is not None else time.time()
    seen = format_epoch(seen_epoch)
    endpoint_id = _upsert_endpoint(connection, result)
    previous = previous_leaf(connection, endpoint_id, scan_id)
    tls = result.tls
    chain: Sequence[CertInfo] = tls.chain if tls is not None else ()
    chain_id = _upsert_chain(connection, chain, seen) if chain else None
    observation_id = _insert_observation(
        connection, scan_id, endpoint_id, chain_id, result, seen
    )
    for finding in result_findings(result, seen_epoch, previous):
        connection.execute(
            "INSERT INTO findings (observation, certificate, kind, severity, message)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                observation_id,
                finding.sha256,
                str(finding.kind),
                str(finding.severity),
                finding.message,
            ),
        )


def upsert_in_key_order(
    connection: SqlConnection, results: Sequence[PortResult]
) -> None:
    """Upsert the certificates and chains of `results`, sorted by their keys.

    PostgreSQL locks each upserted row until the transaction ends. Batches
    that upsert shared certificates in different orders can deadlock, so
    each batch takes the locks in one global order before its results are
    written.
    """
    earliest: dict[str, tuple[CertInfo, float]] = {}
    chains: dict[str, tuple[Sequence[CertInfo], float]] = {}
    for result in results:
        if result.tls is None or not result.tls.chain:
            continue
        seen = result.time if result.time is not None else time.time()
        for cert in result.tls.chain:
            if cert.sha256 not in earliest or seen < earliest[cert.sha256][1]:
                earliest[cert.sha256] = (cert, seen)
        key = ",".join(cert.sha256 for cert in result.tls.chain)
        chains.setdefault(key, (result.tls.chain, seen))
    for sha256 in sorted(earliest):
        cert, seen = earliest[sha256]
        upsert_certificate(connection, cert, format_epoch(seen))
    for key in sorted(chains):
        chain, seen = chains[key]
        _upsert_chain(connection, chain, format_epoch(seen))


def previous_leaf(
    connection: SqlConnection, endpoint_id: int, scan_id: int
) -> tuple[str, str] | None:
    """Return the leaf SHA-256 and time of the endpoint's latest chain.

    Only observations of other scans count, so the shards of one scan do
    not compare with each other.
    """
    row = connection.execute(
        "SELECT cc.certificate, o.time FROM observations AS o"
        " JOIN chain_certificates AS cc ON cc.chain = o.chain AND cc.position = 0"
        " WHERE o.endpoint = ? AND o.scan != ? AND o.chain IS NOT NULL"
        " ORDER BY o.time DESC, o.id DESC LIMIT 1",
        (endpoint_id, scan_id),
    ).fetchone()
    return (str(row[0]), str(row[1])) if row is not None else None


def result_findings(
    result: PortResult, seen_epoch: float, previous: tuple[str, str] | None
) -> list[certs.Finding]:
    """Compute the findings of one result, given the endpoint's previous leaf.

    The certificate checks run at the result's time, with `result.name`,
    or `result.ptr` when the target was an address, as the name to match.
    """
    tls = result.tls
    chain: Sequence[CertInfo] = tls.chain if tls is not None else ()
    now = datetime.fromtimestamp(seen_epoch, UTC)
    found = certs.find_all(
        chain,
        now,
        name=result.name,
        ptr=result.ptr,
        version=tls.version if tls is not None else None,
        key_exchange=tls.key_exchange if tls is not None else None,
    )
    previous_sha256, previous_seen = previous or (None, "")
    if chain:
        found += certs.check_change(previous_sha256, chain[0].sha256, previous_seen)
    else:
        found += certs.check_gone(previous_sha256, result.state, previous_seen)
    return found


def _upsert_endpoint(connection: SqlConnection, result: PortResult) -> int:
    row = connection.execute(
        "INSERT INTO endpoints (address, port, name, ptr) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (address, port) DO UPDATE SET"
        " name = coalesce(excluded.name, endpoints.name),"
        " ptr = coalesce(excluded.ptr, endpoints.ptr)"
        " RETURNING id",
        (result.ip, result.port, result.name, result.ptr),
    ).fetchone()
    return int(row[0])


def _upsert_chain(
    connection: SqlConnection, chain: Sequence[CertInfo], seen: str
) -> int:
    for cert in chain:
        upsert_certificate(connection, cert, seen)
    key = ",".join(cert.sha256 for cert in chain)
    row = connection.execute(
        "INSERT INTO chains (certificates) VALUES (?)"
        " ON CONFLICT (certificates) DO UPDATE SET certificates = excluded.certificates"
        " RETURNING id",
        (key,),
    ).fetchone()
    chain_id = int(row[0])
    connection.executemany(
        "INSERT INTO chain_certificates (chain, position, certificate)"
        " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(chain_id, position, cert.sha256) for position, cert in enumerate(chain)],
    )
    return chain_id


def upsert_certificate(connection: SqlConnection, cert: CertInfo, seen: str) -> None:
    connection.execute(
        "INSERT INTO certificates (sha256, der, subject, issuer, not_before,"
        " not_after, serial, key_type, key_bits, signature_algorithm, san, error,"
        " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sha256) DO UPDATE SET"
        " first_seen = CASE WHEN excluded.first_seen < certificates.first_seen"
        " THEN excluded.first_seen ELSE certificates.first_seen END,"
        " last_seen = CASE WHEN excluded.last_seen > certificates.last_seen"
        " THEN excluded.last_seen ELSE certificates.last_seen END",
        (
            cert.sha256,
            cert.der,
            cert.subject,
            cert.issuer,
            cert.not_before,
            cert.not_after,
            cert.serial,
            cert.key_type,
            cert.key_bits,
            cert.signature_algorithm,
            json.dumps(list(cert.san)),
            cert.error,
            seen,
            seen,
        ),
    )


def _insert_observation(
    connection: SqlConnection,
    scan_id: int,
    endpoint_id: int,
    chain_id: int | None,
    result: PortResult,
    seen: str,
) -> int:
    tls = result.tls
    row = connection.execute(
        "INSERT INTO observations (scan, endpoint, chain, state, attempt_set,"
        " version, cipher, http_server, time, result)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            scan_id,
            endpoint_id,
            chain_id,
            result.state,
            tls.set_number if tls is not None else None,
            tls.version if tls is not None else None,
            tls.cipher if tls is not None else None,
            result.http.server if result.http is not None else None,
            seen,
            json.dumps(result.to_json(), separators=(",", ":")),
        ),
    ).fetchone()
    return int(row[0])
