"""The sender waits for a receiver that has fallen behind, within bounds.

The receiver process here is a stand-in object: what is under test is the
sender's decision from the receiver's caught-up marks, which needs no
sockets."""

from __future__ import annotations

import threading
import time

import pytest

from pktscan.net import prober as prober_module
from pktscan.net.prober import MAX_RECEIVER_LAG, ProbeStats, _Prober


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
