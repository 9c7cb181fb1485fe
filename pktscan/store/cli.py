"""The ``pktscan inventory`` commands over the SQLite certificate inventory."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def inventory() -> None:
    """Query the certificate inventory that scans write."""
