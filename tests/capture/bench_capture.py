"""Measure the checker and the recorder; run by hand, not collected by pytest.

    .venv/bin/python tests/capture/bench_capture.py check 5000
    .venv/bin/python tests/capture/bench_capture.py record 200000

"check N" builds a scan capture of N targets (probe, PTR, two attempts each)
and times reading, grouping and checking it. "record N" sends N UDP
datagrams to a closed port on 127.0.0.1 while PcapRecorder records them,
then prints how many were written and how many the kernel dropped. It needs
root, and sends only to loopback.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[2])]

from capture_builders import AttemptPlan, CaptureBuilder, scan_target  # noqa: E402

from pktscan.capture.checker import check_file  # noqa: E402
from pktscan.capture.recorder import PcapRecorder  # noqa: E402
from pktscan.capture.sequence import Profile  # noqa: E402

# The UDP discard port. Nothing has to listen, because the recorder sees the
# datagrams whether or not a socket receives them.
BENCH_PORT = 9


def bench_check(targets: int, folder: Path) -> None:
    builder = CaptureBuilder()
    for index in range(targets):
        address = f"198.18.{index // 250}.{index % 250 + 1}"
        plans = [AttemptPlan(1, certificate=False), AttemptPlan(3)]
        scan_target(builder, plans, server=(address, 443), name=None)
    path = builder.write(folder / "bench.pcap")
    started = time.perf_counter()
    report = check_file(path, Profile.SCAN)
    elapsed = time.perf_counter() - started
    print(
        f"check: {targets} targets, {report.frames} packets, "
        f"{path.stat().st_size / 1e6:.1f} MB in {elapsed:.2f} s "
        f"({report.frames / elapsed:,.0f} packets/s), conforms={report.conforms}"
    )


def bench_record(count: int, folder: Path) -> None:
    path = folder / "record.pcap"
    payload = bytes(64)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with PcapRecorder(path, interface="lo", bpf=f"udp port {BENCH_PORT}") as recorder:
        started = time.perf_counter()
        for _ in range(count):
            sender.sendto(payload, ("127.0.0.1", BENCH_PORT))
        elapsed = time.perf_counter() - started
    stats = recorder.stop()
    sender.close()
    print(
        f"record: sent {count} in {elapsed:.2f} s ({count / elapsed:,.0f}/s), "
        f"written {stats.packets}, kernel drops {stats.kernel_drops}"
    )


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as folder:
        if mode == "check":
            bench_check(count, Path(folder))
        else:
            bench_record(count, Path(folder))


if __name__ == "__main__":
    main()
