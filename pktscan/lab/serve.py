"""Start-up shared by the lab's Python TLS servers (SSL 2.0 and SSL 3.0)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import Any


def server_options(prog: str, cert_help: str) -> argparse.Namespace:
    """Parse --address, --port, --cert and --key from the command line."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help=cert_help)
    parser.add_argument("--key", required=True, help="private key, PEM")
    return parser.parse_args()


def _stop(signum: int, frame: FrameType | None) -> Any:
    # SystemExit unwinds the server's loop in the main thread.
    raise SystemExit(0)


def prepare_server_process() -> None:
    """Log to stderr (the lab's log file) and exit cleanly on SIGTERM."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    signal.signal(signal.SIGTERM, _stop)
