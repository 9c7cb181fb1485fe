"""Importing certificates from PEM and DER files into the inventory.

Certificates obtained some other way (exported by a server's operator,
fetched by another tool) join the inventory by their SHA-256, like those a
scan finds: a certificate already present keeps its record and only widens
its first_seen and last_seen. Imported certificates have no endpoint, so
they appear in `inventory show` and `export`, not in `list`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from pathlib import Path

from pktscan.certs import decode_chain
from pktscan.store.sqlite import (
    Inventory,
    InventoryError,
    format_epoch,
    upsert_certificate,
)

__all__ = ["import_certificate_file", "read_certificate_file"]

SQLITE_MAGIC = b"SQLite format 3\x00"
_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----\s*(.*?)"
    rb"-----END (?:X509 |TRUSTED )?CERTIFICATE-----",
    re.DOTALL,
)
# DER of an X.509 certificate starts with a SEQUENCE tag and a long length.
_DER_START = (b"\x30\x82", b"\x30\x83", b"\x30\x81")


def is_sqlite_file(path: Path) -> bool:
    """Tell an inventory file from a certificate file by its first bytes."""
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def read_certificate_file(path: Path) -> list[bytes]:
    """Return the DER certificates of a PEM file (one or more) or a DER file.

    Raises:
        InventoryError: the file cannot be read or contains no certificate.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(
            f"cannot read certificate file {path}: {exc.strerror}",
            hint="give a readable PEM or DER file",
        ) from exc

    blocks = _PEM_BLOCK.findall(data)
    if blocks:
        ders = []
        for number, block in enumerate(blocks, start=1):
            try:
                ders.append(base64.b64decode(b"".join(block.split()), validate=True))
            except binascii.Error as exc:
                raise InventoryError(
                    f"invalid PEM block {number} in {path}: {exc}",
                    hint="check that the file is an unmodified PEM certificate",
                ) from exc
        return ders
    if data.startswith(_DER_START):
        return [data]
    raise InventoryError(
        f"no certificate found in {path}",
        hint="give an inventory, a PEM file with BEGIN CERTIFICATE blocks,"
        " or a DER certificate",
    )


def import_certificate_file(target: Inventory, path: Path) -> tuple[int, int]:
    """Add the certificates of a PEM or DER file to the inventory.

    Returns:
        The number of certificates in the file, and how many were new.
    """
    certificates = decode_chain(read_certificate_file(path))
    digests = {cert.sha256 for cert in certificates}
    seen = format_epoch(time.time())
    with target.lock:
        target.flush()
        connection = target.connection
        known = {
            digest
            for digest in digests
            if connection.execute(
                "SELECT 1 FROM certificates WHERE sha256 = ?", (digest,)
            ).fetchone()
        }
        # The connection is in autocommit mode: one explicit transaction
        # adds the whole file or, on failure, nothing.
        connection.execute("BEGIN IMMEDIATE")
        try:
            for cert in certificates:
                upsert_certificate(connection, cert, seen)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    return len(certificates), len(digests - known)
