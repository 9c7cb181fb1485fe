"""Tests for the token bucket, on a simulated clock."""

from __future__ import annotations

import pytest

from pktscan.net.rate import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def tokens_per_second(rate: int, seconds: int) -> list[int]:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    counts = [0] * seconds
    while clock.now < seconds:
        bucket.acquire()
        if clock.now < seconds:
            counts[int(clock.now)] += 1
    return counts


@pytest.mark.parametrize("rate", [1, 10, 1000, 100_000])
def test_bucket_rate_each_second(rate: int) -> None:
    counts = tokens_per_second(rate, 3)
    for count in counts:
        assert rate - 1 <= count <= rate + max(1, rate // 100)


def test_bucket_burst_after_idle_is_bounded() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    clock.now = 60.0
    for _ in range(10):
        bucket.acquire()
    assert clock.sleeps == []
    bucket.acquire()
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] == pytest.approx(0.001)


def test_bucket_zero_rate_never_sleeps() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        bucket.acquire()
    assert clock.sleeps == []


def test_bucket_negative_rate() -> None:
    with pytest.raises(ValueError, match="not -1"):
        TokenBucket(-1)
