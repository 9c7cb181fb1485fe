"""Shared certificate chains for the inventory tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
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
