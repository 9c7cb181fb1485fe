"""Tests for the probe command's input errors; none of them sends a packet,
because every one fails before a socket is opened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pktscan.errors import InputError
from pktscan.net.cli import format_stats, probe
from pktscan.net.prober import ProbeStats

REPO = Path(__file__).resolve().parents[2]

app = typer.Typer()
app.command()(probe)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["198.18.0.300", "-p", "443"],
            "invalid target '198.18.0.300': "
            "not an IPv4/IPv6 address, CIDR, range or DNS name",
        ),
        (
            ["198.18.0.1", "-p", "0"],
            "invalid port '0' in '0': must be from 1 to 65535",
        ),
        (
            ["host.example", "-p", "443"],
            "DNS names are not probed by this command: host.example",
        ),
        (
            ["198.18.0.0/30", "-p", "443", "--shard", "1/2"],
            "shard 1/2 given without a seed",
        ),
        (
            ["198.18.0.0/30", "-p", "443", "--shard", "2/2", "--seed", "1"],
            "invalid shard '2/2': index 2 is not below the count 2",
        ),
        (
            ["198.18.0.1", "-p", "443", "--exclude", "host.example"],
            "invalid exclusion 'host.example': not an IPv4/IPv6 address, CIDR or range",
        ),
    ],
)
def test_probe_command_input_errors(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, arguments)
    assert isinstance(result.exception, InputError)
    assert result.exception.message == message


def test_probe_command_rejects_negative_rate() -> None:
    result = CliRunner().invoke(app, ["198.18.0.1", "-p", "443", "--rate", "-1"])
    assert result.exit_code == 2
    assert "--rate" in result.output


def test_format_stats() -> None:
    stats = ProbeStats(sent=4, received=2, open=1, closed=1, filtered=1, elapsed=1.5)
    assert format_stats(stats) == (
        "probe: 4 SYN sent, 2 valid responses (1 open, 1 closed, 1 filtered), "
        "0 duplicates, 0 late, 0 invalid, 0 unroutable, 0 RST sent, "
        "0 send drops, 0 kernel drops, 1.50 s"
    )


def test_probe_module_error_lines() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pktscan.net.cli", "198.18.0.300", "-p", "443"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=False,
    )
    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert lines[0] == (
        "error: invalid target '198.18.0.300': "
        "not an IPv4/IPv6 address, CIDR, range or DNS name"
    )
    assert lines[1].startswith("hint: use an address (198.18.0.1, 2001:db8::1)")
    assert completed.stdout == ""


def test_resume_file_checked_before_the_first_syn(tmp_path: Path) -> None:
    """A resume file in a missing folder fails at once, not after the scan:
    the run ends before any socket is opened."""
    resume = tmp_path / "missing" / "scan.resume"
    result = CliRunner().invoke(
        app, ["198.18.0.1", "-p", "443", "--seed", "1", "--resume", str(resume)]
    )
    assert isinstance(result.exception, InputError)
    assert result.exception.message == (
        f"cannot write resume file '{resume}': No such file or directory"
    )
