"""The ``pktscan inventory`` commands over the SQLite certificate inventory.

Every command reads an existing inventory (``--db``, by default the one in
the user's data directory). A missing or corrupt file, like any other error
of pktscan's hierarchy, prints an ``error:`` and a ``hint:`` line on
standard error and exits with status 2.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import ipaddress
import json
import sqlite3
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pktscan.certs import FindingKind
from pktscan.errors import InputError, LocalError, PktscanError
from pktscan.store import query
from pktscan.store.certfiles import import_certificate_file, is_sqlite_file
from pktscan.store.merge import merge_inventory
from pktscan.store.query import Filters
from pktscan.store.sql import SqlConnection, is_postgres_url
from pktscan.store.sqlite import Inventory, InventoryError, default_inventory_path

__all__ = ["app", "exit_on_error", "reading_inventory"]

EXIT_ERROR = 2

# Hex digits of a SHA-256 shown in tables; `show` accepts such a prefix.
SHORT_HASH = 12

_NO_WRAP = frozenset({"endpoint", "sha256", "not after", "severity", "id"})

app = typer.Typer(no_args_is_help=True, add_completion=False)

_P = ParamSpec("_P")
_R = TypeVar("_R")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Inventory to read: a file (default: pktscan/inventory.sqlite in"
        " $XDG_DATA_HOME or ~/.local/share) or a postgresql:// URL.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table.")
]
SubnetOption = Annotated[
    str | None,
    typer.Option(help="Only endpoints in this CIDR, e.g. 198.18.0.0/24."),
]
PortOption = Annotated[int | None, typer.Option(help="Only this TCP port.")]
IssuerOption = Annotated[
    str | None,
    typer.Option(help="Only leaves whose issuer contains this text (any case)."),
]
ExpiresOption = Annotated[
    int | None,
    typer.Option(
        "--expires-within",
        help="Only leaves expired or expiring within this many days from now.",
    ),
]
FindingOption = Annotated[
    str | None,
    typer.Option(
        help="Only chains with a finding of this kind: "
        + ", ".join(kind.value for kind in FindingKind)
        + "."
    ),
]
ScanOption = Annotated[
    int | None, typer.Option("--scan", help="Only results of this scan id.")
]


@app.callback()
def inventory() -> None:
    """Query the certificate inventory that scans write."""


def exit_on_error(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn pktscan's errors into an error line, a hint line and exit 2."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except PktscanError as exc:
            err = Console(stderr=True)
            err.print(
                f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True
            )
            if isinstance(exc, LocalError) and exc.hint:
                err.print(
                    f"hint: {exc.hint}", markup=False, highlight=False, soft_wrap=True
                )
            raise typer.Exit(EXIT_ERROR) from exc

    return run


@contextmanager
def reading_inventory(db: str | Path | None) -> Iterator[SqlConnection]:
    """Open an existing inventory and turn database errors into InventoryError."""
    if isinstance(db, str) and is_postgres_url(db):
        with _reading_postgres(db) as connection:
            yield connection
        return
    path = Path(db) if db is not None else default_inventory_path()
    if not path.is_file():
        raise InventoryError(
            f"inventory {path} not found",
            hint="run pktscan scan to create it, or pass --db PATH",
        )
    store = Inventory.open(path, background_flush=False)
    try:
        yield store.connection
    except sqlite3.DatabaseError as exc:
        raise InventoryError(
            f"failed to read inventory {path}: {exc}",
            hint="the file may be corrupt: check it with sqlite3 FILE"
            " 'PRAGMA integrity_check' or pass another --db path",
        ) from exc
    finally:
        store.close()


@contextmanager
def _reading_postgres(url: str) -> Iterator[SqlConnection]:
    import psycopg

    from pktscan.store.postgres import PostgresInventory

    store = PostgresInventory.open(url, background_flush=False)
    try:
        yield store.connection
    except psycopg.Error as exc:
        raise InventoryError(
            f"failed to read inventory {store.location}: {exc}",
            hint="check the server and the database's permissions",
        ) from exc
    finally:
        store.close()


def _filters(
    subnet: str | None,
    port: int | None,
    issuer: str | None,
    expires_within: int | None,
    finding: str | None,
    scan: int | None,
) -> Filters:
    network = None
    if subnet is not None:
        try:
            network = ipaddress.ip_network(subnet, strict=False)
        except ValueError as exc:
            raise InputError(
                f"invalid --subnet {subnet!r}: {exc}",
                hint="give a CIDR such as 198.18.0.0/24 or 2001:db8::/64",
            ) from exc
    if port is not None and not 0 <= port <= 65535:
        raise InputError(f"invalid --port {port}", hint="give a port from 0 to 65535")
    cutoff = None
    if expires_within is not None:
        if expires_within < 0:
            raise InputError(
                f"invalid --expires-within {expires_within}",
                hint="give a number of days, 0 or more",
            )
        cutoff = Filters.expiry_cutoff(datetime.now(UTC), expires_within)
    kinds = [kind.value for kind in FindingKind]
    if finding is not None and finding not in kinds:
        raise InputError(
            f"invalid --finding {finding!r}", hint="give one of " + ", ".join(kinds)
        )
    return Filters(network, port, issuer, cutoff, finding, scan)


def _print_json(items: Sequence[Any] | dict[str, Any]) -> None:
    typer.echo(json.dumps(items, indent=2))


def _print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Print a table; columns named in `_NO_WRAP` are never folded."""
    table = Table(title=title)
    for column in columns:
        if column in _NO_WRAP:
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        # Cells hold peer-controlled text (subjects, names): Text objects
        # are shown as they are, never parsed as rich markup.
        table.add_row(*(Text("" if value is None else str(value)) for value in row))
    Console().print(table)


@app.command("list")
@exit_on_error
def list_command(
    db: DbOption = None,
    subnet: SubnetOption = None,
    port: PortOption = None,
    issuer: IssuerOption = None,
    expires_within: ExpiresOption = None,
    finding: FindingOption = None,
    scan: ScanOption = None,
    as_json: JsonOption = False,
) -> None:
    """List each endpoint with the leaf certificate of its latest chain."""
    filters = _filters(subnet, port, issuer, expires_within, finding, scan)
    with reading_inventory(db) as connection:
        rows = query.served(connection, filters)
    if as_json:
        _print_json([row.to_json() for row in rows])
        return
    _print_table(
        f"endpoints: {len(rows)}",
        ["endpoint", "name", "subject", "issuer", "not after", "sha256"],
        [
            (
                f"{row.address}:{row.port}",
                row.name or row.ptr,
                row.subject,
                row.issuer,
                (row.not_after or "")[:10],
                row.sha256[:SHORT_HASH],
            )
            for row in rows
        ],
    )


@app.command("show")
@exit_on_error
def show_command(
    sha256: Annotated[
        str, typer.Argument(help="SHA-256 of the certificate, or a unique prefix.")
    ],
    db: DbOption = None,
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM only.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one certificate and every endpoint that served it."""
    with reading_inventory(db) as connection:
        try:
            matches = query.find_certificate(connection, sha256)
        except ValueError as exc:
            raise InputError(str(exc), hint="give hexadecimal digits") from exc
        if not matches:
            raise InputError(
                f"no certificate with SHA-256 {sha256} in the inventory",
                hint="list them with pktscan inventory list",
            )
        if len(matches) > 1:
            raise InputError(
                f"SHA-256 prefix {sha256} matches {len(matches)} certificates",
                hint="give more digits",
            )
        record = matches[0]
        places = query.placements(connection, record.sha256)
    if pem:
        typer.echo(_pem(record.der), nl=False)
    elif as_json:
        out = record.to_json()
        out["served_at"] = [place.to_json() for place in places]
        _print_json(out)
    else:
        _print_certificate(record, places)


def _pem(der: bytes) -> str:
    # Encodes the stored bytes as they are, so a DER that failed to decode
    # is exported too (RFC 7468 PEM is base64 of any bytes).
    return ssl.DER_cert_to_PEM_cert(der)


def _print_certificate(
    record: query.CertificateRecord, places: Sequence[query.Placement]
) -> None:
    console = Console()
    fields = record.to_json()
    fields["san"] = ", ".join(record.san)
    for key, value in fields.items():
        if value is not None:
            console.print(
                f"{key:20} {value}", markup=False, highlight=False, soft_wrap=True
            )
    _print_table(
        f"served at endpoints: {len(places)}",
        ["endpoint", "name", "position", "first seen", "last seen", "times"],
        [
            (
                f"{place.address}:{place.port}",
                place.name,
                place.position,
                place.first_seen,
                place.last_seen,
                place.observations,
            )
            for place in places
        ],
    )


@app.command("findings")
@exit_on_error
def findings_command(
    db: DbOption = None,
    subnet: SubnetOption = None,
    port: PortOption = None,
    issuer: IssuerOption = None,
    expires_within: ExpiresOption = None,
    finding: FindingOption = None,
    scan: ScanOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the findings of each endpoint's latest chain."""
    filters = _filters(subnet, port, issuer, expires_within, finding, scan)
    with reading_inventory(db) as connection:
        rows = query.findings(connection, filters)
    if as_json:
        _print_json([row.to_json() for row in rows])
        return
    _print_table(
        f"findings: {len(rows)}",
        ["endpoint", "name", "severity", "kind", "sha256", "message"],
        [
            (
                f"{row.address}:{row.port}",
                row.name,
                row.severity,
                row.kind,
                row.sha256[:SHORT_HASH],
                row.message,
            )
            for row in rows
        ],
    )


@app.command("scans")
@exit_on_error
def scans_command(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the recorded scans."""
    with reading_inventory(db) as connection:
        rows = query.list_scans(connection)
    if as_json:
        _print_json([row.to_json() for row in rows])
        return
    _print_table(
        f"scans: {len(rows)}",
        ["id", "started", "ended", "shard", "results", "counts"],
        [
            (
                row.id,
                row.started,
                row.ended,
                row.shard,
                row.observations,
                json.dumps(row.counts) if row.counts is not None else None,
            )
            for row in rows
        ],
    )


@app.command("diff")
@exit_on_error
def diff_command(
    before: Annotated[int, typer.Argument(help="Id of the earlier scan.")],
    after: Annotated[int, typer.Argument(help="Id of the later scan.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show endpoints whose leaf certificate was added, removed or changed."""
    with reading_inventory(db) as connection:
        try:
            changes = query.diff_scans(connection, before, after)
        except ValueError as exc:
            raise InputError(
                str(exc), hint="list scan ids with pktscan inventory scans"
            ) from exc
    if as_json:
        _print_json([change.to_json() for change in changes])
        return
    _print_table(
        f"{len(changes)} changes from scan {before} to scan {after}",
        ["endpoint", "change", "before", "after"],
        [
            (
                f"{change.address}:{change.port}",
                change.change,
                change.before[:SHORT_HASH] if change.before else None,
                change.after[:SHORT_HASH] if change.after else None,
            )
            for change in changes
        ],
    )


EXPORT_FORMATS = ("pem", "json", "csv")


@app.command("export")
@exit_on_error
def export_command(
    export_format: Annotated[
        str, typer.Option("--format", help="Output format: pem, json or csv.")
    ] = "json",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: stdout)."),
    ] = None,
    db: DbOption = None,
    subnet: SubnetOption = None,
    port: PortOption = None,
    issuer: IssuerOption = None,
    expires_within: ExpiresOption = None,
    finding: FindingOption = None,
    scan: ScanOption = None,
) -> None:
    """Export the leaves that `list` shows: as PEM, JSON or CSV rows.

    PEM writes each distinct leaf once, preceded by comment lines naming the
    endpoints that served it. JSON and CSV write one row per endpoint.
    """
    if export_format not in EXPORT_FORMATS:
        raise InputError(
            f"invalid --format {export_format!r}",
            hint="give one of " + ", ".join(EXPORT_FORMATS),
        )
    filters = _filters(subnet, port, issuer, expires_within, finding, scan)
    with reading_inventory(db) as connection:
        rows = query.served(connection, filters)
        text = _export_text(connection, rows, export_format)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LocalError(
            f"failed to write {output}: {exc.strerror}",
            hint="choose a writable --output path",
        ) from exc


def _export_text(
    connection: SqlConnection, rows: Sequence[query.ServedRow], export_format: str
) -> str:
    if export_format == "json":
        return json.dumps([row.to_json() for row in rows], indent=2) + "\n"
    if export_format == "csv":
        return _csv_text(rows)
    served_by: dict[str, list[str]] = {}
    for row in rows:
        served_by.setdefault(row.sha256, []).append(f"{row.address}:{row.port}")
    blocks = []
    for sha256, endpoints in served_by.items():
        record = query.find_certificate(connection, sha256)[0]
        pem = _pem(record.der)
        header = f"# sha256 {sha256}\n# subject {record.subject}\n"
        header += "".join(f"# served at {endpoint}\n" for endpoint in endpoints)
        blocks.append(header + pem)
    return "".join(blocks)


def _csv_text(rows: Sequence[query.ServedRow]) -> str:
    buffer = io.StringIO()
    fields = [field.name for field in dataclasses.fields(query.ServedRow)]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.to_json())
    return buffer.getvalue()


@app.command("import")
@exit_on_error
def import_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="Inventory file to copy scans from, or a PEM or DER"
            " certificate file to add."
        ),
    ],
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="Inventory to merge into, created if missing (default: the one"
            " in the user's data directory).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Merge another inventory (e.g. another shard's), or add certificate files."""
    if source.is_file() and not is_sqlite_file(source):
        with Inventory.open(db or default_inventory_path()) as target:
            total, new = import_certificate_file(target, source)
        if as_json:
            _print_json({"certificates": total, "new_certificates": new})
            return
        typer.echo(f"imported {total} certificates, {new} new, from {source}")
        return
    with Inventory.open(db or default_inventory_path()) as target:
        counts = merge_inventory(target, source)
    if as_json:
        _print_json(counts.to_json())
        return
    typer.echo(
        f"imported {counts.scans} scans, {counts.observations} results and"
        f" {counts.certificates} new certificates from {source}"
    )
