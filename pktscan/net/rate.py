"""A token bucket that paces probes to a number of packets per second."""

from __future__ import annotations

import time
from collections.abc import Callable

# The bucket contains at most this fraction of a second's tokens, so a burst after
# an idle moment adds at most 1% to the rate of any one-second window.
BURST_SECONDS = 0.01


class TokenBucket:
    """Blocks `acquire` so that at most `rate` tokens pass per second.

    Any one-second window lets through at most rate + max(1, rate / 100)
    tokens. A rate of 0 disables pacing.
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
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._updated = clock()

    def acquire(self) -> None:
        """Take one token, sleeping until one is available."""
        if self.rate == 0:
            return
        self._refill()
        if self._tokens < 1.0:
            self._sleep((1.0 - self._tokens) / self.rate)
            self._refill()
            # A sleep that returned early still leaves the bucket short;
            # the deficit is paid back by the next sleeps, so the average
            # rate holds.
        self._tokens -= 1.0

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        self._updated = now
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
