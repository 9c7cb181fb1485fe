"""Client side of the lab server tests, run inside the scanner namespace.

Usage:
    python lab_nsclient.py hellos < JSON list of [ADDRESS, PORT, HELLO_HEX]
    python lab_nsclient.py dns RESOLVER NAME... -- ADDRESS...
    python lab_nsclient.py connect ADDRESS PORT TIMEOUT_S
    python lab_nsclient.py http ADDRESS PORT HOST

Each prints one JSON value. `hellos` sends each hello on a new connection
and reads the response until the certificates are in, the server closes
or resets, or nothing arrives for READ_IDLE_S; it then resets the
connection. `dns` queries A for every NAME and PTR for every ADDRESS at
RESOLVER, and the A record of the first NAME through the resolver that
/etc/resolv.conf names.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_wire import parse_flight

READ_IDLE_S = 3.0
MAX_RESPONSE_BYTES = 1 << 20


def hello(address: str, port: int, data: bytes) -> dict[str, Any]:
    """Send one hello and collect the response bytes."""
    sock = socket.create_connection((address, port), timeout=READ_IDLE_S)
    received = b""
    outcome = "timeout"
    try:
        sock.sendall(data)
        while len(received) < MAX_RESPONSE_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                outcome = "eof"
                break
            received += chunk
            _, complete = parse_flight(received)
            if complete:
                outcome = "complete"
                break
    except ConnectionResetError:
        outcome = "reset"
    except TimeoutError:
        outcome = "timeout"
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return {"outcome": outcome, "data": received.hex()}


def connect(address: str, port: int, timeout: float) -> dict[str, Any]:
    """Connect once; report open, closed (reset) or filtered (timed out)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return {"state": "open"}
    except ConnectionRefusedError:
        return {"state": "closed"}
    except TimeoutError:
        return {"state": "filtered"}


def http_head(address: str, port: int, host: str) -> dict[str, Any]:
    """Send a HEAD request and return the response head as text."""
    request = f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    received = b""
    with socket.create_connection((address, port), timeout=READ_IDLE_S) as sock:
        sock.sendall(request)
        while len(received) < MAX_RESPONSE_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return {"response": received.decode("latin-1")}


def dns(resolver: str, names: list[str], addresses: list[str]) -> dict[str, Any]:
    """Query A and PTR records at `resolver` and through resolv.conf."""
    import dns.resolver
    import dns.reversename

    lab_resolver = dns.resolver.Resolver(configure=False)
    lab_resolver.nameservers = [resolver]
    lab_resolver.lifetime = 5.0
    a_records = {
        name: sorted(rr.address for rr in lab_resolver.resolve(name, "A"))
        for name in names
    }
    ptr_records = {
        address: sorted(
            rr.target.to_text()
            for rr in lab_resolver.resolve(dns.reversename.from_address(address), "PTR")
        )
        for address in addresses
    }
    system = dns.resolver.Resolver()
    system.lifetime = 5.0
    return {
        "a": a_records,
        "ptr": ptr_records,
        "system_nameservers": [str(server) for server in system.nameservers],
        "system_a": sorted(rr.address for rr in system.resolve(names[0], "A")),
    }


def main() -> None:
    """Dispatch on the subcommand and print its JSON result."""
    command, *args = sys.argv[1:]
    result: Any
    if command == "hellos":
        requests = json.load(sys.stdin)
        result = [
            hello(address, port, bytes.fromhex(data))
            for address, port, data in requests
        ]
    elif command == "http":
        result = http_head(args[0], int(args[1]), args[2])
    elif command == "connect":
        result = connect(args[0], int(args[1]), float(args[2]))
    elif command == "dns":
        split = args.index("--")
        result = dns(args[0], args[1:split], args[split + 1 :])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
