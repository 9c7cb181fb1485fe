"""Scan output: JSON lines and the SQLite certificate inventory."""

from pktscan.store.jsonl import JsonLinesWriter
from pktscan.store.sqlite import Inventory, InventoryError, default_inventory_path

__all__ = ["Inventory", "InventoryError", "JsonLinesWriter", "default_inventory_path"]
