"""The numbers of the HTML report, read from an inventory.

`collect` runs the inventory queries once and counts what the page shows.
It reads no clock: the caller passes the time that "expired" and "expires
within" are measured from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID

from pktscan.certs import Severity, format_time
from pktscan.store import query
from pktscan.store.query import Change, Filters, FindingRow, LeafRow, ScanRow
from pktscan.store.sql import SqlConnection

__all__ = ["EXPIRY_MONTHS", "ReportData", "collect", "issuer_label"]

#: Calendar months, the current one first, that the expiry timeline shows
#: one bar each; later expiries share one last bar.
EXPIRY_MONTHS = 12

#: Issuers shown by name; the others are summed into one "other" bar.
TOP_ISSUERS = 8

#: Findings and expiring leaves listed in the tables, most severe or
#: soonest first.
TABLE_ROWS = 40

#: The "expiring" tile counts leaves that expire within this many days.
EXPIRING_DAYS = 30

SEVERITY_ORDER = (
    Severity.CRITICAL,
    Severity.HIGH,
    Severity.MEDIUM,
    Severity.LOW,
    Severity.INFO,
)


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report page shows.

    Attributes:
        source: the inventory the numbers come from, for the page title.
        generated: the time the numbers are measured from, ISO 8601 UTC.
        scans: recorded scans.
        latest_scan: the newest scan, or None for an empty inventory.
        previous_scan: the scan before it, which `changes` compares with.
        endpoints: endpoints whose latest observation carried a chain.
        certificates: distinct leaves those endpoints serve.
        expired: distinct leaves whose notAfter is before `generated`.
        expiring: distinct leaves that expire within `EXPIRING_DAYS` days.
        timeline: distinct leaves per expiry bucket: "expired", one "YYYY-MM" per
            month from the current one, then "later".
        versions: endpoints per negotiated protocol version.
        key_types: leaves per key type and size, e.g. "RSA 2048".
        issuers: leaves per issuer CN, the top ones and "other".
        severities: findings per severity, most severe first.
        kinds: findings per kind, as (kind, severity, count).
        findings: the most severe findings, for the table.
        changes: leaf changes from `previous_scan` to `latest_scan`.
        soonest: the leaves that expire first, for the table.
    """

    source: str
    generated: str
    scans: int
    latest_scan: ScanRow | None
    previous_scan: ScanRow | None
    endpoints: int
    certificates: int
    expired: int
    expiring: int
    timeline: tuple[tuple[str, int], ...]
    versions: tuple[tuple[str, int], ...]
    key_types: tuple[tuple[str, int], ...]
    issuers: tuple[tuple[str, int], ...]
    severities: tuple[tuple[str, int], ...]
    kinds: tuple[tuple[str, str, int], ...]
    findings: tuple[FindingRow, ...]
    changes: tuple[Change, ...]
    soonest: tuple[LeafRow, ...]

    @property
    def findings_total(self) -> int:
        """Findings of every severity."""
        return sum(count for _, count in self.severities)

    @property
    def urgent(self) -> int:
        """Findings of severity critical or high."""
        urgent = {Severity.CRITICAL.value, Severity.HIGH.value}
        return sum(count for name, count in self.severities if name in urgent)


def collect(connection: SqlConnection, source: str, now: datetime) -> ReportData:
    """Count what the report shows from the inventory behind `connection`.

    Args:
        connection: an open inventory connection.
        source: how the page names the inventory, e.g. its path.
        now: the time expiry is measured from; an aware datetime.
    """
    scans = query.list_scans(connection)
    latest = scans[-1] if scans else None
    previous = scans[-2] if len(scans) > 1 else None
    leaves = query.leaves(connection)
    findings = query.findings(connection, Filters())
    changes: list[Change] = []
    if latest is not None and previous is not None:
        changes = query.diff_scans(connection, previous.id, latest.id)

    generated = format_time(now)
    cutoff = format_time(now + timedelta(days=EXPIRING_DAYS))
    distinct = [leaf for leaf in _distinct(leaves) if leaf.not_after is not None]
    expired = [leaf for leaf in distinct if _expiry(leaf) < generated]
    expiring = [leaf for leaf in distinct if generated <= _expiry(leaf) <= cutoff]
    rank = {str(severity): index for index, severity in enumerate(SEVERITY_ORDER)}
    ranked = sorted(findings, key=lambda row: rank.get(row.severity, len(rank)))
    soonest = sorted(
        (leaf for leaf in leaves if leaf.not_after is not None), key=_expiry
    )

    return ReportData(
        source=source,
        generated=generated,
        scans=len(scans),
        latest_scan=latest,
        previous_scan=previous,
        endpoints=len(leaves),
        certificates=len({leaf.sha256 for leaf in leaves}),
        expired=len(expired),
        expiring=len(expiring),
        timeline=_timeline(leaves, now),
        versions=_most_common(leaf.version or "unknown" for leaf in leaves),
        key_types=_most_common(_key_label(leaf) for leaf in _distinct(leaves)),
        issuers=_issuers(_distinct(leaves)),
        severities=tuple(
            (str(severity), sum(1 for row in findings if row.severity == severity))
            for severity in SEVERITY_ORDER
        ),
        kinds=_kinds(findings, rank),
        findings=tuple(ranked[:TABLE_ROWS]),
        changes=tuple(changes),
        soonest=tuple(soonest[:TABLE_ROWS]),
    )


def _expiry(leaf: LeafRow) -> str:
    return leaf.not_after or ""


def _distinct(leaves: Iterable[LeafRow]) -> list[LeafRow]:
    """Keep one row per leaf, so a certificate on many endpoints counts once."""
    seen: dict[str, LeafRow] = {}
    for leaf in leaves:
        seen.setdefault(leaf.sha256, leaf)
    return list(seen.values())


def _timeline(leaves: Iterable[LeafRow], now: datetime) -> tuple[tuple[str, int], ...]:
    months = []
    year, month = now.year, now.month
    for _ in range(EXPIRY_MONTHS):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    counts = Counter[str]()
    generated = format_time(now)
    for leaf in _distinct(leaves):
        if leaf.not_after is None:
            continue
        if leaf.not_after < generated:
            counts["expired"] += 1
        elif leaf.not_after[:7] in months:
            counts[leaf.not_after[:7]] += 1
        else:
            counts["later"] += 1
    buckets = ["expired", *months, "later"]
    return tuple((bucket, counts[bucket]) for bucket in buckets)


def _key_label(leaf: LeafRow) -> str:
    if leaf.key_type is None:
        return "unknown"
    if leaf.key_bits is None:
        return leaf.key_type
    return f"{leaf.key_type} {leaf.key_bits}"


def _most_common(values: Iterable[str]) -> tuple[tuple[str, int], ...]:
    counts = Counter(values)
    # Ties sort by label, so the order does not depend on the input order.
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _issuers(leaves: Iterable[LeafRow]) -> tuple[tuple[str, int], ...]:
    counted = _most_common(issuer_label(leaf.issuer) for leaf in leaves)
    if len(counted) <= TOP_ISSUERS + 1:
        return counted
    other = sum(count for _, count in counted[TOP_ISSUERS:])
    return (*counted[:TOP_ISSUERS], ("other", other))


def issuer_label(issuer: str | None) -> str:
    """Return the issuer's CN, or the whole RFC 4514 name when it has none."""
    if issuer is None:
        return "unknown"
    try:
        name = x509.Name.from_rfc4514_string(issuer)
        common_names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return issuer
    if not common_names:
        return issuer
    return str(common_names[0].value)


def _kinds(
    findings: Iterable[FindingRow], rank: dict[str, int]
) -> tuple[tuple[str, str, int], ...]:
    counts = Counter((row.kind, row.severity) for row in findings)
    ordered = sorted(
        counts.items(),
        key=lambda item: (rank.get(item[0][1], len(rank)), -item[1], item[0][0]),
    )
    return tuple((kind, severity, count) for (kind, severity), count in ordered)
