"""Write results to an inventory until killed, for the SIGKILL test.

Usage: python kill_writer.py DB BATCH_SIZE MAX_RESULTS

DB is a file path or a postgresql:// URL.

After each commit it prints ``committed N`` with the number of results
committed so far, and flushes standard output, so the parent can tell which
results must survive the kill.
"""

from __future__ import annotations

import sys

from store_helpers import T0, make_chain, tls_result

from pktscan.store import open_inventory


def main() -> None:
    db, batch_size, max_results = sys.argv[1], *map(int, sys.argv[2:4])
    chains = [make_chain(f"host{i}.example") for i in range(4)]
    # A commit interval of one day leaves batch_size as the only trigger.
    inventory = open_inventory(db, batch_size=batch_size, commit_interval=86400.0)
    scan = inventory.begin_scan({"writer": "kill test"})
    print("started", flush=True)
    for index in range(max_results):
        address = f"198.18.{index // 250}.{index % 250 + 1}"
        chain = chains[index % len(chains)]
        inventory.add_result(scan, tls_result(address, 443, chain, T0 + index))
        if inventory.pending_results == 0:
            print(f"committed {index + 1}", flush=True)
    inventory.close()
    print("finished", flush=True)


if __name__ == "__main__":
    main()
