"""Tests for the probe command's result lines, progress line, loss warning
and the prober's set of recently answered probes."""

from __future__ import annotations

import io
import ipaddress
import json

from hypothesis import given
from hypothesis import strategies as st

from pktscan.net.cli import format_loss_warning
from pktscan.net.output import (
    OutputFormat,
    ProgressLine,
    ResultWriter,
    format_result,
)
from pktscan.net.prober import ProbeResult, ProbeStats, RecentKeys
from pktscan.targets import TargetSpace

RESULT = ProbeResult("198.18.0.9", 443, "open", 64, 0.0012, 1_700_000_000.75)


def test_format_result_list() -> None:
    line = format_result(RESULT, OutputFormat.list)
    assert line == "open tcp 443 198.18.0.9 1700000000\n"


@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(0, 65535),
    st.sampled_from(["open", "closed", "filtered"]),
    st.one_of(st.none(), st.integers(0, 255)),
    st.one_of(st.none(), st.floats(0, 600, allow_nan=False)),
    st.floats(0, 4e9, allow_nan=False),
)
def test_json_line_is_what_json_dumps_writes(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    state: str,
    ttl: int | None,
    rtt: float | None,
    when: float,
) -> None:
    result = ProbeResult(str(address), port, state, ttl, rtt, when)  # type: ignore[arg-type]
    assert result.json_line() == json.dumps(result.to_json()) + "\n"


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["open", "closed", "filtered"]),
            st.one_of(st.none(), st.integers(0, 255)),
            st.one_of(st.none(), st.floats(0, 600, allow_nan=False)),
            st.sampled_from([1_700_000_000.25, 1_700_000_000.5, 0.0, 5.0]),
        ),
        max_size=20,
    )
)
def test_writer_lines_are_what_json_dumps_writes(
    rows: list[tuple[str, int | None, float | None, float]],
) -> None:
    """The writer reuses the text of a repeated time; every line must still
    be exactly json.dumps of its own result."""
    sink = io.StringIO()
    writer = ResultWriter(sink, OutputFormat.json)
    results = [
        ProbeResult("198.18.0.9", 443, state, ttl, rtt, when)  # type: ignore[arg-type]
        for state, ttl, rtt, when in rows
    ]
    for result in results:
        writer.write(result)
    expected = "".join(json.dumps(r.to_json()) + "\n" for r in results)
    assert sink.getvalue() == expected


def test_format_result_json() -> None:
    line = format_result(RESULT, OutputFormat.json)
    assert line.endswith("\n")
    assert json.loads(line) == {
        "ip": "198.18.0.9",
        "port": 443,
        "state": "open",
        "ttl": 64,
        "rtt": 0.0012,
        "time": 1_700_000_000.75,
    }


def test_result_writer_flushes_first_line() -> None:
    sink = io.StringIO()
    writer = ResultWriter(sink, OutputFormat.list)
    writer.write(RESULT)
    writer.write(RESULT)
    writer.flush()
    assert sink.getvalue().splitlines() == ["open tcp 443 198.18.0.9 1700000000"] * 2


def test_progress_line_fields() -> None:
    space = TargetSpace(["198.18.0.0/24"], [443], seed=2)
    walk = space.walk()
    iterator = iter(walk)
    for _ in range(100):
        next(iterator)
    stats = ProbeStats(sent=100, received=40, open=10, closed=30, elapsed=2.0)
    line = ProgressLine(walk, 0, space.shard_steps).format(stats)
    done = walk.position / space.shard_steps
    eta = 2.0 * (1 - done) / done
    assert line == (
        f"probe: {done * 100:5.1f}%, 100 SYN sent (50/s), 40 received, "
        f"10 open (10.00%), 30 closed, 0 filtered, {eta:.0f} s left"
    )


def test_progress_line_after_walk() -> None:
    space = TargetSpace(["198.18.0.0/30"], [443], seed=2)
    walk = space.walk()
    list(walk)
    line = ProgressLine(walk, 0, space.shard_steps).format(ProbeStats(sent=4))
    assert line.startswith("probe: 100.0%, 4 SYN sent")
    assert line.endswith("waiting for responses")


def test_loss_warning_only_on_drops() -> None:
    assert format_loss_warning(ProbeStats(sent=10)) == ""
    warning = format_loss_warning(ProbeStats(sent=10, kernel_drops=3, send_drops=1))
    assert warning == (
        "warning: 3 received packets dropped by the kernel and 1 probes not "
        "sent; open ports may be missing, so lower --rate and probe again"
    )


def test_recent_keys_remember_last_generation() -> None:
    keys = RecentKeys(1 << 16, 100)
    added = [(bytes([198, 18, 0, i % 256]), 1000 + i) for i in range(250)]
    for key in added:
        keys.add(key)
    # After 250 additions with generations of 100, the last 50 are in the
    # current bitmap and the 100 before them in the previous one.
    for key in added[100:]:
        assert key in keys


def test_recent_keys_forget_old_generations() -> None:
    keys = RecentKeys(1 << 16, 10)
    old = (bytes([198, 18, 0, 1]), 443)
    keys.add(old)
    for port in range(20, 40):
        keys.add((bytes([198, 18, 0, 2]), port))
    assert old not in keys
