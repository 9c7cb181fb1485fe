"""A writer killed with SIGKILL mid-scan leaves a consistent inventory."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

BATCH_SIZE = 7
MAX_RESULTS = 200_000
# Commits to wait for before the kill.
KILL_AFTER = 40 * BATCH_SIZE
# Safety bound on the wait, not a timing assertion.
MAX_WAIT_SECONDS = 120.0

WRITER = Path(__file__).with_name("kill_writer.py")


def read_until_committed(process: subprocess.Popen[str]) -> tuple[int, list[str]]:
    """Read the writer's lines until KILL_AFTER results are committed."""
    assert process.stdout is not None
    committed = 0
    lines: list[str] = []
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while committed < KILL_AFTER and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith("committed "):
            committed = int(line.split()[1])
    return committed, lines


def test_sigkill_keeps_committed_results(tmp_path: Path) -> None:
    db = tmp_path / "inventory.sqlite"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WRITER.parent), *sys.path]))
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), str(BATCH_SIZE), str(MAX_RESULTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        committed, lines = read_until_committed(process)
        os.kill(process.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=MAX_WAIT_SECONDS)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    assert committed >= KILL_AFTER, (lines[-5:], stderr)
    assert "finished" not in lines
    assert process.returncode == -signal.SIGKILL

    connection = sqlite3.connect(db)
    integrity = connection.execute("PRAGMA integrity_check").fetchall()
    foreign_keys = connection.execute("PRAGMA foreign_key_check").fetchall()
    stored = connection.execute("SELECT count(*) FROM observations").fetchone()[0]
    ids = connection.execute("SELECT min(id), max(id) FROM observations").fetchone()
    endpoints = connection.execute("SELECT count(*) FROM endpoints").fetchone()[0]
    orphans = connection.execute(
        "SELECT count(*) FROM observations AS o"
        " LEFT JOIN chain_certificates AS cc ON cc.chain = o.chain"
        " LEFT JOIN certificates AS c ON c.sha256 = cc.certificate"
        " WHERE c.sha256 IS NULL"
    ).fetchone()[0]
    connection.close()

    assert integrity == [("ok",)]
    assert foreign_keys == []
    # Every result reported committed is there, and only whole batches.
    assert stored >= committed
    assert stored % BATCH_SIZE == 0
    assert ids == (1, stored)
    assert endpoints == stored
    assert orphans == 0


def test_two_writers_share_file(tmp_path: Path) -> None:
    db = tmp_path / "inventory.sqlite"
    results_each = 300
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WRITER.parent), *sys.path]))
    command = [sys.executable, str(WRITER), str(db), str(BATCH_SIZE), str(results_each)]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = []
    try:
        for process in processes:
            stdout, _ = process.communicate(timeout=MAX_WAIT_SECONDS)
            outputs.append(stdout)
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

    connection = sqlite3.connect(db)
    observations = connection.execute("SELECT count(*) FROM observations").fetchone()
    endpoints = connection.execute("SELECT count(*) FROM endpoints").fetchone()
    scans = connection.execute("SELECT count(*) FROM scans").fetchone()
    integrity = connection.execute("PRAGMA integrity_check").fetchall()
    connection.close()

    assert [process.returncode for process in processes] == [0, 0]
    assert all(output.endswith("finished\n") for output in outputs)
    assert observations == (2 * results_each,)
    assert endpoints == (results_each,)
    assert scans == (2,)
    assert integrity == [("ok",)]
