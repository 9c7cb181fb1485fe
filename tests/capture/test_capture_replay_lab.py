"""Replay against the lab: a scan's capture must replay to the scan's results.

One scan of the whole lab runs per engine (kernel and raw), from inside the
lab's scanner namespace, with --pcap. The capture must verify under the
engine's profile. Replaying that capture must give, per target, what
the scan wrote to its JSON lines. `replay --to` then sends a reference
capture's hello to the lab's live server from inside the namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pktscan.capture.checker import check_file
from pktscan.capture.cli import app
from pktscan.capture.replay import replay_file
from pktscan.capture.sequence import Profile

pytestmark = pytest.mark.lab

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
FINGERPRINT_HEX_DIGITS = 16
SUBPROCESS_SECONDS = 600
FIELD_NAMES = ("outcome", "version", "cipher", "alert", "key exchange", "chain sha256")


@dataclass
class LabScan:
    engine: str
    manifest: dict[str, Any]
    written: dict[tuple[str, int], dict[str, Any]]
    pcap: Path


# The verify profile that describes each engine's wire sequence.
PROFILES = {"kernel": Profile.SCAN, "raw": Profile.RAW}


@pytest.fixture(scope="module", params=sorted(PROFILES))
def lab_scan(
    lab: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> LabScan:
    engine = str(request.param)
    folder = tmp_path_factory.mktemp(f"replay-scan-{engine}")
    manifest = lab.manifest
    argv = [
        sys.executable, "-m", "pktscan", "scan",
        f"@{manifest['targets_file']}",
        "-p", manifest["ports"],
        "--out", str(folder / "results.jsonl"),
        "--no-db",
        "--pcap", str(folder / "scan.pcap"),
        "--rate", "2000", "--timeout", "3", "--quiet", "--engine", engine,
    ]  # fmt: skip
    process = subprocess.run(
        lab.exec_argv(argv),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    written = {}
    for line in (folder / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        written[(record["ip"], record["port"])] = record
    return LabScan(engine, manifest, written, folder / "scan.pcap")


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """Drop the result's time, which a scan and a replay take differently."""
    return {key: value for key, value in record.items() if key != "time"}


def test_lab_scan_capture_verifies(lab_scan: LabScan) -> None:
    # The same scan as scripts/demo runs, with each engine.
    report = check_file(lab_scan.pcap, PROFILES[lab_scan.engine])
    deviating = [verdict for verdict in report.targets if not verdict.conforms]

    assert report.damage is None
    assert len(report.targets) == len(lab_scan.written)
    assert deviating == []


def test_lab_scan_verify_default_profile(lab_scan: LabScan) -> None:
    # scripts/demo runs verify without --profile on the same scan's capture.
    result = CliRunner().invoke(app, ["verify", str(lab_scan.pcap)])

    assert result.exit_code == 0, result.output
    profile = PROFILES[lab_scan.engine].value
    assert result.output.splitlines()[0].endswith(f"profile {profile}")
    assert result.output.splitlines()[-1] == (
        f"result: 0 of {len(lab_scan.written)} targets deviate"
    )


def test_lab_replay_equals_scan(lab_scan: LabScan) -> None:
    report = replay_file(lab_scan.pcap)
    replayed = {
        (r.ip, r.port): json.loads(json.dumps(r.to_json())) for r in report.results
    }

    assert report.damage is None
    assert sorted(replayed) == sorted(lab_scan.written)
    for target, record in lab_scan.written.items():
        assert _comparable(replayed[target]) == _comparable(record), target


def _fields(output: str) -> dict[str, list[str]]:
    """Return each compared field's words after its name, state first."""
    fields = {}
    for line in output.splitlines():
        for name in FIELD_NAMES:
            if line.startswith(f"  {name} "):
                fields[name] = line[len(name) + 2 :].split()
    return fields


@pytest.mark.parametrize(
    ("name", "flow"),
    [
        ("tls12-only", 3),
        ("ssl2-only", 1),
        ("ssl3-intolerant", 4),
        ("raw-tls12-only", 3),
    ],
)
def test_lab_replay_to_live_server(lab: Any, name: str, flow: int) -> None:
    server_name = name.removeprefix("raw-")
    server = next(s for s in lab.manifest["servers"] if s["name"] == server_name)
    argv = [
        sys.executable, "-m", "pktscan", "capture", "replay",
        str(CAPTURES / f"{name}.pcap"),
        "--to", f"{server['address']}:{server['port']}",
        "--flow", str(flow),
    ]  # fmt: skip
    process = subprocess.run(
        lab.exec_argv(argv),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=False,
    )
    fields = _fields(process.stdout)

    # Each lab issues new certificates, so only the chain differs.
    assert process.returncode == 1, process.stderr
    for name in FIELD_NAMES[:-1]:
        assert fields[name][0] == "same", fields[name]
    chain = fields["chain sha256"]
    assert chain[0] == "DIFFERS"
    assert chain[-1] == server["leaf_sha256"][:FINGERPRINT_HEX_DIGITS]
