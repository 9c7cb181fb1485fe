"""Shards and resumed scans of ``pktscan probe``, as separate processes.

Each test runs the command in a scanner namespace against a target namespace
that has a listener on one port, nothing on the others, and an nft drop on
one more. Both the IPv4 and the IPv6 address of the target are probed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from probe_netns import CLOSED_PORT, FILTERED_PORT, OPEN_PORT, REPO, NamespacePair

pytestmark = pytest.mark.rawsock

SHARD_COUNT = 3
# The closed range makes the space large enough that every shard gets probes.
PORTS = f"{OPEN_PORT},{CLOSED_PORT},{FILTERED_PORT},20000-20099"
PROBE_COUNT = 2 * 103

Line = tuple[str, int, str]


def prepare(pair: NamespacePair) -> list[str]:
    pair.start_listener("::", OPEN_PORT)
    pair.drop_port(FILTERED_PORT)
    return [pair.target_ip, pair.target_ip6]


def probe_command(pair: NamespacePair, *arguments: str) -> list[str]:
    return [
        "ip", "netns", "exec", pair.scanner, sys.executable, "-m",
        "pktscan.net.cli", *arguments,
    ]  # fmt: skip


def read_lines(path: Path) -> list[Line]:
    lines = []
    for text in path.read_text().splitlines():
        item = json.loads(text)
        lines.append((item["ip"], item["port"], item["state"]))
    return lines


def test_shard_union_equals_unsharded_scan(
    namespace_pair: NamespacePair, tmp_path: Path
) -> None:
    pair = namespace_pair
    targets = prepare(pair)
    # A generous wait and two retransmissions, so that a loaded machine
    # does not turn a slow RST into a filtered port in one of the runs.
    common = [
        "-p", PORTS, "--rate", "400", "--wait", "1", "--retries", "2",
        "--seed", "11",
    ]  # fmt: skip

    whole = tmp_path / "whole.jsonl"
    completed = pair.run_in_scanner(
        "-m", "pktscan.net.cli", *targets, *common, "-o", str(whole)
    )
    assert completed.returncode == 0, completed.stderr

    # The shards run at the same time, as on separate machines.
    processes = []
    for index in range(SHARD_COUNT):
        output = tmp_path / f"shard{index}.jsonl"
        arguments = [*targets, *common, "--shard", f"{index}/{SHARD_COUNT}"]
        process = subprocess.Popen(
            probe_command(pair, *arguments, "-o", str(output)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        pair.processes.append(process)
        processes.append((process, output))
    shards = []
    for process, output in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors
        shards.append(read_lines(output))

    expected = read_lines(whole)
    assert len(expected) == PROBE_COUNT
    for lines in shards:
        assert lines, "a shard probed nothing"
    union = [line for lines in shards for line in lines]
    assert len(union) == PROBE_COUNT
    keys = [(ip, port) for ip, port, _ in union]
    assert len(set(keys)) == len(keys), "shards overlap"
    assert set(keys) == {(ip, port) for ip, port, _ in expected}
    assert sorted(union) == sorted(expected)
    states = {state for _, _, state in expected}
    assert states == {"open", "closed", "filtered"}


def test_resume_after_max_runtime(
    namespace_pair: NamespacePair, tmp_path: Path
) -> None:
    pair = namespace_pair
    targets = prepare(pair)
    output = tmp_path / "scan.jsonl"
    resume = tmp_path / "scan.resume"
    # About 2 s of probes at this rate, so that a 0.5 s run stops early. The
    # wait is generous so that a loaded machine does not turn a slow answer,
    # such as the first one over IPv6 after neighbour discovery, into a
    # filtered port.
    arguments = [
        *targets, "-p", PORTS, "--rate", "100", "--wait", "1",
        "--retries", "2", "-o", str(output), "--resume", str(resume),
    ]  # fmt: skip

    first = pair.run_in_scanner(
        "-m", "pktscan.net.cli", *arguments, "--max-runtime", "0.5"
    )
    assert first.returncode == 0, first.stderr
    assert "--resume" in first.stderr
    state = json.loads(resume.read_text())
    assert state["position"] > 0
    first_count = len(read_lines(output))
    assert 0 < first_count < PROBE_COUNT

    # No --seed: the second run takes the seed from the resume file.
    second = pair.run_in_scanner("-m", "pktscan.net.cli", *arguments)
    assert second.returncode == 0, second.stderr
    assert not resume.exists()

    lines = read_lines(output)
    assert len(lines) == PROBE_COUNT
    keys = {(ip, port) for ip, port, _ in lines}
    assert len(keys) == PROBE_COUNT
    open_lines = [line for line in lines if line[2] == "open"]
    assert sorted(open_lines) == sorted(
        (ip, OPEN_PORT, "open") for ip in (pair.target_ip, pair.target_ip6)
    )


def test_resume_rejects_other_scan(
    namespace_pair: NamespacePair, tmp_path: Path
) -> None:
    pair = namespace_pair
    resume = tmp_path / "scan.resume"
    resume.write_text(
        json.dumps(
            {
                "format": 1,
                "seed": 5,
                "shard": [0, 1],
                "ranges": ["198.18.0.1"],
                "ports": [443],
                "position": 1,
            }
        )
    )

    completed = pair.run_in_scanner(
        "-m", "pktscan.net.cli", pair.target_ip, "-p", "80", "--resume", str(resume)
    )

    assert completed.returncode == 2
    assert completed.stderr.startswith(
        f"error: resume file '{resume}' is for another scan (different ranges)"
    )
