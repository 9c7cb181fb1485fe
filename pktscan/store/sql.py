"""The SQL connection interface that the inventory code is written against.

The inventory's statements use SQLite's placeholders, ``?`` and ``:name``,
and SQL that SQLite 3.35 and PostgreSQL 15 both run (``ON CONFLICT``,
``RETURNING``, window functions). `sqlite3.Connection` fits `SqlConnection`
as it is. `PostgresConnection` wraps a psycopg 3 connection and rewrites
each statement for it: placeholders become psycopg's ``%s`` and
``%(name)s``, and ``LIKE`` becomes ``ILIKE``, because SQLite's LIKE ignores
ASCII case and PostgreSQL's does not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "PostgresConnection",
    "SqlConnection",
    "SqlCursor",
    "is_postgres_url",
    "to_psycopg",
]


class SqlCursor(Protocol):
    """The part of a DB-API cursor that the inventory code reads."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


class SqlConnection(Protocol):
    """A connection whose `execute` takes SQLite-style statements."""

    def execute(self, sql: str, parameters: Any = ..., /) -> SqlCursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> SqlCursor: ...


def is_postgres_url(target: str) -> bool:
    """Tell whether a ``--db`` value is a PostgreSQL URL rather than a path."""
    return target.startswith(("postgresql://", "postgres://"))


# A ":name" placeholder, but not the second colon of a "::type" cast.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_LIKE = re.compile(r"\bLIKE\b")


@functools.lru_cache(maxsize=256)
def to_psycopg(sql: str) -> str:
    """Rewrite a SQLite-style statement for psycopg.

    A literal ``%`` is doubled, since psycopg reads ``%`` as the start of a
    placeholder. The statements must not contain ``?`` or ``:word`` inside
    string literals; the inventory's statements pass such values as
    parameters.
    """
    rewritten = sql.replace("%", "%%")
    rewritten = _NAMED.sub(r"%(\1)s", rewritten)
    rewritten = rewritten.replace("?", "%s")
    return _LIKE.sub("ILIKE", rewritten)


class PostgresConnection:
    """A psycopg connection that runs SQLite-style statements."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Any = None, /) -> SqlCursor:
        """Run one statement and return its cursor."""
        cursor = self.raw.cursor()
        cursor.execute(to_psycopg(sql), parameters)
        return cursor

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> SqlCursor:
        """Run one statement once per parameter set."""
        cursor = self.raw.cursor()
        cursor.executemany(to_psycopg(sql), parameters)
        return cursor

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on the connection."""
        import psycopg

        idle = psycopg.pq.TransactionStatus.IDLE
        return self.raw.info.transaction_status != idle

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()
