"""The SYN prober against real listeners in namespaces that the tests create.

Each test runs the prober in a scanner namespace against a target namespace
with a listener on one port, nothing on another, and an nft drop on a third.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import dpkt
import pytest
from probe_netns import (
    CLOSED_PORT,
    FILTERED_PORT,
    OPEN_PORT,
    READY_TIMEOUT,
    REPO,
    NamespacePair,
)

pytestmark = pytest.mark.rawsock

DRIVER = """
import json, sys
from pktscan.net.prober import probe
targets = [tuple(item) for item in json.loads(sys.argv[1])]
results = []
stats = probe(targets, on_result=results.append, **json.loads(sys.argv[2]))
print(json.dumps({"results": [r.to_json() for r in results],
                  "stats": stats.to_json()}))
"""

OPTIONS = {"rate": 200, "retries": 1, "wait": 0.5, "source_port": 61234}


def run_driver(
    pair: NamespacePair, targets: list[tuple[str, int]], **overrides: Any
) -> dict[str, Any]:
    options = dict(OPTIONS, **overrides)
    completed = pair.run_in_scanner(
        "-c", DRIVER, json.dumps(targets), json.dumps(options)
    )
    assert completed.returncode == 0, completed.stderr
    output: dict[str, Any] = json.loads(completed.stdout)
    return output


def states_by_port(output: dict[str, Any]) -> dict[int, str]:
    return {result["port"]: result["state"] for result in output["results"]}


def prepare_target(pair: NamespacePair, address: str) -> list[tuple[str, int]]:
    pair.start_listener(address, OPEN_PORT)
    pair.drop_port(FILTERED_PORT)
    return [(address, OPEN_PORT), (address, CLOSED_PORT), (address, FILTERED_PORT)]


def target_mac(pair: NamespacePair) -> str:
    links = json.loads(
        pair.exec_in(pair.target, "ip", "-j", "link", "show", pair.target_link)
    )
    address: str = links[0]["address"]
    return address


def test_probe_ipv4_states(namespace_pair: NamespacePair) -> None:
    pair = namespace_pair
    targets = prepare_target(pair, pair.target_ip)

    output = run_driver(pair, targets)

    assert states_by_port(output) == {
        OPEN_PORT: "open",
        CLOSED_PORT: "closed",
        FILTERED_PORT: "filtered",
    }
    assert len(output["results"]) == 3
    assert output["results"][-1]["state"] == "filtered"
    by_port = {result["port"]: result for result in output["results"]}
    assert by_port[OPEN_PORT]["ttl"] == 64
    assert by_port[CLOSED_PORT]["ttl"] == 64
    assert by_port[FILTERED_PORT]["ttl"] is None
    assert by_port[OPEN_PORT]["rtt"] > 0
    assert by_port[FILTERED_PORT]["rtt"] is None
    assert all(result["ip"] == pair.target_ip for result in output["results"])

    stats = output["stats"]
    # One SYN each to the open and closed ports, two to the filtered one.
    assert stats["sent"] == 4
    assert stats["open"] == 1
    assert stats["closed"] == 1
    assert stats["filtered"] == 1
    assert stats["received"] == 2
    assert stats["invalid"] == 0
    assert stats["unroutable"] == 0
    assert stats["resets_sent"] >= 1
    assert stats["kernel_drops"] == 0


def test_probe_over_af_packet(namespace_pair: NamespacePair) -> None:
    """With the target's MAC in the neighbour table, every SYN goes out
    over AF_PACKET, not through the kernel's routing."""
    pair = namespace_pair
    targets = prepare_target(pair, pair.target_ip)
    pair.exec_in(
        pair.scanner, "ip", "neigh", "replace", pair.target_ip,
        "lladdr", target_mac(pair), "dev", pair.scanner_link, "nud", "permanent",
    )  # fmt: skip

    output = run_driver(pair, targets)

    assert states_by_port(output) == {
        OPEN_PORT: "open",
        CLOSED_PORT: "closed",
        FILTERED_PORT: "filtered",
    }
    assert output["stats"]["sent"] == 4
    assert output["stats"]["sent_routed"] == 0


def test_probe_routed_fallback(namespace_pair: NamespacePair) -> None:
    """Without a neighbour entry the first SYN goes through IPPROTO_RAW and
    the kernel resolves the MAC with ARP."""
    pair = namespace_pair
    targets = prepare_target(pair, pair.target_ip)

    output = run_driver(pair, targets[:1], retries=0)

    assert states_by_port(output) == {OPEN_PORT: "open"}
    assert output["stats"]["sent"] == 1
    assert output["stats"]["sent_routed"] == 1


def test_probe_ipv6_states(namespace_pair: NamespacePair) -> None:
    """IPv6 over AF_PACKET. The neighbour entry is set up front because a
    fresh veth drops the first neighbour solicitations while it joins its
    multicast groups, which would delay the responses past the wait."""
    pair = namespace_pair
    targets = prepare_target(pair, pair.target_ip6)
    pair.exec_in(
        pair.scanner, "ip", "-6", "neigh", "replace", pair.target_ip6,
        "lladdr", target_mac(pair), "dev", pair.scanner_link, "nud", "permanent",
    )  # fmt: skip

    # An upper-case spelling still matches the responses, and results use
    # the canonical text form.
    output = run_driver(pair, [(ip.upper(), port) for ip, port in targets])

    assert states_by_port(output) == {
        OPEN_PORT: "open",
        CLOSED_PORT: "closed",
        FILTERED_PORT: "filtered",
    }
    by_port = {result["port"]: result for result in output["results"]}
    assert by_port[OPEN_PORT]["ttl"] == 64
    assert by_port[OPEN_PORT]["ip"] == pair.target_ip6
    assert output["stats"]["invalid"] == 0
    assert output["stats"]["sent_routed"] == 0


def test_probe_many_ports_exactly_once(namespace_pair: NamespacePair) -> None:
    """200 closed ports, one open, one filtered: one result each, no
    duplicates reported."""
    pair = namespace_pair
    pair.start_listener(pair.target_ip, OPEN_PORT)
    pair.drop_port(FILTERED_PORT)
    ports = [*range(20000, 20200), OPEN_PORT, FILTERED_PORT]
    targets = [(pair.target_ip, port) for port in ports]

    output = run_driver(pair, targets, rate=0)

    states = states_by_port(output)
    assert len(output["results"]) == len(ports)
    assert sorted(states) == sorted(ports)
    assert states[OPEN_PORT] == "open"
    assert states[FILTERED_PORT] == "filtered"
    assert all(states[port] == "closed" for port in range(20000, 20200))
    assert output["stats"]["closed"] == 200


def _start_capture(pair: NamespacePair, path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", pair.target, "tcpdump", "-U", "--immediate-mode",
         "-n", "-i", pair.target_link, "-w", str(path), "tcp"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    pair.processes.append(process)
    assert process.stderr is not None
    line = process.stderr.readline()
    if "listening on" not in line:
        raise RuntimeError(f"tcpdump did not start: {line!r}")
    return process


def _tcp_segments(path: Path) -> list[dpkt.tcp.TCP]:
    segments = []
    with path.open("rb") as capture:
        for _, frame in dpkt.pcap.Reader(capture):
            ip = dpkt.ethernet.Ethernet(frame).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                segments.append(ip.data)
    return segments


def test_probe_sends_crafted_rst(namespace_pair: NamespacePair, tmp_path: Path) -> None:
    """The RST on the wire carries the SYN/ACK's acknowledgment number.

    An nft rule in the scanner namespace drops the kernel's own RSTs, so
    every RST that reaches the target is the prober's (AF_PACKET sends pass
    no netfilter hook)."""
    pair = namespace_pair
    pair.start_listener(pair.target_ip, OPEN_PORT)
    rules = (
        f"table inet {pair.nft_table} {{\n"
        "  chain output {\n"
        "    type filter hook output priority 0;\n"
        "    tcp flags & rst == rst drop\n"
        "  }\n"
        "}\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", pair.scanner, "nft", "-f", "-"],
        input=rules, text=True, check=True, timeout=30,
    )  # fmt: skip
    path = tmp_path / "target.pcap"
    capture = _start_capture(pair, path)

    output = run_driver(pair, [(pair.target_ip, OPEN_PORT)], retries=0)
    capture.send_signal(signal.SIGINT)
    capture.wait(timeout=READY_TIMEOUT)

    assert states_by_port(output) == {OPEN_PORT: "open"}
    segments = _tcp_segments(path)
    syns = [s for s in segments if s.flags == dpkt.tcp.TH_SYN]
    syn_acks = [s for s in segments if s.flags == dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK]
    resets = [s for s in segments if s.flags & dpkt.tcp.TH_RST]
    assert len(syns) == 1
    assert syns[0].sport == OPTIONS["source_port"]
    assert syns[0].dport == OPEN_PORT
    assert len(syn_acks) >= 1
    assert syn_acks[0].ack == (syns[0].seq + 1) % 2**32
    assert len(resets) >= 1
    # RFC 793, "SEGMENT ARRIVES" in state CLOSED: the reset for a segment
    # with ACK set is <SEQ=SEG.ACK><CTL=RST>.
    assert resets[0].seq == syn_acks[0].ack
    assert resets[0].sport == OPTIONS["source_port"]
    assert resets[0].dport == OPEN_PORT
    assert resets[0].flags == dpkt.tcp.TH_RST
    assert output["stats"]["resets_sent"] == len(resets)


def test_probe_keeps_the_kernel_from_resetting(
    namespace_pair: NamespacePair, tmp_path: Path
) -> None:
    """The prober's own nftables table drops SYN/ACKs to its port before
    the kernel's TCP reads them, so the only RST on the wire is the crafted
    one, and the table is gone after the run."""
    pair = namespace_pair
    pair.start_listener(pair.target_ip, OPEN_PORT)
    pair.exec_in(
        pair.scanner, "ip", "neigh", "replace", pair.target_ip,
        "lladdr", target_mac(pair), "dev", pair.scanner_link, "nud", "permanent",
    )  # fmt: skip
    path = tmp_path / "target.pcap"
    capture = _start_capture(pair, path)

    output = run_driver(pair, [(pair.target_ip, OPEN_PORT)], retries=0)
    capture.send_signal(signal.SIGINT)
    capture.wait(timeout=READY_TIMEOUT)

    assert states_by_port(output) == {OPEN_PORT: "open"}
    resets = [s for s in _tcp_segments(path) if s.flags & dpkt.tcp.TH_RST]
    assert [(r.sport, r.dport, r.flags) for r in resets] == [
        (OPTIONS["source_port"], OPEN_PORT, dpkt.tcp.TH_RST)
    ]
    assert output["stats"]["resets_sent"] == 1
    tables = pair.exec_in(pair.scanner, "nft", "list", "tables")
    assert "pktscan_" not in tables


def test_probe_command_json_lines(
    namespace_pair: NamespacePair, tmp_path: Path
) -> None:
    pair = namespace_pair
    prepare_target(pair, pair.target_ip)
    result_file = tmp_path / "probe.jsonl"

    completed = pair.run_in_scanner(
        "-m", "pktscan.net.cli", pair.target_ip, "-p",
        f"{OPEN_PORT}-{FILTERED_PORT}", "--rate", "100", "--wait", "0.5",
        "--seed", "3", "-o", str(result_file),
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    lines = [json.loads(line) for line in result_file.read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert set(line) == {"ip", "port", "state", "ttl", "rtt", "time"}
    assert {line["port"]: line["state"] for line in lines} == {
        OPEN_PORT: "open",
        CLOSED_PORT: "closed",
        FILTERED_PORT: "filtered",
    }
    assert lines[-1]["state"] == "filtered"
    assert completed.stderr.startswith("probe: 4 SYN sent, 2 valid responses")


def test_probe_command_max_runtime_zero(namespace_pair: NamespacePair) -> None:
    """--max-runtime 0 stops before the first SYN and still exits 0."""
    pair = namespace_pair

    completed = pair.run_in_scanner(
        "-m", "pktscan.net.cli", pair.target_ip, "-p", "1-1000",
        "--max-runtime", "0", "--wait", "0",
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr.startswith("probe: 0 SYN sent")


def test_probe_loopback_states(namespace_pair: NamespacePair) -> None:
    """Local addresses go through the kernel's routing, because lo drops
    packets injected over AF_PACKET."""
    pair = namespace_pair
    pair.start_listener("127.0.0.1", OPEN_PORT, namespace=pair.scanner)
    pair.drop_port(FILTERED_PORT, namespace=pair.scanner)
    targets = [("127.0.0.1", port) for port in (OPEN_PORT, CLOSED_PORT, FILTERED_PORT)]

    output = run_driver(pair, targets)

    assert states_by_port(output) == {
        OPEN_PORT: "open",
        CLOSED_PORT: "closed",
        FILTERED_PORT: "filtered",
    }
    assert output["stats"]["sent"] == 4
    assert output["stats"]["sent_routed"] == 4
    assert output["stats"]["resets_sent"] >= 1


def test_probe_reports_unroutable(namespace_pair: NamespacePair) -> None:
    """Targets without a route (no default route exists) and broadcast
    addresses get no SYN, and each gets an unroutable result."""
    pair = namespace_pair
    broadcast = f"198.18.{pair.subnet}.255"
    targets = [("198.19.0.1", OPEN_PORT), (broadcast, OPEN_PORT)]

    output = run_driver(pair, targets)

    assert sorted((r["ip"], r["state"]) for r in output["results"]) == [
        (broadcast, "unroutable"),
        ("198.19.0.1", "unroutable"),
    ]
    assert output["stats"]["unroutable"] == 2
    assert output["stats"]["sent"] == 0


def test_probe_command_interrupt(namespace_pair: NamespacePair) -> None:
    """SIGINT stops sending, and every probe already sent still gets its
    line before the command exits 130."""
    pair = namespace_pair
    process = subprocess.Popen(
        ["ip", "netns", "exec", pair.scanner, sys.executable, "-m",
         "pktscan.net.cli", pair.target_ip, "-p", "20000-21000", "--rate", "50",
         "--retries", "0", "--wait", "0.5", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    pair.processes.append(process)  # type: ignore[arg-type]
    assert process.stdout is not None
    # Byte by byte from the pipe: a buffered readline could take more than
    # the first line, and communicate() reads the pipe, not that buffer.
    first = b""
    while not first.endswith(b"\n"):
        chunk = os.read(process.stdout.fileno(), 1)
        assert chunk, "the command ended before its first line"
        first += chunk
    process.send_signal(signal.SIGINT)
    rest_bytes, error_bytes = process.communicate(timeout=60)
    rest, errors = rest_bytes.decode(), error_bytes.decode()

    lines = [json.loads(line) for line in (first.decode() + rest).splitlines()]
    assert process.returncode == 130, errors
    assert "interrupted: sending stopped" in errors
    sent = int(errors.splitlines()[-1].split()[1])
    assert 1 <= sent < 1001
    assert len(lines) == sent, errors
    assert len({line["port"] for line in lines}) == sent
    assert all(line["state"] == "closed" for line in lines)


SWITCHING_DRIVER = """
import json, os, pwd, sys
from pktscan.net.cli import _switch_user
from pktscan.net.prober import probe
account = pwd.getpwnam("nobody")
owners = []
stats = probe(
    [(sys.argv[1], int(sys.argv[2])), (sys.argv[1], int(sys.argv[3]))],
    rate=100,
    wait=0.5,
    on_ready=lambda: _switch_user(account),
    on_result=lambda result: owners.append((result.state, os.geteuid())),
)
print(json.dumps({"owners": owners, "uid": account.pw_uid, "sent": stats.sent}))
"""


def test_probe_after_switching_user(namespace_pair: NamespacePair) -> None:
    """Probing goes on as the unprivileged user once the sockets are open."""
    pair = namespace_pair
    pair.start_listener(pair.target_ip, OPEN_PORT)

    completed = pair.run_in_scanner(
        "-c", SWITCHING_DRIVER, pair.target_ip, str(OPEN_PORT), str(CLOSED_PORT)
    )

    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["uid"] != 0
    assert sorted(output["owners"]) == [
        ["closed", output["uid"]],
        ["open", output["uid"]],
    ]
    assert output["sent"] == 2


def test_probe_command_progress_and_user(namespace_pair: NamespacePair) -> None:
    pair = namespace_pair

    completed = pair.run_in_scanner(
        "-m", "pktscan.net.cli", pair.target_ip, "-p", "20000-20299",
        "--rate", "200", "--wait", "0.5", "--seed", "2", "--progress",
        "--user", "nobody",
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    assert len(completed.stdout.splitlines()) == 300
    # text mode turns the progress line's carriage returns into newlines.
    progress = [line for line in completed.stderr.splitlines() if "/s)" in line]
    assert len(progress) >= 1
    assert re.fullmatch(
        r"probe: +\d+\.\d%, \d+ SYN sent \(\d+/s\), \d+ received, "
        r"0 open \(0\.00%\), \d+ closed, 0 filtered, (\d+ s left|starting)",
        progress[0],
    )
    assert completed.stderr.splitlines()[-1].startswith("probe: 300 SYN sent")


def test_probe_command_unknown_user(namespace_pair: NamespacePair) -> None:
    completed = namespace_pair.run_in_scanner(
        "-m", "pktscan.net.cli", namespace_pair.target_ip, "-p", "443",
        "--user", "no-such-user-pktscan",
    )  # fmt: skip

    assert completed.returncode == 2
    assert completed.stderr.splitlines()[0] == (
        "error: user 'no-such-user-pktscan' not found"
    )
    assert completed.stdout == ""


def test_probe_command_without_cap_net_raw(namespace_pair: NamespacePair) -> None:
    """Root without CAP_NET_RAW gets the privilege error and its hint."""
    pair = namespace_pair

    completed = subprocess.run(
        ["ip", "netns", "exec", pair.scanner, "setpriv", "--inh-caps=-net_raw",
         "--bounding-set=-net_raw", sys.executable, "-m", "pktscan.net.cli",
         pair.target_ip, "-p", str(OPEN_PORT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        check=False,
    )  # fmt: skip

    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert lines[0] == (
        "error: cannot open the AF_PACKET send socket: Operation not permitted"
    )
    assert lines[1] == (
        "hint: run as root, or give the Python interpreter CAP_NET_RAW "
        "(setcap cap_net_raw+ep)"
    )


RECEIVER_KILLING_DRIVER = """
import json, os, signal, sys
import pktscan.net.prober as prober_module
from pktscan.net.prober import ReceiverError, probe
original = prober_module._Prober._check
def check(self, now):
    # Kill the receiver process once, after the first SYNs went out.
    if self.stats.sent >= 3 and self.child.pid is not None and not self.killed:
        os.kill(self.child.pid, signal.SIGKILL)
        self.killed = True
    original(self, now)
prober_module._Prober._check = check
prober_module._Prober.killed = False
targets = [(sys.argv[1], port) for port in range(20000, 20200)]
try:
    probe(targets, rate=100, wait=0.5)
except ReceiverError as error:
    print(json.dumps({"error": error.message, "hint": error.hint}))
"""


def test_probe_raises_when_receiver_dies(namespace_pair: NamespacePair) -> None:
    """A receiver process killed mid-scan ends the run with an error instead
    of leaving probes waiting for a caught-up mark that never comes."""
    completed = namespace_pair.run_in_scanner(
        "-c", RECEIVER_KILLING_DRIVER, namespace_pair.target_ip, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output == {
        "error": "receiving responses failed: the receiver process ended early",
        "hint": "results after the failure are missing; run the probe again",
    }
