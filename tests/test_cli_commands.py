"""Which command modules `pktscan` loads for a command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import sys
from pktscan import cli
cli.add_commands(sys.argv[1:])
names = sorted(
    [group.name for group in cli.app.registered_groups]
    + [command.name for command in cli.app.registered_commands if command.name]
)
heavy = sorted(m for m in ("pktscan.capture.checker", "psycopg") if m in sys.modules)
print(names, heavy)
"""

EVERY = "['capture', 'grab', 'inventory', 'lab', 'probe', 'report']"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["scan", "198.18.0.10", "-p", "443"], "[] []"),
        (["-v", "hello", "--set", "1"], "[] []"),
        (["capture", "verify", "x.pcap"], "['capture'] ['pktscan.capture.checker']"),
        (["probe", "198.18.0.0/30", "-p", "80"], "['probe'] []"),
        ([], f"{EVERY} ['pktscan.capture.checker']"),
        (["--help"], f"{EVERY} ['pktscan.capture.checker']"),
        (["scna"], f"{EVERY} ['pktscan.capture.checker']"),
    ],
)
def test_commands_registered_for_a_command_line(argv: list[str], expected: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CHECK, *argv],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert completed.stdout.strip() == expected


def test_lab_exec_without_the_lab_exits_2(tmp_path: Path) -> None:
    """A lab that is not up is a usage error, distinct from the exit
    status 1 of the command that would have run."""
    completed = subprocess.run(
        [sys.executable, "-m", "pktscan", "lab", "exec", "--name", "pktscan-absent",
         "--state-dir", str(tmp_path), "--", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "error: lab 'pktscan-absent' is not up" in completed.stderr
    assert "hint: pktscan lab up --name pktscan-absent" in completed.stderr


def test_hello_raw_refuses_a_terminal() -> None:
    """Binary bytes are not written to a terminal; `script` gives the
    command one."""
    completed = subprocess.run(
        ["script", "-qec", f"{sys.executable} -m pktscan hello --format raw",
         "/dev/null"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "error: --format raw writes binary bytes" in completed.stdout


def test_hello_raw_to_a_pipe() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pktscan", "hello", "--set", "2", "--format", "raw"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    # Set 2 is an SSL 3.0/TLS record: handshake content type, then a version.
    assert completed.stdout[:1] == b"\x16"
    assert completed.stdout[1:2] == b"\x03"
