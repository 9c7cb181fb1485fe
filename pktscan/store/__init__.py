"""Scan output: JSON lines and the certificate inventory (SQLite or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pktscan.store.jsonl import JsonLinesWriter
from pktscan.store.sql import is_postgres_url
from pktscan.store.sqlite import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_COMMIT_INTERVAL,
    Inventory,
    InventoryError,
    default_inventory_path,
)

if TYPE_CHECKING:
    from pktscan.store.postgres import PostgresInventory

__all__ = [
    "Inventory",
    "InventoryError",
    "JsonLinesWriter",
    "default_inventory_path",
    "open_inventory",
]


def open_inventory(
    target: str | Path | None,
    *,
    batch_size: int | None = None,
    commit_interval: float | None = None,
    background_flush: bool = True,
) -> Inventory | PostgresInventory:
    """Open the inventory that a ``--db`` value names.

    Args:
        target: a ``postgresql://`` URL, a file path, or None for the
            default file (`default_inventory_path`).
        batch_size: results per transaction; None keeps the default.
        commit_interval: maximum age, in seconds, of a pending batch; None
            keeps the default.
        background_flush: start the thread that commits idle batches.

    Raises:
        InventoryError: the inventory cannot be opened or migrated.
    """
    size = batch_size if batch_size is not None else DEFAULT_BATCH_SIZE
    interval = (
        commit_interval if commit_interval is not None else DEFAULT_COMMIT_INTERVAL
    )
    if isinstance(target, str) and is_postgres_url(target):
        # Imported here, so that SQLite users do not load psycopg.
        from pktscan.store.postgres import PostgresInventory

        return PostgresInventory.open(
            target,
            batch_size=size,
            commit_interval=interval,
            background_flush=background_flush,
        )
    path = Path(target) if target is not None else default_inventory_path()
    return Inventory.open(
        path,
        batch_size=size,
        commit_interval=interval,
        background_flush=background_flush,
    )
