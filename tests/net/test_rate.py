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


def tokens_per_second(rate: int, seconds: int, late: float = 0.0) -> list[int]:
    """Count the tokens taken in each second, with every sleep returning
    `late` seconds after its time, as on a busy machine."""
    clock = FakeClock()

    def sleep(duration: float) -> None:
        clock.sleep(duration + late)

    bucket = TokenBucket(rate, clock=clock, sleep=sleep)
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
        assert abs(count - rate) <= max(1, rate * 0.05)


@pytest.mark.parametrize("late", [0.0001, 0.005, 0.03])
def test_bucket_rate_with_late_sleeps(late: float) -> None:
    """Sleeps stretched by the scheduler, up to 30 ms here, still give the
    rate within 5% in every second after the first."""
    rate = 10_000
    counts = tokens_per_second(rate, 4, late)
    for count in counts[1:]:
        assert abs(count - rate) <= rate * 0.05


def test_bucket_sleeps_once_per_millisecond() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100_000, clock=clock, sleep=clock.sleep)
    for _ in range(100_000):
        bucket.acquire()
    # A new bucket contains one token, then it sleeps once per 100 tokens.
    assert 990 <= len(clock.sleeps) <= 1000
    assert clock.now == pytest.approx(1.0, abs=0.002)


def test_bucket_burst_after_idle_is_bounded() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    clock.now = 60.0
    for _ in range(40):
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
