"""Lab up and down: nothing left behind, after success, failure or a crash.

Each test here brings up its own lab under a name unique to the run and
takes it down in a finalizer, so a failing test leaves nothing either.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pktscan.errors import LabError
from pktscan.lab import Lab
from pktscan.lab.plan import LabNames

pytestmark = pytest.mark.lab


def unique_lab_name(prefix: str) -> str:
    """Return a lab name that no other test run uses."""
    # Not imported from tests/conftest.py: with several conftest.py files
    # in folders without __init__.py, `import conftest` may find another.
    return f"{prefix}-{secrets.token_hex(4)}"


# Bounds the wait for a background `lab up` to start its first server.
START_WAIT_S = 30.0


@pytest.fixture
def lab_name() -> Iterator[str]:
    """A fresh lab name; whatever lab has it is taken down afterwards."""
    name = unique_lab_name("pkt-life")
    yield name
    Lab(name).down()


def _recorded_pids(state_dir: Path) -> list[tuple[int, int]]:
    data = json.loads((state_dir / "pids.json").read_text())
    return [(item["pid"], item["start_time"]) for item in data["processes"]]


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text`, the test itself excluded."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _assert_nothing_left(name: str, pids: list[tuple[int, int]]) -> None:
    names = LabNames.from_name(name)
    netns = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert names.scanner_namespace not in netns.split()
    assert names.target_namespace not in netns.split()
    links = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert names.scanner_link not in links
    assert names.target_link not in links
    tables = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    assert names.nft_table not in tables
    assert not Path(f"/etc/netns/{names.scanner_namespace}").exists()
    netns_config = Path("/etc/netns")
    if netns_config.exists():
        assert any(netns_config.iterdir()), "empty /etc/netns left behind"
    assert not Path(f"/run/pktscan/lab/{name}").exists()
    state_root = Path("/run/pktscan/lab")
    if state_root.exists():
        assert any(state_root.iterdir()), "empty /run/pktscan/lab left behind"
    for pid, start_time in pids:
        assert _start_time(pid) != start_time, f"PID {pid} still runs"
    assert _processes_mentioning(f"/run/pktscan/lab/{name}/") == []


def test_up_down_leaves_nothing(lab_name: str) -> None:
    lab = Lab(lab_name)
    manifest = lab.up()
    pids = _recorded_pids(lab.state_dir)
    # dnsmasq, 8 servers, 3 fronts with one backend each, 10 finding servers
    assert len(pids) == 24
    assert all(_start_time(pid) == start for pid, start in pids)
    assert manifest["name"] == lab_name

    lab.down()

    _assert_nothing_left(lab_name, pids)


def test_context_manager_brings_lab_up_and_down(lab_name: str) -> None:
    with Lab(lab_name) as lab:
        pids = _recorded_pids(lab.state_dir)
        assert Lab.load(lab_name).manifest == lab.manifest
    _assert_nothing_left(lab_name, pids)


def test_down_is_idempotent(lab_name: str) -> None:
    lab = Lab(lab_name)
    lab.down()
    lab.up()
    lab.down()
    lab.down()
    _assert_nothing_left(lab_name, [])


def test_up_rejects_existing_lab(lab: Lab) -> None:
    with pytest.raises(LabError) as caught:
        Lab(lab.name).up()
    assert "already exists" in caught.value.message
    assert caught.value.hint == f"pktscan lab down --name {lab.name}"
    assert all(entry["ok"] for entry in lab.status())


def test_failed_up_removes_everything(
    lab_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PATH with only ip and nft: setup works, but nginx and dnsmasq are
    # not found, so their servers exit at once.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "nft"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))

    with pytest.raises(LabError) as caught:
        Lab(lab_name).up()

    message = caught.value.message
    assert "tls10-12 (198.18.0.10:443) is not ready" in message
    assert 'exec of "nginx" failed' in message
    match = re.search(r"log (/\S+)/tls10-12\.log", message)
    assert match is not None
    log_dir = Path(match.group(1))
    try:
        assert "nginx" in (log_dir / "tls10-12.log").read_text()
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    _assert_nothing_left(lab_name, [])


def test_down_after_killed_up(lab_name: str) -> None:
    state_dir = Path(f"/run/pktscan/lab/{lab_name}")
    process = subprocess.Popen(
        [sys.executable, "-m", "pktscan.lab.cli", "up", "--name", lab_name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline and process.poll() is None:
            if (state_dir / "pids.json").exists():
                break
            time.sleep(0.02)
        assert (state_dir / "pids.json").exists()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    pids = _recorded_pids(state_dir)
    assert pids

    Lab(lab_name).down()

    _assert_nothing_left(lab_name, pids)


def test_cli_up_status_exec_down(lab_name: str) -> None:
    cli = [sys.executable, "-m", "pktscan.lab.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], capture_output=True, text=True, timeout=120, check=False
        )

    assert run("up", "--name", lab_name).returncode == 0
    second = run("up", "--name", lab_name)
    assert second.returncode == 1
    assert f"hint: pktscan lab down --name {lab_name}" in second.stderr

    status = run("status", "--name", lab_name, "--json")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert [entry["ok"] for entry in report] == [True] * 22

    exited = run("exec", "--name", lab_name, "--", "sh", "-c", "exit 7")
    assert exited.returncode == 7
    address = run("exec", "--name", lab_name, "--", "ip", "-o", "-4", "addr")
    assert "inet 198.18.0.1/24" in address.stdout

    assert run("down", "--name", lab_name).returncode == 0
    assert run("down", "--name", lab_name).returncode == 0
    assert run("status", "--name", lab_name).returncode == 1
    _assert_nothing_left(lab_name, [])
