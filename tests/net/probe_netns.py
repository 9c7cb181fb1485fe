"""A scanner and a target network namespace joined by a veth pair.

Names carry a random run id, so runs never collide, and every namespace,
process and nft table is removed by finalizers that run even when a test
fails. Neither namespace has a default route, so no probe can leave them.
"""

from __future__ import annotations

import os
import random
import select
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OPEN_PORT = 8443
CLOSED_PORT = 8444
FILTERED_PORT = 8445
READY_TIMEOUT = 10.0

# A listener that prints "ready" once it listens, and exits after 120 s
# so that it cannot outlive a crashed test run for long.
LISTENER = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
server = socket.socket(family, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(64)
print("ready", flush=True)
time.sleep(120)
"""


def _run(*command: str) -> str:
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=30, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed with {completed.returncode}: "
            f"{completed.stderr.strip()}"
        )
    return completed.stdout


@dataclass
class NamespacePair:
    """Two namespaces, their addresses, and what the test started in them."""

    run_id: str
    scanner: str
    target: str
    scanner_link: str
    target_link: str
    subnet: int
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def scanner_ip(self) -> str:
        return f"198.18.{self.subnet}.1"

    @property
    def target_ip(self) -> str:
        return f"198.18.{self.subnet}.2"

    @property
    def scanner_ip6(self) -> str:
        return f"2001:db8:{self.subnet:x}::1"

    @property
    def target_ip6(self) -> str:
        return f"2001:db8:{self.subnet:x}::2"

    @property
    def nft_table(self) -> str:
        return f"pkst_{self.run_id}"

    def exec_in(self, namespace: str, *command: str) -> str:
        return _run("ip", "netns", "exec", namespace, *command)

    def start_listener(
        self, address: str, port: int, namespace: str | None = None
    ) -> None:
        """Start a TCP listener, in the target namespace unless another is
        given, and wait until it listens."""
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                namespace or self.target,
                sys.executable,
                "-c",
                LISTENER,
                address,
                str(port),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
        if not ready or process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"listener on {address}:{port} did not start")

    def drop_port(self, port: int, namespace: str | None = None) -> None:
        """Drop TCP to a port with nftables, in the target namespace unless
        another is given."""
        rules = (
            f"table inet {self.nft_table} {{\n"
            "  chain input {\n"
            "    type filter hook input priority 0;\n"
            f"    tcp dport {port} drop\n"
            "  }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", namespace or self.target, "nft", "-f", "-"],
            input=rules,
            text=True,
            check=True,
            timeout=30,
        )

    def run_in_scanner(
        self, *arguments: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the Python interpreter with arguments inside the scanner
        namespace, from the repository root."""
        environment = dict(os.environ, PYTHONPATH=str(REPO))
        return subprocess.run(
            ["ip", "netns", "exec", self.scanner, sys.executable, *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=environment,
            check=False,
        )

    def cleanup(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(timeout=10)
        for namespace in (self.target, self.scanner):
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    namespace,
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    self.nft_table,
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
            # Deleting a namespace also deletes the veth end inside it, and
            # with it the peer.
            subprocess.run(
                ["ip", "netns", "delete", namespace],
                capture_output=True,
                timeout=30,
                check=False,
            )


def create_pair() -> NamespacePair:
    run_id = uuid.uuid4().hex[:8]
    pair = NamespacePair(
        run_id=run_id,
        scanner=f"pkst-{run_id}-s",
        target=f"pkst-{run_id}-t",
        scanner_link=f"pks{run_id}s",
        target_link=f"pks{run_id}t",
        subnet=random.randint(200, 254),
    )
    try:
        _run("ip", "netns", "add", pair.scanner)
        _run("ip", "netns", "add", pair.target)
        # The veth ends are created directly inside the namespaces, so the
        # host's own namespace never contains them.
        _run(
            "ip",
            "link",
            "add",
            pair.scanner_link,
            "netns",
            pair.scanner,
            "type",
            "veth",
            "peer",
            "name",
            pair.target_link,
            "netns",
            pair.target,
        )
        for namespace, link, ip, ip6 in (
            (pair.scanner, pair.scanner_link, pair.scanner_ip, pair.scanner_ip6),
            (pair.target, pair.target_link, pair.target_ip, pair.target_ip6),
        ):
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
            _run("ip", "-n", namespace, "addr", "add", f"{ip}/24", "dev", link)
            _run(
                "ip",
                "-n",
                namespace,
                "addr",
                "add",
                f"{ip6}/64",
                "dev",
                link,
                "nodad",
            )
            # Without DAD the link-local address is usable at once, so
            # neighbour discovery does not stall the first IPv6 responses.
            _run(
                "ip",
                "netns",
                "exec",
                namespace,
                "sysctl",
                "-q",
                "-w",
                f"net.ipv6.conf.{link}.accept_dad=0",
            )
            _run("ip", "-n", namespace, "link", "set", link, "up")
            routes = _run("ip", "-n", namespace, "route", "show", "default")
            routes += _run("ip", "-n", namespace, "-6", "route", "show", "default")
            if routes.strip():
                raise RuntimeError(f"namespace {namespace} has a default route")
    except BaseException:
        pair.cleanup()
        raise
    return pair
