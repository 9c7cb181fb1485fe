"""Read queries over the inventory, for the ``pktscan inventory`` commands.

"Served" rows describe each endpoint's latest observation that carried a
certificate chain (latest by observation time, then by insertion order), or
the latest one within a given scan. Endpoints whose later observations have
no chain keep showing their last chain, with its time in `observed`.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from pktscan.certs import format_time
from pktscan.store.sql import SqlConnection

__all__ = [
    "CertificateRecord",
    "Change",
    "Filters",
    "FindingRow",
    "LeafRow",
    "Placement",
    "ScanRow",
    "ServedRow",
    "diff_scans",
    "find_certificate",
    "findings",
    "leaves",
    "list_scans",
    "placements",
    "served",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Filters:
    """Conditions that rows must all meet; None means no condition.

    Attributes:
        subnet: the endpoint address lies in this network.
        port: the endpoint port.
        issuer: case-insensitive substring of the leaf's issuer (ASCII case
            only, as SQLite's LIKE folds it).
        expires_before: the leaf's notAfter is at or before this ISO 8601
            UTC time, so expired leaves match too.
        finding: the observation has a finding of this kind.
        scan: only observations of this scan.
    """

    subnet: Network | None = None
    port: int | None = None
    issuer: str | None = None
    expires_before: str | None = None
    finding: str | None = None
    scan: int | None = None

    @staticmethod
    def expiry_cutoff(now: datetime, days: int) -> str:
        """Return the ISO 8601 time `days` days after `now`, for `expires_before`."""
        return format_time(now + timedelta(days=days))


@dataclass(frozen=True, slots=True)
class ServedRow:
    """An endpoint and the leaf certificate of its latest chain."""

    address: str
    port: int
    name: str | None
    ptr: str | None
    sha256: str
    subject: str | None
    issuer: str | None
    not_after: str | None
    chain_length: int
    version: str | None
    observed: str
    scan: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LeafRow:
    """An endpoint's latest leaf with the fields that reports count."""

    address: str
    port: int
    version: str | None
    sha256: str
    subject: str | None
    issuer: str | None
    not_after: str | None
    key_type: str | None
    key_bits: int | None
    signature_algorithm: str | None


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """A stored certificate with the times it was first and last seen."""

    sha256: str
    der: bytes
    subject: str | None
    issuer: str | None
    not_before: str | None
    not_after: str | None
    serial: str | None
    key_type: str | None
    key_bits: int | None
    signature_algorithm: str | None
    san: tuple[str, ...]
    error: str | None
    first_seen: str
    last_seen: str

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["der"]
        out["san"] = list(self.san)
        return out


@dataclass(frozen=True, slots=True)
class Placement:
    """An endpoint that served a certificate, and where in its chain."""

    address: str
    port: int
    name: str | None
    position: int
    first_seen: str
    last_seen: str
    observations: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FindingRow:
    """A finding of an endpoint's latest chain."""

    address: str
    port: int
    name: str | None
    sha256: str
    kind: str
    severity: str
    message: str
    observed: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ScanRow:
    """A recorded scan with its counts of observations."""

    id: int
    started: str
    ended: str | None
    shard: str | None
    arguments: dict[str, Any]
    counts: dict[str, int] | None
    observations: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Change:
    """Difference in an endpoint's leaf certificate between two scans.

    `change` is ``added`` (a chain only in the second scan), ``removed``
    (only in the first) or ``changed`` (different leaves).
    """

    address: str
    port: int
    change: str
    before: str | None
    after: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Each endpoint's latest observation with a chain, optionally in one scan.
_LATEST = """
    SELECT * FROM (
        SELECT o.*, row_number() OVER (
            PARTITION BY o.endpoint ORDER BY o.time DESC, o.id DESC
        ) AS recency
        FROM observations AS o
        WHERE o.chain IS NOT NULL AND (:scan IS NULL OR o.scan = :scan)
    ) AS ranked WHERE recency = 1
"""

# Each endpoint's latest observation of all, when it has no chain. Its
# findings say that the chain went away.
_LATEST_WITHOUT_CHAIN = """
    SELECT * FROM (
        SELECT o.*, row_number() OVER (
            PARTITION BY o.endpoint ORDER BY o.time DESC, o.id DESC
        ) AS recency
        FROM observations AS o
        WHERE (:scan IS NULL OR o.scan = :scan)
    ) AS ranked WHERE recency = 1 AND chain IS NULL
"""

_SERVED = f"""
    WITH latest AS ({_LATEST})
    SELECT e.address, e.port, e.name, e.ptr, c.sha256, c.subject, c.issuer,
           c.not_after,
           (SELECT count(*) FROM chain_certificates AS n WHERE n.chain = l.chain),
           l.version, l.time, l.scan
    FROM latest AS l
    JOIN endpoints AS e ON e.id = l.endpoint
    JOIN chain_certificates AS cc ON cc.chain = l.chain AND cc.position = 0
    JOIN certificates AS c ON c.sha256 = cc.certificate
    WHERE (:port IS NULL OR e.port = :port)
      AND (:issuer IS NULL OR c.issuer LIKE '%' || :issuer || '%')
      AND (:expires_before IS NULL OR c.not_after <= :expires_before)
      AND (:finding IS NULL OR EXISTS (
            SELECT 1 FROM findings AS f
            WHERE f.observation = l.id AND f.kind = :finding))
"""


def _parameters(filters: Filters) -> dict[str, object]:
    return {
        "scan": filters.scan,
        "port": filters.port,
        "issuer": filters.issuer,
        "expires_before": filters.expires_before,
        "finding": filters.finding,
    }


def _in_subnet(address: str, subnet: Network | None) -> bool:
    if subnet is None:
        return True
    try:
        return ipaddress.ip_address(address) in subnet
    except ValueError:
        return False


def served(connection: SqlConnection, filters: Filters) -> list[ServedRow]:
    """List each endpoint with the leaf of its latest chain, sorted by address."""
    rows = connection.execute(_SERVED, _parameters(filters)).fetchall()
    result = [ServedRow(*row) for row in rows]
    result.sort(key=lambda row: _endpoint_order((row.address, row.port)))
    return [row for row in result if _in_subnet(row.address, filters.subnet)]


def leaves(connection: SqlConnection, scan: int | None = None) -> list[LeafRow]:
    """List each endpoint's latest leaf (within `scan` if given), by address."""
    rows = connection.execute(
        f"""
        WITH latest AS ({_LATEST})
        SELECT e.address, e.port, l.version, c.sha256, c.subject, c.issuer,
               c.not_after, c.key_type, c.key_bits, c.signature_algorithm
        FROM latest AS l
        JOIN endpoints AS e ON e.id = l.endpoint
        JOIN chain_certificates AS cc ON cc.chain = l.chain AND cc.position = 0
        JOIN certificates AS c ON c.sha256 = cc.certificate
        """,
        {"scan": scan},
    ).fetchall()
    result = [LeafRow(*row) for row in rows]
    result.sort(key=lambda row: _endpoint_order((row.address, row.port)))
    return result


def find_certificate(
    connection: SqlConnection, sha256_prefix: str
) -> list[CertificateRecord]:
    """Find the certificates whose SHA-256 starts with `sha256_prefix`.

    Raises:
        ValueError: the prefix is not hexadecimal.
    """
    prefix = sha256_prefix.lower().replace(":", "")
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise ValueError(f"invalid SHA-256 prefix {sha256_prefix!r}")
    rows = connection.execute(
        "SELECT sha256, der, subject, issuer, not_before, not_after, serial,"
        " key_type, key_bits, signature_algorithm, san, error, first_seen,"
        " last_seen FROM certificates WHERE sha256 >= ? AND sha256 < ?"
        " ORDER BY sha256 LIMIT 50",
        (prefix, prefix + "g"),
    ).fetchall()
    return [_certificate(row) for row in rows]


def _certificate(row: tuple[Any, ...]) -> CertificateRecord:
    values = list(row)
    values[10] = tuple(json.loads(values[10]))
    return CertificateRecord(*values)


def placements(connection: SqlConnection, sha256: str) -> list[Placement]:
    """List every endpoint that served the certificate, in any chain position."""
    rows = connection.execute(
        """
        SELECT e.address, e.port, e.name, min(cc.position), min(o.time),
               max(o.time), count(*)
        FROM chain_certificates AS cc
        JOIN observations AS o ON o.chain = cc.chain
        JOIN endpoints AS e ON e.id = o.endpoint
        WHERE cc.certificate = ?
        GROUP BY e.id
        """,
        (sha256,),
    ).fetchall()
    result = [Placement(*row) for row in rows]
    result.sort(key=lambda row: _endpoint_order((row.address, row.port)))
    return result


def findings(connection: SqlConnection, filters: Filters) -> list[FindingRow]:
    """List the findings of each endpoint's latest chain.

    An endpoint whose latest observation has no chain also shows that
    observation's findings, such as ``endpoint_gone``.
    """
    rows = connection.execute(
        f"""
        WITH latest AS (
            SELECT id, endpoint, time FROM ({_LATEST}) AS with_chain
            UNION ALL
            SELECT id, endpoint, time FROM ({_LATEST_WITHOUT_CHAIN}) AS without_chain
        )
        SELECT e.address, e.port, e.name, f.certificate, f.kind, f.severity,
               f.message, l.time
        FROM latest AS l
        JOIN endpoints AS e ON e.id = l.endpoint
        JOIN findings AS f ON f.observation = l.id
        JOIN certificates AS c ON c.sha256 = f.certificate
        WHERE (:port IS NULL OR e.port = :port)
          AND (:issuer IS NULL OR c.issuer LIKE '%' || :issuer || '%')
          AND (:expires_before IS NULL OR c.not_after <= :expires_before)
          AND (:finding IS NULL OR f.kind = :finding)
        ORDER BY f.id
        """,
        _parameters(filters),
    ).fetchall()
    result = [FindingRow(*row) for row in rows]
    # A stable sort keeps each endpoint's findings in insertion order.
    result.sort(key=lambda row: _endpoint_order((row.address, row.port)))
    return [row for row in result if _in_subnet(row.address, filters.subnet)]


def list_scans(connection: SqlConnection) -> list[ScanRow]:
    """List the recorded scans, oldest first."""
    rows = connection.execute(
        "SELECT s.id, s.started, s.ended, s.shard, s.arguments, s.counts,"
        " (SELECT count(*) FROM observations AS o WHERE o.scan = s.id)"
        " FROM scans AS s ORDER BY s.id"
    ).fetchall()
    return [
        ScanRow(
            id=row[0],
            started=row[1],
            ended=row[2],
            shard=row[3],
            arguments=json.loads(row[4]),
            counts=json.loads(row[5]) if row[5] is not None else None,
            observations=row[6],
        )
        for row in rows
    ]


def diff_scans(connection: SqlConnection, before: int, after: int) -> list[Change]:
    """Compare the leaf each endpoint served in scan `before` and scan `after`.

    Raises:
        ValueError: either scan id is not in the inventory.
    """
    for scan_id in (before, after):
        exists = connection.execute("SELECT 1 FROM scans WHERE id = ?", (scan_id,))
        if exists.fetchone() is None:
            raise ValueError(f"scan {scan_id} not found")
    old = _leaves(connection, before)
    new = _leaves(connection, after)
    changes: list[Change] = []
    for endpoint in sorted(old.keys() | new.keys(), key=_endpoint_order):
        old_leaf, new_leaf = old.get(endpoint), new.get(endpoint)
        if old_leaf == new_leaf:
            continue
        if old_leaf is None:
            kind = "added"
        elif new_leaf is None:
            kind = "removed"
        else:
            kind = "changed"
        changes.append(Change(endpoint[0], endpoint[1], kind, old_leaf, new_leaf))
    return changes


def _leaves(connection: SqlConnection, scan_id: int) -> dict[tuple[str, int], str]:
    rows = served(connection, Filters(scan=scan_id))
    return {(row.address, row.port): row.sha256 for row in rows}


def _endpoint_order(endpoint: tuple[str, int]) -> tuple[int, int, str, int]:
    try:
        address = ipaddress.ip_address(endpoint[0])
    except ValueError:
        return (9, 0, endpoint[0], endpoint[1])
    return (address.version, int(address), "", endpoint[1])
