"""Write one shard of a scan into a shared inventory, for the shard tests.

Usage: python shard_writer.py DB RUN INDEX TOTAL RESULTS CHAINS

DB is a file path or a postgresql:// URL. CHAINS is a JSON file with a list
of chains, each a list of hex DER certificates. The shard writes RESULTS
results on addresses of its own, serving those chains in turn, so that the
shards upsert the same certificates at once. Then it prints its scan id.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from store_helpers import T0, tls_result

from pktscan import certs
from pktscan.store import open_inventory


def main() -> None:
    db, run = sys.argv[1], sys.argv[2]
    index, total, results = (int(value) for value in sys.argv[3:6])
    listed = json.loads(Path(sys.argv[6]).read_text())
    chains = [
        certs.decode_chain([bytes.fromhex(der) for der in chain]) for chain in listed
    ]
    with open_inventory(db, batch_size=7, background_flush=False) as inventory:
        scan = inventory.begin_scan({"run": run}, shard=f"{index}/{total}", run=run)
        for number in range(results):
            address = f"198.18.{index}.{number + 1}"
            chain = chains[number % len(chains)]
            result = tls_result(address, 443, chain, T0 + number)
            inventory.add_result(scan, result)
        inventory.finish_scan(scan, {"open": results})
    print(f"scan {scan}", flush=True)


if __name__ == "__main__":
    main()
