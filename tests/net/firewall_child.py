"""Run a KernelResetGuard step inside a test's namespace; print JSON lines.

Usage: firewall_child.py hold | sweep | fail-inside
  hold         install, print the table name, then sleep until signalled
               (at most 60 s, so that a lost child cannot linger)
  sweep        delete stale tables and print the names removed
  fail-inside  install, raise inside the with block, print the tables left
"""

from __future__ import annotations

import json
import sys
import time

from pktscan.net.firewall import (
    KernelResetGuard,
    list_tables,
    sweep_stale_tables,
)
from pktscan.net.prober import SOURCE_PORT_RANGE


def main(step: str) -> None:
    if step == "hold":
        guard = KernelResetGuard(SOURCE_PORT_RANGE)
        guard.install()
        print(json.dumps({"table": guard.table}), flush=True)
        time.sleep(60)
    elif step == "sweep":
        print(json.dumps({"removed": sweep_stale_tables()}), flush=True)
    elif step == "fail-inside":
        try:
            with KernelResetGuard(SOURCE_PORT_RANGE):
                raise RuntimeError("failure inside the guarded block")
        except RuntimeError:
            pass
        print(json.dumps({"tables": list_tables()}), flush=True)
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1])
