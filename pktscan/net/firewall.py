"""Keep the kernel from resetting the raw engine's connections, with nftables.

The raw engine's connections exist only in pktscan, so when a SYN/ACK
arrives for one of its source ports the kernel finds no socket and sends
an RST of its own (RFC 9293 section 3.10.7.1), which kills the
connection on the server. `KernelResetGuard` adds an nftables table that
drops incoming TCP segments to pktscan's source-port range in the
prerouting hook. AF_PACKET sockets receive a packet before the IP layer
runs prerouting (`__netif_receive_skb_core` delivers to packet taps first),
so the engine still reads every segment while the kernel never sees it.

The range, 61001-65535, lies above Linux's default ephemeral range
(net.ipv4.ip_local_port_range, 32768-60999), so the rule does not touch the
host's own outgoing connections. It does drop traffic to any local service
that listens in that range while a scan runs.

Each run owns one table, ``pktscan_<pid>_<8 hex digits>``, in family inet,
and deletes it on exit: from `remove`, from an atexit hook, and from
SIGTERM and SIGHUP handlers. A run killed by SIGKILL leaves its table
behind, so `install` first deletes every table of that name form whose pid
is no longer running. No other table is read or changed.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
from types import FrameType
from typing import Any

from pktscan.errors import LocalError

logger = logging.getLogger(__name__)

TABLE_FAMILY = "inet"
TABLE_PATTERN = re.compile(r"pktscan_(\d+)_[0-9a-f]{8}")
NFT_TIMEOUT_SECONDS = 10.0
NFT_HINT = "install nftables (Debian package nftables) and run as root"
_CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class FirewallError(LocalError):
    """An nftables command failed, so the kernel cannot be kept out."""


def _run_nft(arguments: list[str], stdin: str | None = None) -> str:
    """Run nft with arguments and return its output.

    Raises:
        FirewallError: nft is missing, failed or timed out.
    """
    nft = shutil.which("nft")
    if nft is None:
        raise FirewallError("the nft command was not found", NFT_HINT)
    command = [nft, *arguments]
    try:
        completed = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FirewallError(
            f"nft {' '.join(arguments)} timed out after {NFT_TIMEOUT_SECONDS} s",
            NFT_HINT,
        ) from None
    if completed.returncode != 0:
        raise FirewallError(
            f"nft {' '.join(arguments)} failed: {completed.stderr.strip()}", NFT_HINT
        )
    return completed.stdout


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_tables() -> list[str]:
    """Return the names of the inet tables whose names pktscan runs use."""
    output = _run_nft(["-j", "list", "tables", TABLE_FAMILY])
    document: dict[str, Any] = json.loads(output) if output.strip() else {}
    names = []
    for item in document.get("nftables", []):
        table = item.get("table")
        if table is not None and TABLE_PATTERN.fullmatch(str(table.get("name"))):
            names.append(str(table["name"]))
    return names


def sweep_stale_tables() -> list[str]:
    """Delete the tables left by pktscan runs that are no longer running.

    NOTE: a table whose pid has been reused by another process counts as
    live and stays until that process ends.

    Returns:
        The names of the tables deleted.
    """
    removed = []
    for name in list_tables():
        match = TABLE_PATTERN.fullmatch(name)
        assert match is not None
        if _pid_running(int(match.group(1))):
            continue
        _run_nft(["delete", "table", TABLE_FAMILY, name])
        logger.warning("removed the nftables table %s of a run that ended", name)
        removed.append(name)
    return removed


def ruleset(table: str, port_range: tuple[int, int]) -> str:
    """Return the nft script that creates the table for a port range."""
    low, high = port_range
    return (
        f"table {TABLE_FAMILY} {table} {{\n"
        "  chain prerouting {\n"
        "    type filter hook prerouting priority raw; policy accept;\n"
        f"    tcp dport {low}-{high} drop\n"
        "  }\n"
        "}\n"
    )


class KernelResetGuard:
    """One run's nftables table; use as a context manager or call
    `install` and `remove`.

    Args:
        port_range: the engine's source ports, inclusive.
    """

    def __init__(self, port_range: tuple[int, int]) -> None:
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"invalid port range {low}-{high}")
        self.port_range = port_range
        self.table = f"pktscan_{os.getpid()}_{secrets.token_hex(4)}"
        self.installed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> KernelResetGuard:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def install(self) -> None:
        """Sweep stale tables, then add this run's table and cleanup hooks.

        Raises:
            FirewallError: nft failed.
        """
        if self.installed:
            return
        sweep_stale_tables()
        atexit.register(self.remove)
        self._hook_signals()
        _run_nft(["-f", "-"], stdin=ruleset(self.table, self.port_range))
        self.installed = True
        logger.info(
            "nftables table %s drops TCP to ports %d-%d", self.table, *self.port_range
        )

    def remove(self) -> None:
        """Delete the table; safe to call more than once."""
        atexit.unregister(self.remove)
        self._restore_signals()
        if not self.installed:
            return
        self.installed = False
        try:
            _run_nft(["delete", "table", TABLE_FAMILY, self.table])
        except FirewallError as error:
            logger.error("removing nftables table %s failed: %s", self.table, error)
            return
        logger.info("nftables table %s removed", self.table)

    def _hook_signals(self) -> None:
        """Remove the table on SIGTERM and SIGHUP, then die of the signal.

        Only signals still at their default action are hooked, and only from
        the main thread, where Python allows handlers to be set.
        """
        for number in _CLEANUP_SIGNALS:
            try:
                if signal.getsignal(number) is not signal.SIG_DFL:
                    continue
                self._previous[number] = signal.signal(number, self._on_signal)
            except ValueError:
                return

    def _restore_signals(self) -> None:
        for number, previous in self._previous.items():
            try:
                signal.signal(number, previous)
            except ValueError:
                logger.warning("cannot restore the handler of signal %d", number)
        self._previous.clear()

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self.remove()
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
