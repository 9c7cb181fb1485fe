"""The raw engine's TCP over real sockets, between two namespaces.

The client runs in the scanner namespace, with its nftables table; the
servers of usertcp_server.py run in the target namespace.
"""

from __future__ import annotations

import hashlib
import json
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import dpkt
import pytest
from probe_netns import NamespacePair
from usertcp_server import BIG_REPLY_LEN, pattern

pytestmark = pytest.mark.rawsock

HERE = Path(__file__).parent
PORT_BASE = 9100
CLOSED_PORT = 9200
FILTERED_PORT = 9201


def _start_servers(pair: NamespacePair) -> None:
    process = subprocess.Popen(
        [
            "ip", "netns", "exec", pair.target, sys.executable,
            str(HERE / "usertcp_server.py"), str(PORT_BASE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    pair.processes.append(process)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 10)
    assert ready, "servers did not start"
    assert process.stdout.readline().strip() == "ready"


def _client(pair: NamespacePair, *arguments: str) -> dict[str, Any]:
    completed = pair.run_in_scanner(str(HERE / "usertcp_client.py"), *arguments)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return result


@pytest.fixture
def exchanges(namespace_pair: NamespacePair, request: pytest.FixtureRequest) -> Any:
    _start_servers(namespace_pair)
    namespace_pair.drop_port(FILTERED_PORT)
    ip = namespace_pair.target_ip if request.param == 4 else namespace_pair.target_ip6
    return _client(
        namespace_pair,
        "servers",
        ip,
        str(PORT_BASE),
        str(CLOSED_PORT),
        str(FILTERED_PORT),
    )


@pytest.mark.parametrize("exchanges", [4, 6], indirect=True)
def test_large_reply_arrives_whole(exchanges: dict[str, Any]) -> None:
    big = exchanges["big"]
    assert big["state"] == "open"
    assert big["stop"] is None
    assert big["length"] == BIG_REPLY_LEN
    assert big["sha256"] == hashlib.sha256(pattern(BIG_REPLY_LEN)).hexdigest()


@pytest.mark.parametrize("exchanges", [4, 6], indirect=True)
def test_server_close_reset_and_silence(exchanges: dict[str, Any]) -> None:
    assert exchanges["fin"]["stop"] == "eof"
    assert exchanges["fin"]["length"] == len(b"bye\n")
    assert exchanges["reset"]["stop"] == "reset"
    assert exchanges["reset"]["length"] == 0
    assert exchanges["silent"]["stop"] == "timeout"
    assert exchanges["silent"]["state"] == "open"


@pytest.mark.parametrize("exchanges", [4, 6], indirect=True)
def test_closed_and_filtered_ports(exchanges: dict[str, Any]) -> None:
    assert exchanges["closed"]["state"] == "closed"
    assert exchanges["filtered"]["state"] == "filtered"


@pytest.mark.parametrize("exchanges", [4], indirect=True)
def test_engine_cleans_up(exchanges: dict[str, Any]) -> None:
    stats = exchanges["stats"]
    # Self-test, big, fin and silent end with our RST; reset, closed and
    # filtered need none.
    assert stats["resets_sent"] >= 4
    assert stats["connections"] == 7
    assert stats["left"] == 0
    assert exchanges["tables_after"] == []


def test_self_test_fails_without_the_table(namespace_pair: NamespacePair) -> None:
    result = _client(namespace_pair, "self-test-unguarded")
    assert result["error"] is not None
    assert "self-test on 127.0.0.1" in result["error"]


def test_source_address_the_kernel_does_not_own(
    namespace_pair: NamespacePair, tmp_path: Path
) -> None:
    """From an address no interface carries, the engine replies to the
    target's ARP request itself, adds no nftables table, and reads the whole reply;
    on the wire every segment from the scanner side carries that address,
    and the only RSTs are the engine's."""
    pair = namespace_pair
    _start_servers(pair)
    source = pair.scanner_ip.rsplit(".", 1)[0] + ".99"
    path = tmp_path / "target.pcap"
    capture = subprocess.Popen(
        ["ip", "netns", "exec", pair.target, "tcpdump", "-U", "--immediate-mode",
         "-n", "-i", pair.target_link, "-w", str(path), "tcp or arp"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    pair.processes.append(capture)
    assert capture.stderr is not None
    assert "listening on" in capture.stderr.readline()

    result = _client(pair, "foreign-source", pair.target_ip, str(PORT_BASE), source)
    capture.send_signal(signal.SIGINT)
    capture.wait(timeout=10)

    assert result["state"] == "open"
    # The engine stops reading once the consumer has 100,000 bytes; the
    # segment that took it there may carry more.
    assert result["length"] >= 100_000
    assert result["sha256_100k"] == hashlib.sha256(pattern(100_000)).hexdigest()
    assert result["arp_replies"] >= 1
    assert result["guarded"] is False
    # Only the link whose network contains the address gets ARP replies.
    assert result["arp_interfaces"] == [pair.scanner_link]
    assert result["tables_during"] == []

    ours = socket.inet_aton(source)
    scanner_side = []
    arp_replies = []
    with path.open("rb") as handle:
        for _, frame in dpkt.pcap.Reader(handle):
            ethernet = dpkt.ethernet.Ethernet(frame)
            if isinstance(ethernet.data, dpkt.arp.ARP):
                if ethernet.data.op == dpkt.arp.ARP_OP_REPLY:
                    arp_replies.append(ethernet.data.spa)
                continue
            ip = ethernet.data
            if isinstance(ip, dpkt.ip.IP) and ip.data.sport != PORT_BASE:
                scanner_side.append((ip.src, ip.data.flags))
    # The target's own replies (to the scanner's request for its MAC) are
    # in the capture too.
    assert ours in arp_replies
    assert scanner_side and {src for src, _ in scanner_side} == {ours}
    resets = [flags for _, flags in scanner_side if flags & dpkt.tcp.TH_RST]
    assert len(resets) == result["resets_sent"] == 1
