"""`pktscan capture verify` and `show` on built captures."""

from __future__ import annotations

import json
import xml.dom.minidom
from pathlib import Path

from capture_builders import TARGET, AttemptPlan, CaptureBuilder, scan_target
from typer.testing import CliRunner

from pktscan.capture.cli import app

runner = CliRunner()


def _scan_file(tmp_path: Path, plans: list[AttemptPlan]) -> tuple[Path, object]:
    builder = CaptureBuilder()
    numbers = scan_target(builder, plans)
    return builder.write(tmp_path / "scan.pcap"), numbers


def test_verify_conforming_exit_zero(tmp_path: Path) -> None:
    plans = [AttemptPlan(1, certificate=False), AttemptPlan(2)]
    path, _ = _scan_file(tmp_path, plans)
    result = runner.invoke(app, ["verify", str(path)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{path}: 24 frames, profile scan"
    assert lines[1].startswith(f"{TARGET}:443  conforms  probe open  attempts: set 1")
    assert "set 2 (certificate in packet 22, close: RST from scanner)" in lines[1]
    assert lines[-1] == "result: 0 of 1 targets deviate"


def test_verify_deviation_exit_one(tmp_path: Path) -> None:
    path, _ = _scan_file(tmp_path, [AttemptPlan(2, close="fin")])
    result = runner.invoke(app, ["verify", str(path)])

    assert result.exit_code == 1
    assert (
        "  packet 16  +0.015000s  expected RST from scanner as its last packet; "
        "seen FIN/ACK from scanner"
    ) in result.output


def test_verify_json(tmp_path: Path) -> None:
    path, _ = _scan_file(tmp_path, [AttemptPlan(3)])
    result = runner.invoke(app, ["verify", str(path), "--json", "--profile", "raw"])
    report = json.loads(result.output)

    assert result.exit_code == 1
    assert report["profile"] == "raw"
    assert report["conforms"] is False
    target = report["targets"][0]
    assert target["target"] == f"{TARGET}:443"
    assert target["attempts"][-1]["set"] == 3
    assert target["attempts"][-1]["certificate"] is True
    assert {"packet", "time", "expected", "seen"} <= set(target["deviations"][0])


def test_verify_unreadable_exit_two(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a capture")
    result = runner.invoke(app, ["verify", str(path)])

    assert result.exit_code == 2
    assert "unknown magic number" in result.output
    assert "hint:" in result.output


def test_verify_empty_capture_exit_one(tmp_path: Path) -> None:
    path = CaptureBuilder().write(tmp_path / "empty.pcap")
    result = runner.invoke(app, ["verify", str(path)])

    assert result.exit_code == 1
    assert "result: no target traffic found" in result.output


def test_verify_truncated_exit_one(tmp_path: Path) -> None:
    path, _ = _scan_file(tmp_path, [AttemptPlan(3)])
    path.write_bytes(path.read_bytes()[:-20])
    result = runner.invoke(app, ["verify", str(path)])

    assert result.exit_code == 1
    assert "damage: reading stopped at packet 16 at byte offset" in result.output


def test_show_ladder_rows(tmp_path: Path) -> None:
    plans = [AttemptPlan(1, certificate=False), AttemptPlan(3)]
    path, _ = _scan_file(tmp_path, plans)
    svg = tmp_path / "ladder.svg"
    result = runner.invoke(app, ["show", str(path), "--svg", str(svg)])

    assert result.exit_code == 0, result.output
    rows = {
        line.split()[0]: line
        for line in result.output.splitlines()
        if line[:6].strip().isdigit()
    }
    assert "ClientHello (SSLv2 format, set 1)" in rows["12"]
    assert rows["12"].endswith("--->")
    assert rows["14"].endswith("<---  Alert(handshake_failure)")
    assert rows["22"].endswith("<---  ServerHello, Certificate, ServerHelloDone")
    assert rows["24"].rstrip().endswith("RST/ACK                         --->")
    document = xml.dom.minidom.parse(str(svg))
    texts = [node.firstChild.data for node in document.getElementsByTagName("text")]
    assert "Alert(handshake_failure)" in texts
    assert "ClientHello (set 3)" in texts


def test_verify_only_deviating(tmp_path: Path) -> None:
    builder = CaptureBuilder()
    scan_target(builder, [AttemptPlan(3)], name=None)
    scan_target(builder, [AttemptPlan(3, close="fin")], server=("198.18.0.3", 443))
    path = builder.write(tmp_path / "two.pcap")
    result = runner.invoke(app, ["verify", str(path), "--only-deviating"])

    assert result.exit_code == 1
    assert f"{TARGET}:443" not in result.output
    assert "198.18.0.3:443  DEVIATES" in result.output
    assert result.output.splitlines()[-1] == "result: 1 of 2 targets deviate"
