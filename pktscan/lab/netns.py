"""Network namespaces, the veth pair, addresses and the nftables drop rule.

Both veth ends are created directly inside their namespaces, so the link
never appears in the host namespace. Neither namespace gets a default
route: the only route is the connected /24, so packets from the lab can
reach nothing but the other namespace.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pktscan.errors import LabError
from pktscan.lab.plan import (
    NETNS_CONFIG_ROOT,
    PREFIX_LEN,
    RESOLVER_ADDRESS,
    SCANNER_ADDRESS,
    LabNames,
)

logger = logging.getLogger(__name__)

NETNS_RUN_DIR = Path("/run/netns")
COMMAND_TIMEOUT_S = 20.0


def run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a setup command and return its standard output.

    Raises:
        LabError: the command is missing, fails or times out; the message
            carries the command line and its standard error.
    """
    command = " ".join(argv)
    try:
        completed = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as error:
        raise LabError(
            f"command not found: {argv[0]}",
            hint="install iproute2, nftables, nginx-light and dnsmasq",
        ) from error
    except subprocess.TimeoutExpired as error:
        raise LabError(
            f"command timed out after {COMMAND_TIMEOUT_S:.0f} s: {command}"
        ) from error
    if completed.returncode != 0:
        raise LabError(
            f"command failed with exit code {completed.returncode}: {command}: "
            f"{completed.stderr.strip()}"
        )
    return completed.stdout


def namespace_exists(namespace: str) -> bool:
    """Return whether `ip netns` has a namespace of that name."""
    return (NETNS_RUN_DIR / namespace).exists()


def in_namespace(namespace: str, argv: Sequence[str]) -> list[str]:
    """Return `argv` prefixed so that it runs inside `namespace`."""
    return ["ip", "netns", "exec", namespace, *argv]


def create_network(names: LabNames, server_addresses: Sequence[str]) -> None:
    """Create both namespaces, the veth pair and every address.

    The target end carries the resolver address and every server address,
    each a /24 address of its own, so the kernel accepts connections on all of them.
    """
    scan, target = names.scanner_namespace, names.target_namespace
    run(["ip", "netns", "add", scan])
    run(["ip", "netns", "add", target])
    for namespace in (scan, target):
        run(in_namespace(namespace, ["ip", "link", "set", "lo", "up"]))

    # Created in the scanner namespace with its peer placed straight into
    # the target namespace.
    run(
        [
            "ip", "-n", scan, "link", "add", names.scanner_link,
            "type", "veth", "peer", "name", names.target_link, "netns", target,
        ]
    )  # fmt: skip
    run(
        [
            "ip", "-n", scan, "addr", "add",
            f"{SCANNER_ADDRESS}/{PREFIX_LEN}", "dev", names.scanner_link,
        ]
    )  # fmt: skip
    batch = "".join(
        f"addr add {address}/{PREFIX_LEN} dev {names.target_link}\n"
        for address in (RESOLVER_ADDRESS, *server_addresses)
    )
    run(["ip", "-n", target, "-batch", "-"], stdin=batch)
    run(["ip", "-n", scan, "link", "set", names.scanner_link, "up"])
    run(["ip", "-n", target, "link", "set", names.target_link, "up"])


def add_drop_rule(names: LabNames, address: str, port: int) -> None:
    """Drop TCP packets to `address`:`port` inside the target namespace."""
    ruleset = (
        f"table inet {names.nft_table} {{\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f"    ip daddr {address} tcp dport {port} drop\n"
        "  }\n"
        "}\n"
    )
    run(in_namespace(names.target_namespace, ["nft", "-f", "-"]), stdin=ruleset)


def write_resolv_conf(names: LabNames) -> Path:
    """Write the resolv.conf that `ip netns exec` mounts in the scanner."""
    directory = NETNS_CONFIG_ROOT / names.scanner_namespace
    path = directory / "resolv.conf"
    # Another lab's teardown may remove an empty /etc/netns between the
    # mkdir and the write, so the pair is retried.
    for attempt in range(3):
        directory.mkdir(parents=True, exist_ok=True)
        try:
            path.write_text(f"nameserver {RESOLVER_ADDRESS}\n")
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    return path


def namespace_pids(namespace: str) -> list[int]:
    """PIDs of processes inside `namespace`, or [] when it does not exist."""
    if not namespace_exists(namespace):
        return []
    try:
        output = run(["ip", "netns", "pids", namespace])
    except LabError:
        return []
    return [int(word) for word in output.split()]


def destroy_network(names: LabNames) -> list[str]:
    """Delete the nft table, both namespaces and /etc/netns/NAME-scan.

    Removes only what exists, so it is safe to call after a partial setup
    or a second time. Returns the errors of steps that failed, without
    stopping at the first.
    """
    errors: list[str] = []
    target = names.target_namespace
    if namespace_exists(target):
        listing = subprocess.run(
            in_namespace(target, ["nft", "list", "tables"]),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if names.nft_table in listing.stdout.split():
            try:
                run(
                    in_namespace(
                        target, ["nft", "delete", "table", "inet", names.nft_table]
                    )
                )
            except LabError as error:
                errors.append(error.message)
    # Deleting a namespace deletes the veth end inside it, and the kernel
    # deletes the peer with it.
    for namespace in (names.scanner_namespace, target):
        if namespace_exists(namespace):
            try:
                run(["ip", "netns", "delete", namespace])
            except LabError as error:
                errors.append(error.message)
    config_dir = NETNS_CONFIG_ROOT / names.scanner_namespace
    if config_dir.exists():
        shutil.rmtree(config_dir, ignore_errors=True)
        if config_dir.exists():
            errors.append(f"could not remove {config_dir}")
    # /etc/netns goes too when no other namespace has files there.
    with contextlib.suppress(OSError):
        NETNS_CONFIG_ROOT.rmdir()
    return errors
