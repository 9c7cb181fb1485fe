"""The raw engine against the lab: same results as the kernel engine, and a
capture that shows one pass per attempt with no RST from the kernel.

Each engine scans the whole lab once per module, from the lab's scanner
namespace, as a user runs it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt
import pytest

pytestmark = pytest.mark.lab

SCAN_TIMEOUT = 600
RAW_PORTS = range(61001, 65536)
# The recorder writes LINKTYPE_LINUX_SLL2: a 20-byte header whose first two
# bytes are the EtherType.
SLL2_HEADER_LEN = 20
ETHERTYPE_IPV4 = b"\x08\x00"

# An address of the lab's scanner network that no interface carries.
FOREIGN_SOURCE = "198.18.0.250"

# (our port, server address, server port) of one connection.
Flow = tuple[int, str, int]


@dataclass
class ScanRun:
    results: dict[tuple[str, int], dict[str, Any]]
    folder: Path
    process: subprocess.CompletedProcess[str]


def _scan(lab: Any, folder: Path, name: str, *extra: str) -> ScanRun:
    manifest = lab.manifest
    argv = [
        sys.executable, "-m", "pktscan", "scan",
        f"@{manifest['targets_file']}",
        "-p", manifest["ports"],
        "--out", str(folder / f"{name}.jsonl"),
        "--no-db",
        "--pcap", str(folder / f"{name}.pcap"),
        "--rate", "2000", "--timeout", "3", "--quiet",
        *extra,
    ]  # fmt: skip
    process = subprocess.run(
        lab.exec_argv(argv),
        capture_output=True,
        text=True,
        timeout=SCAN_TIMEOUT,
        check=False,
    )
    results = {}
    output = folder / f"{name}.jsonl"
    if output.exists():
        for line in output.read_text().splitlines():
            record = json.loads(line)
            results[(record["ip"], record["port"])] = record
    return ScanRun(results, folder, process)


@pytest.fixture(scope="module")
def scans(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScanRun]:
    folder = tmp_path_factory.mktemp("raw")
    return {
        "default": _scan(lab, folder, "default"),
        "kernel": _scan(lab, folder, "kernel", "--engine", "kernel"),
        "foreign": _scan(lab, folder, "foreign", "--source-ip", FOREIGN_SOURCE),
    }


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without what differs between any two scans: the time and
    the source ports."""
    record = json.loads(json.dumps(record))
    record.pop("time")
    if record["tls"] is not None:
        for attempt in record["tls"]["attempts"]:
            attempt.pop("source_port")
    return record


def _nft_tables(lab: Any) -> list[str]:
    completed = subprocess.run(
        lab.exec_argv(["nft", "-j", "list", "tables", "inet"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    document = json.loads(completed.stdout) if completed.stdout.strip() else {}
    return [
        item["table"]["name"]
        for item in document.get("nftables", [])
        if "table" in item and item["table"]["name"].startswith("pktscan_")
    ]


def test_default_engine_is_raw_as_root(scans: dict[str, ScanRun]) -> None:
    run = scans["default"]
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    assert "raw engine" in run.process.stderr


def test_kernel_engine_still_runs(scans: dict[str, ScanRun]) -> None:
    run = scans["kernel"]
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    assert "kernel engine" in run.process.stderr


def test_both_engines_give_identical_results(
    lab: Any, scans: dict[str, ScanRun]
) -> None:
    raw, kernel = scans["default"].results, scans["kernel"].results
    servers = lab.manifest["servers"]
    assert len(raw) >= len(servers)
    assert raw.keys() == kernel.keys()
    for key in sorted(raw):
        assert _comparable(raw[key]) == _comparable(kernel[key]), key


def test_raw_capture_verifies_against_the_raw_profile(
    scans: dict[str, ScanRun],
) -> None:
    pcap = scans["default"].folder / "default.pcap"
    verify = subprocess.run(
        [sys.executable, "-m", "pktscan", "capture", "verify", "--json",
         "--profile", "raw", str(pcap)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]
    report = json.loads(verify.stdout)
    assert report["targets"]
    assert all(target["conforms"] for target in report["targets"])


def _scanner_segments(pcap: Path, scanner: str) -> list[tuple[Flow, int, int]]:
    """Return ((our port, server, server port), flags, payload length) of
    every TCP segment the scanner sent from the raw engine's port range."""
    segments = []
    with pcap.open("rb") as handle:
        for _timestamp, frame in dpkt.pcap.Reader(handle):
            if frame[:2] != ETHERTYPE_IPV4:
                continue
            ip = dpkt.ip.IP(frame[SLL2_HEADER_LEN:])
            if not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            source = ".".join(str(byte) for byte in ip.src)
            if source != scanner or tcp.sport not in RAW_PORTS:
                continue
            server = ".".join(str(byte) for byte in ip.dst)
            segments.append(((tcp.sport, server, tcp.dport), tcp.flags, len(tcp.data)))
    return segments


def test_raw_capture_has_no_kernel_rst(lab: Any, scans: dict[str, ScanRun]) -> None:
    """Every RST from the scanner follows its request on that connection.
    The kernel's RST would follow the SYN/ACK, before any request."""
    pcap = scans["default"].folder / "default.pcap"
    scanner = lab.manifest["scanner_address"]
    requested: set[Flow] = set()
    resets = 0
    for flow, flags, length in _scanner_segments(pcap, scanner):
        if length:
            requested.add(flow)
        if flags & dpkt.tcp.TH_RST:
            resets += 1
            assert flow in requested, f"RST before any request on {flow}"
    assert resets > 0


def test_source_ip_the_kernel_does_not_own(lab: Any, scans: dict[str, ScanRun]) -> None:
    """From an address no interface carries, the raw engine finds what it
    finds from its own, sends every segment from that address, and only
    ever resets after its request: the kernel never receives the connections."""
    run = scans["foreign"]
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    foreign, default = run.results, scans["default"].results
    assert foreign.keys() == default.keys()
    for key in sorted(foreign):
        assert _comparable(foreign[key]) == _comparable(default[key]), key

    pcap = run.folder / "foreign.pcap"
    assert not _scanner_segments(pcap, lab.manifest["scanner_address"])
    requested: set[Flow] = set()
    resets = 0
    for flow, flags, length in _scanner_segments(pcap, FOREIGN_SOURCE):
        if length:
            requested.add(flow)
        if flags & dpkt.tcp.TH_RST:
            resets += 1
            assert flow in requested, f"RST before any request on {flow}"
    assert resets > 0


def test_no_table_left_after_the_scans(lab: Any, scans: dict[str, ScanRun]) -> None:
    assert _nft_tables(lab) == []


def test_killed_scan_table_swept_by_the_next(lab: Any, tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "pktscan", "scan",
        f"@{lab.manifest['targets_file']}", "-p", lab.manifest["ports"],
        "--no-db", "--rate", "5", "--quiet", "--engine", "raw",
    ]  # fmt: skip
    process = subprocess.Popen(
        lab.exec_argv(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        left: list[str] = []
        for _ in range(100):
            left = _nft_tables(lab)
            if left:
                break
            time.sleep(0.1)
        assert len(left) == 1
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    # `ip netns exec` ran the scan in place, so the kill reached pktscan.
    assert _nft_tables(lab) == left

    run = _scan(lab, tmp_path, "after-kill", "--engine", "raw")
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    assert _nft_tables(lab) == []


def test_scan_with_nothing_to_do_ends_cleanly(lab: Any) -> None:
    """Every target excluded: the raw engine starts, runs its self-test and
    stops at once, with no traceback from the self-test's server."""
    process = subprocess.run(
        lab.exec_argv([
            sys.executable, "-m", "pktscan", "scan", "198.18.0.10", "-p", "443",
            "--exclude", "198.18.0.10/32", "--no-db", "--no-dns", "--quiet",
            "--engine", "raw",
        ]),
        capture_output=True, text=True, timeout=SCAN_TIMEOUT, check=False,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    assert "scan: no ports" in process.stderr
    assert "Traceback" not in process.stderr
    assert "Exception in callback" not in process.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "10.9.9.9",
            "invalid --source-ip 10.9.9.9: not inside the network of any interface",
        ),
        (
            "198.18.0.255",
            "invalid --source-ip 198.18.0.255: it is the network or broadcast"
            " address of 198.18.0.0/24",
        ),
        (
            "198.18.0.0",
            "invalid --source-ip 198.18.0.0: it is the network or broadcast"
            " address of 198.18.0.0/24",
        ),
        # A lab server's address: the server replies to the ARP probe.
        ("198.18.0.11", "--source-ip 198.18.0.11 is in use: "),
    ],
)
def test_source_ip_that_cannot_work(lab: Any, source: str, message: str) -> None:
    """Addresses that no response could reach fail before the first SYN."""
    process = subprocess.run(
        lab.exec_argv([
            sys.executable, "-m", "pktscan", "scan", "198.18.0.10", "-p", "443",
            "--no-db", "--no-dns", "--quiet", "--source-ip", source,
        ]),
        capture_output=True, text=True, timeout=SCAN_TIMEOUT, check=False,
    )  # fmt: skip
    assert process.returncode == 2, process.stderr[-3000:]
    assert f"error: {message}" in process.stderr
    assert "hint: " in process.stderr
    assert "Traceback" not in process.stderr
