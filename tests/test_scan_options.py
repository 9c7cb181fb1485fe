"""`pktscan scan` refuses bad --source-ip values before it opens a socket."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("extra", "message", "hint"),
    [
        (
            ["--source-ip", "198.18.0"],
            "error: invalid --source-ip '198.18.0': not an IPv4 address",
            "hint: give a dotted IPv4 address such as 198.18.0.99",
        ),
        (
            ["--source-ip", "2001:db8::9"],
            "error: invalid --source-ip '2001:db8::9': not an IPv4 address",
            "IPv6 sources are not supported",
        ),
        (
            ["--source-ip", "127.0.0.1"],
            "error: invalid --source-ip 127.0.0.1: a loopback, multicast,"
            " broadcast or unspecified address cannot send to other hosts",
            "hint: give an unused address of the scanner's network",
        ),
        (
            ["--source-ip", "255.255.255.255"],
            "error: invalid --source-ip 255.255.255.255: a loopback, multicast,",
            "hint: give an unused address of the scanner's network",
        ),
        (
            ["--source-ip", "198.18.0.99", "--engine", "kernel"],
            "error: --source-ip needs the raw engine, and --engine kernel was given",
            "hint: leave out --engine kernel, or --source-ip",
        ),
    ],
)
def test_source_ip_errors(extra: list[str], message: str, hint: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pktscan", "scan", "198.18.0.10", "-p", "443",
         "--no-db", "--no-dns", "--quiet", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert message in completed.stderr
    assert hint in completed.stderr
    assert "Traceback" not in completed.stderr
