"""A real scan killed with SIGKILL mid-way leaves a sound inventory.

The scan runs inside the lab's scanner namespace as a user runs it. The
test kills it by its PID once it has written some results. It then runs
SQLite's integrity check on the inventory and checks that every port in the
JSON lines written before the kill is in the inventory.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

# Enough ports that the scan is still running when the test kills it.
PORTS = "1-400"
RATE = 400
RESULTS_BEFORE_KILL = 20
WAIT_LIMIT_S = 60.0


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    # A line cut by the kill has no newline yet.
    lines = text.split("\n")[:-1]
    return [json.loads(line) for line in lines]


def test_sigkill_keeps_finished_ports(lab: Any, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    db = tmp_path / "inventory.sqlite"
    argv = [
        sys.executable, "-m", "pktscan", "scan",
        f"@{lab.manifest['targets_file']}", "-p", PORTS,
        "--rate", str(RATE), "--timeout", "3", "--quiet",
        "--out", str(out), "--db", str(db),
    ]  # fmt: skip
    process = subprocess.Popen(
        lab.exec_argv(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while time.monotonic() < deadline and process.poll() is None:
            if len(_complete_lines(out)) >= RESULTS_BEFORE_KILL:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the scan ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()

    assert process.returncode == -signal.SIGKILL
    written = {(line["ip"], line["port"]) for line in _complete_lines(out)}
    assert len(written) >= RESULTS_BEFORE_KILL

    with sqlite3.connect(db) as connection:
        (integrity,) = connection.execute("PRAGMA integrity_check").fetchone()
        foreign = connection.execute("PRAGMA foreign_key_check").fetchall()
        stored = set(
            connection.execute(
                "SELECT endpoints.address, endpoints.port FROM observations"
                " JOIN endpoints ON endpoints.id = observations.endpoint"
            ).fetchall()
        )
    assert integrity == "ok"
    assert foreign == []
    assert written <= stored
