"""TCP connect checks, run inside the scanner namespace by the lab.

Usage: python -m pktscan.lab.probe [--wait SECONDS] [--timeout SECONDS]
ADDRESS:PORT[=EXPECTED]...

Prints one JSON object mapping each ADDRESS:PORT to "open" (the connect
succeeded), "closed" (refused by a reset), "filtered" (no reply within
--timeout) or "error: ..." for anything else. With --wait, targets whose
state differs from EXPECTED ("open" unless given) are retried until it
matches or until the wait runs out.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import time

_RETRY_INTERVAL_S = 0.05


def check(address: str, port: int, timeout: float) -> str:
    """Connect once to `address`:`port` and classify the result."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "closed"
    except TimeoutError:
        return "filtered"
    except OSError as error:
        if error.errno == errno.ECONNREFUSED:
            return "closed"
        return f"error: {error}"


def _parse_target(text: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    return address, int(port)


def probe(expected: dict[str, str], timeout: float, wait: float) -> dict[str, str]:
    """Check every ADDRESS:PORT, retrying mismatches for up to `wait` s.

    Args:
        expected: expected state of each ADDRESS:PORT.
        timeout: connect timeout in seconds.
        wait: how long to retry targets whose state differs, in seconds.
    """
    deadline = time.monotonic() + wait
    results = {target: check(*_parse_target(target), timeout) for target in expected}
    max_rounds = int(wait / _RETRY_INTERVAL_S) + 1
    for _ in range(max_rounds):
        pending = [
            target for target, state in results.items() if state != expected[target]
        ]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(_RETRY_INTERVAL_S)
        for target in pending:
            results[target] = check(*_parse_target(target), timeout)
    return results


def main() -> None:
    """Parse the command line, probe, print the JSON result."""
    parser = argparse.ArgumentParser(prog="python -m pktscan.lab.probe")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds")
    parser.add_argument("targets", nargs="+", metavar="ADDRESS:PORT[=EXPECTED]")
    options = parser.parse_args()
    expected = {}
    for text in options.targets:
        target, _, state = text.partition("=")
        expected[target] = state or "open"
    print(json.dumps(probe(expected, options.timeout, options.wait)))


if __name__ == "__main__":
    main()
