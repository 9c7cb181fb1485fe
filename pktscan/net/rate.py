"""A token bucket that paces probes to a number of packets per second."""

from __future__ import annotations

import time
from collections.abc import Callable

# The bucket contains at most this many seconds' worth of tokens. A sleep
# that the scheduler stretches by up to this long is made up by sending the
# missed tokens at once, and a burst after an idle moment adds at most 4% to
# any one-second window.
BURST_SECONDS = 0.04
# A probe may go out up to this much ahead of its time, so that the sender
# sleeps about once a millisecond instead of once per probe at high rates.
MIN_SLEEP_SECONDS = 0.001


class TokenBucket:
    """Blocks `acquire` so that at most `rate` tokens pass per second.

    Any one-second window lets through at most
    rate * (1 + BURST_SECONDS + MIN_SLEEP_SECONDS) + 1 tokens. A rate of 0
    disables pacing.
    """

    def __init__(
        self,
        rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must be 0 or more packets per second, not {rate}")
        self.rate = rate
        self.capacity = max(1.0, rate * BURST_SECONDS)
        self._credit = rate * MIN_SLEEP_SECONDS
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._updated = clock()

    def acquire(self, count: int = 1) -> None:
        """Take `count` tokens, sleeping while more than MIN_SLEEP_SECONDS'
        worth of tokens is owed."""
        if self.rate == 0:
            return
        self._refill()
        self._tokens -= count
        if self._tokens < 0 and -self._tokens >= self._credit:
            self._sleep(-self._tokens / self.rate)
            self._refill()
            # A sleep that returned early still leaves the bucket short;
            # the deficit is paid back by the next sleeps, so the average
            # rate holds.

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        self._updated = now
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
