"""Result lines and the progress line of ``pktscan probe``."""

from __future__ import annotations

import enum
import sys
import time
from typing import TextIO

from pktscan.net.prober import ProbeResult, ProbeStats
from pktscan.targets import Walk

# Lines are flushed at most this often, so that a reader of the output sees
# results within this delay without one write system call per line.
FLUSH_SECONDS = 0.2


class OutputFormat(enum.StrEnum):
    """Format of the result lines."""

    json = "json"
    list = "list"


class ResultWriter:
    """Writes one line per result and flushes every FLUSH_SECONDS."""

    def __init__(self, sink: TextIO, output_format: OutputFormat) -> None:
        self.sink = sink
        self.format = output_format
        self.flushed_at = 0.0
        self._time: float | None = None
        self._time_text = ""
        self._line = self._json_line if output_format is OutputFormat.json else None

    def write(self, result: ProbeResult) -> None:
        if self._line is not None:
            self.sink.write(self._line(result))
        else:
            self.sink.write(format_result(result, self.format))
        now = time.monotonic()
        if now - self.flushed_at >= FLUSH_SECONDS:
            self.flush()
            self.flushed_at = now

    def flush(self) -> None:
        self.sink.flush()

    def _json_line(self, result: ProbeResult) -> str:
        """Return `result.json_line()`, reusing the text of the last time.

        Probes that expire together share their time, so filtered lines
        often repeat the time before them, and repr of a float costs about
        0.3 us."""
        if result.time != self._time:
            self._time = result.time
            self._time_text = repr(result.time)
        return result.json_line(self._time_text)


def format_result(result: ProbeResult, output_format: OutputFormat) -> str:
    """Format one result as a line, with its newline.

    The list format is masscan's: state, protocol, port, address and Unix
    time in whole seconds, separated by spaces.
    """
    if output_format is OutputFormat.list:
        return f"{result.state} tcp {result.port} {result.ip} {int(result.time)}\n"
    return result.json_line()


class ProgressLine:
    """The progress line on stderr: probes sent, responses, hit rate, rate
    and the estimated time left, from the walk's share already taken."""

    def __init__(self, walk: Walk, start: int, steps: int) -> None:
        self.walk = walk
        self.start = start
        self.steps = steps

    def print(self, stats: ProbeStats) -> None:
        print("\r" + self.format(stats), end="", file=sys.stderr, flush=True)

    def format(self, stats: ProbeStats) -> str:
        elapsed = stats.elapsed
        rate = stats.sent / elapsed if elapsed > 0 else 0.0
        hit_rate = stats.open / stats.sent * 100 if stats.sent else 0.0
        remaining = self.steps - self.start
        done = (self.walk.position - self.start) / remaining if remaining else 1.0
        if 0 < done < 1:
            eta = f"{elapsed * (1 - done) / done:.0f} s left"
        else:
            eta = "waiting for responses" if done >= 1 else "starting"
        return (
            f"probe: {done * 100:5.1f}%, {stats.sent} SYN sent ({rate:.0f}/s), "
            f"{stats.received} received, {stats.open} open ({hit_rate:.2f}%), "
            f"{stats.closed} closed, {stats.filtered} filtered, {eta}"
        )
