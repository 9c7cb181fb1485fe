"""Terminal rendering of scan results: the progress line and the table."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from pktscan.results import PortResult


class ScanProgress:
    """Counts results and, on a terminal, shows them on a live progress line.

    Call it with each result. `set_total` gives the number of ports the scan
    will report, which adds a bar, a percentage and an estimate of the time
    left.
    """

    def __init__(self, progress: Progress | None) -> None:
        self.counts = {"ports": 0, "open": 0, "certificates": 0}
        self._progress = progress
        self._task = progress.add_task(self.describe()) if progress else None

    def describe(self) -> str:
        counts = self.counts
        return (
            f"{_plural(counts['ports'], 'port')} done, {counts['open']} open,"
            f" {_plural(counts['certificates'], 'certificate')}"
        )

    def set_total(self, total: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def __call__(self, result: PortResult) -> None:
        _count(self.counts, result)
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, description=self.describe(), completed=self.counts["ports"]
            )


@contextmanager
def scan_progress(console: Console, enabled: bool = True) -> Iterator[ScanProgress]:
    """Show a live progress line on a terminal; yield its `ScanProgress`."""
    if not enabled or not console.is_terminal:
        yield ScanProgress(None)
        return

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield ScanProgress(progress)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _count(counts: dict[str, int], result: PortResult) -> None:
    counts["ports"] += 1
    if result.state == "open":
        counts["open"] += 1
    if result.tls is not None and result.tls.chain:
        counts["certificates"] += 1


def describe_tls(result: PortResult) -> tuple[str, str, str, str]:
    """Return the set, version, subject and fingerprint columns of a result."""
    tls = result.tls
    if tls is None:
        return "", "", "", ""
    if tls.chain:
        leaf = tls.chain[0]
        subject = leaf.subject or f"(undecodable: {leaf.error})"
        return str(tls.set_number), tls.version or "", subject, leaf.sha256
    outcomes = ", ".join(
        f"{a.set_number}:{a.outcome}" + (f"({a.alert})" if a.alert else "")
        for a in tls.attempts
    )
    return "", "", f"no certificate: {outcomes}", ""


def print_scan_table(console: Console, results: Sequence[PortResult]) -> None:
    """Print one row per port: state, name, attempt, version, subject, SHA-256."""
    table = Table(title="pktscan results", show_lines=False)
    for column in (
        "target",
        "state",
        "name / PTR",
        "set",
        "version",
        "subject / server",
    ):
        table.add_column(column)
    table.add_column("leaf SHA-256", overflow="fold")

    ordered = sorted(results, key=lambda r: (_address_key(r.ip), r.port))
    for result in ordered:
        set_number, version, subject, sha256 = describe_tls(result)
        if result.http is not None:
            subject = f"HTTP: {result.http.server or result.http.error or ''}"
        # Subjects, names and Server headers come from peers: Text cells are
        # printed as they are, never parsed as rich markup.
        cells = (
            f"{result.ip}:{result.port}",
            result.state,
            result.name or result.ptr or "",
            set_number,
            version,
            subject,
            sha256,
        )
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)


def _address_key(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return address.version, int(address)
