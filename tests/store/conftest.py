"""Shared certificate chains and the PostgreSQL server for the inventory tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pg_server import PostgresServer, find_bindir, start_server
from store_helpers import make_chain, make_der

from pktscan import certs
from pktscan.results import CertInfo


@pytest.fixture(scope="session")
def chain_a() -> list[CertInfo]:
    return make_chain("a.example", ca="CA One")


@pytest.fixture(scope="session")
def chain_b() -> list[CertInfo]:
    return make_chain("b.example", ca="CA Two")


@pytest.fixture(scope="session")
def expired_chain() -> list[CertInfo]:
    der = make_der(
        "old.example",
        not_after=datetime(2026, 5, 1, tzinfo=UTC),
        dns_names=("old.example",),
    )
    return certs.decode_chain([der])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, on a Unix socket only."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    server = start_server(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of an empty database, dropped after the test."""
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)
