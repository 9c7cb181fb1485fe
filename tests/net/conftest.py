"""Fixtures of the prober's raw-socket tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from probe_netns import NamespacePair, create_pair


@pytest.fixture
def namespace_pair(request: pytest.FixtureRequest) -> Iterator[NamespacePair]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and raw sockets")
    pair = create_pair()
    request.addfinalizer(pair.cleanup)
    yield pair
