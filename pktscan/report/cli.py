"""The ``pktscan report`` command: write the inventory report as HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pktscan.errors import InputError, LocalError
from pktscan.report.data import collect
from pktscan.report.html import render
from pktscan.store.cli import DbOption, exit_on_error, reading_inventory
from pktscan.store.sql import is_postgres_url
from pktscan.store.sqlite import default_inventory_path

__all__ = ["report"]


@exit_on_error
def report(
    html: Annotated[
        Path,
        typer.Option(
            "--html",
            help="HTML file to write: one page with inline charts and no"
            " external files.",
        ),
    ],
    db: DbOption = None,
) -> None:
    """Write a report of the inventory: expiry, versions, keys, issuers, findings."""
    if html.is_dir():
        raise InputError(
            f"invalid --html {html}: it is a directory", hint="give a file path"
        )
    source = str(db or default_inventory_path())
    if is_postgres_url(source):
        from pktscan.store.postgres import redact

        source = redact(source)
    with reading_inventory(db) as connection:
        data = collect(connection, source, datetime.now(UTC))
    page = render(data)
    try:
        html.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise LocalError(
            f"failed to write {html}: {exc.strerror}",
            hint="check that the directory exists and is writable",
        ) from exc
    typer.echo(
        f"report: {data.endpoints} endpoints, {data.certificates} certificates,"
        f" {data.findings_total} findings, {len(data.changes)} changes; wrote {html}"
    )
