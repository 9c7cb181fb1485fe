"""The sender waits for a receiver that has fallen behind, within bounds.

The receiver process here is a stand-in object: what is under test is the
sender's decision from the receiver's caught-up marks, which needs no
sockets."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import pytest

from pktscan.net import prober as prober_module
from pktscan.net.prober import (
    MAX_RECEIVER_LAG,
    ProbeResult,
    ProbeStats,
    RecentKeys,
    _Prober,
)


class Receiver:
    """Reports a caught-up mark after `reads_behind` reads."""

    def __init__(self, lag: float, reads_behind: int) -> None:
        self.caught_up = time.monotonic() - lag
        self.error = None
        self.reads = 0
        self.reads_behind = reads_behind

    def read(self, timeout: float) -> list[object]:
        self.reads += 1
        if self.reads >= self.reads_behind:
            self.caught_up = time.monotonic()
        return []


def make_prober(receiver: Receiver) -> _Prober:
    prober = _Prober.__new__(_Prober)
    prober.child = receiver  # type: ignore[assignment]
    prober.stats = ProbeStats()
    prober.on_result = None
    prober.stall_reported = False
    return prober


def test_no_wait_when_the_receiver_keeps_up() -> None:
    receiver = Receiver(lag=0.0, reads_behind=1)
    prober = make_prober(receiver)
    prober._keep_pace_with_receiver(threading.Event(), None)
    assert receiver.reads == 0
    assert prober.stats.receiver_waits == 0


def test_waits_until_the_receiver_catches_up() -> None:
    receiver = Receiver(lag=MAX_RECEIVER_LAG + 1, reads_behind=3)
    prober = make_prober(receiver)
    prober._keep_pace_with_receiver(threading.Event(), None)
    assert receiver.reads == 3
    assert prober.stats.receiver_waits == 1


def test_wait_is_bounded_when_the_receiver_never_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prober_module, "MAX_RECEIVER_PAUSE", 0.05)
    receiver = Receiver(lag=MAX_RECEIVER_LAG + 1, reads_behind=10**9)
    prober = make_prober(receiver)
    started = time.monotonic()
    prober._keep_pace_with_receiver(threading.Event(), None)
    assert receiver.reads >= 1
    assert time.monotonic() - started < 1.0
    assert prober.stats.receiver_waits == 1


def test_stop_ends_the_wait() -> None:
    receiver = Receiver(lag=MAX_RECEIVER_LAG + 1, reads_behind=10**9)
    prober = make_prober(receiver)
    stop = threading.Event()
    stop.set()
    prober._keep_pace_with_receiver(stop, None)
    assert receiver.reads == 0


def test_verdicts_go_on_without_a_stopped_receiver() -> None:
    """A receiver with no caught-up mark for longer than MAX_RECEIVER_STALL
    no longer delays the verdicts: an expired probe is reported filtered."""
    receiver = Receiver(lag=prober_module.MAX_RECEIVER_STALL + 1, reads_behind=10**9)
    prober = make_prober(receiver)
    results: list[ProbeResult] = []
    prober.on_result = results.append
    prober.start = time.monotonic() - 60
    prober.pending = OrderedDict()
    prober.pending[(bytes([198, 18, 0, 2]), 443)] = (time.monotonic() - 1, 1, 0.0)
    prober.retries = 0
    prober.seen = RecentKeys(1 << 10, 64)
    prober.log_results = False
    prober.stall_reported = False
    prober.on_progress = None
    prober._check(time.monotonic())
    assert [(r.ip, r.port, r.state) for r in results] == [
        ("198.18.0.2", 443, "filtered")
    ]
    assert prober.stall_reported


def test_no_wait_once_a_stall_was_reported() -> None:
    """After the stall warning, sending no longer waits for the receiver."""
    receiver = Receiver(lag=MAX_RECEIVER_LAG + 1, reads_behind=10**9)
    prober = make_prober(receiver)
    prober.stall_reported = True
    prober._keep_pace_with_receiver(threading.Event(), None)
    assert receiver.reads == 0
