"""Tests for the nftables table that keeps the kernel out of raw connections.

The rawsock tests run the guard inside a network namespace of their own,
so they never see or change the host's nftables ruleset.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pktscan.net.firewall import (
    TABLE_PATTERN,
    FirewallError,
    KernelResetGuard,
    list_tables,
    ruleset,
)

CHILD = Path(__file__).with_name("firewall_child.py")
REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 30


def test_ruleset_drops_the_port_range_in_prerouting() -> None:
    text = ruleset("pktscan_1_00aa11bb", (61001, 65535))
    assert text.startswith("table inet pktscan_1_00aa11bb {")
    assert "type filter hook prerouting priority raw; policy accept;" in text
    assert "tcp dport 61001-65535 drop" in text


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("pktscan_1234_0a1b2c3d", True),
        ("pktscan_lab_0a1b2c3d", False),
        ("pktscan_1234_0a1b2c3", False),
        ("pktscan_1234_0a1b2c3d_x", False),
        ("other_1234_0a1b2c3d", False),
    ],
)
def test_table_pattern_only_matches_run_tables(name: str, matches: bool) -> None:
    assert bool(TABLE_PATTERN.fullmatch(name)) is matches


def test_guard_table_name_carries_the_pid() -> None:
    guard = KernelResetGuard((61001, 65535))
    match = TABLE_PATTERN.fullmatch(guard.table)
    assert match is not None
    assert int(match.group(1)) == os.getpid()


def test_guard_rejects_an_invalid_range() -> None:
    with pytest.raises(ValueError, match="invalid port range 70000-80000"):
        KernelResetGuard((70000, 80000))


def test_missing_nft_raises_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FirewallError, match="nft command was not found") as caught:
        list_tables()
    assert caught.value.hint is not None
    assert "nftables" in caught.value.hint


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A network namespace with its own empty nftables ruleset."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"pkfw-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    request.addfinalizer(
        lambda: subprocess.run(["ip", "netns", "del", name], timeout=10, check=False)
    )
    yield name


def _nft(namespace: str, *arguments: str) -> str:
    completed = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", *arguments],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return completed.stdout


def _tables(namespace: str) -> set[str]:
    output = _nft(namespace, "-j", "list", "tables")
    document = json.loads(output) if output.strip() else {}
    return {item["table"]["name"] for item in document["nftables"] if "table" in item}


def _child(namespace: str, step: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, str(CHILD), step],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _run_child(namespace: str, step: str) -> dict[str, list[str]]:
    process = _child(namespace, step)
    output, _ = process.communicate(timeout=CHILD_TIMEOUT)
    assert process.returncode == 0, output
    result: dict[str, list[str]] = json.loads(output.splitlines()[-1])
    return result


def _start_holder(
    namespace: str, request: pytest.FixtureRequest
) -> tuple[subprocess.Popen[str], str]:
    process = _child(namespace, "hold")
    request.addfinalizer(lambda: _end(process))
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, json.loads(line)["table"]


def _end(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=CHILD_TIMEOUT)


@pytest.mark.rawsock
def test_table_installed_with_the_rule(
    namespace: str, request: pytest.FixtureRequest
) -> None:
    _, table = _start_holder(namespace, request)
    assert table in _tables(namespace)
    listing = _nft(namespace, "list", "table", "inet", table)
    assert "hook prerouting priority raw" in listing
    assert "tcp dport 61001-65535 drop" in listing


@pytest.mark.rawsock
def test_sigterm_removes_the_table(
    namespace: str, request: pytest.FixtureRequest
) -> None:
    process, table = _start_holder(namespace, request)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=CHILD_TIMEOUT) == -signal.SIGTERM
    assert table not in _tables(namespace)


@pytest.mark.rawsock
def test_exception_in_block_removes_the_table(namespace: str) -> None:
    assert _run_child(namespace, "fail-inside") == {"tables": []}
    assert _tables(namespace) == set()


@pytest.mark.rawsock
def test_killed_run_table_swept(namespace: str, request: pytest.FixtureRequest) -> None:
    process, table = _start_holder(namespace, request)
    process.kill()
    process.wait(timeout=CHILD_TIMEOUT)
    assert table in _tables(namespace)

    # Tables the sweep must leave alone: another program's, the lab's, and
    # one named for a pid that is running (pid 1 always is).
    _nft(namespace, "add", "table", "inet", "someone_else")
    _nft(namespace, "add", "table", "inet", "pktscan_lab_0a1b2c3d")
    _nft(namespace, "add", "table", "inet", "pktscan_1_0a1b2c3d")
    _nft(namespace, "add", "table", "ip", "pktscan_999999_0a1b2c3d")

    assert _run_child(namespace, "sweep") == {"removed": [table]}
    assert _tables(namespace) == {
        "someone_else",
        "pktscan_lab_0a1b2c3d",
        "pktscan_1_0a1b2c3d",
        "pktscan_999999_0a1b2c3d",
    }
