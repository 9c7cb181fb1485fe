"""Shared fixtures: the session lab, and skipping privileged tests.

Tests marked `lab` or `rawsock` need root; without it they are skipped
rather than failed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import settings

from pktscan.lab import Lab

# No per-example deadline, because the machines that run the suite are
# shared and a slow example is not a failure. Under CI the examples are
# derived from the test's name, so a run cannot fail on an input the previous
# run never drew. Locally they stay random, to keep finding new cases.
settings.register_profile("pktscan", deadline=None)
settings.register_profile("pktscan-ci", deadline=None, derandomize=True)
settings.load_profile("pktscan-ci" if os.environ.get("CI") else "pktscan")

_PRIVILEGED_MARKERS = ("lab", "rawsock")


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Skip tests marked lab or rawsock unless running as root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root for namespaces and raw sockets")
    for item in items:
        if any(item.get_closest_marker(marker) for marker in _PRIVILEGED_MARKERS):
            item.add_marker(skip)


def unique_lab_name(prefix: str = "pkt-test") -> str:
    """Return a lab name no other test run uses, e.g. "pkt-test-1a2b3c4d"."""
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A lab that is up for the whole test session, taken down at the end.

    Its name is unique to the run, so it never collides with a lab a
    developer keeps up. Read addresses and fingerprints from `lab.manifest`.
    """
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    instance = Lab(unique_lab_name())
    try:
        instance.up()
        yield instance
    finally:
        instance.down()
