"""Recorder tests on loopback and on a veth pair into a test namespace.

They need root (AF_PACKET sockets, namespaces) and are marked rawsock.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from pktscan.capture.recorder import LINKTYPE_LINUX_SLL2, PcapRecorder
from pktscan.errors import CaptureError, InputError

pytestmark = pytest.mark.rawsock

LINGER_ZERO = struct.pack("ii", 1, 0)
REPOSITORY = Path(__file__).resolve().parents[2]


def _read_frames(path: Path) -> list[tuple[float, bytes]]:
    with path.open("rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        assert reader.datalink() == LINKTYPE_LINUX_SLL2
        return [(ts, frame) for ts, frame in reader]


def _tcp_segments(path: Path, port: int) -> list[tuple[int, int, bytes]]:
    """Return (source port, TCP flags, payload) per TCP segment to or from port."""
    segments = []
    for _, frame in _read_frames(path):
        sll2 = dpkt.sll2.SLL2(frame)
        ip = sll2.data
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        if port in (tcp.sport, tcp.dport):
            segments.append((tcp.sport, tcp.flags, bytes(tcp.data)))
    return segments


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server
    server.close()


def _exchange(port: int, server: socket.socket, request: bytes) -> None:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    accepted, _ = server.accept()
    client.sendall(request)
    assert accepted.recv(len(request)) == request
    accepted.sendall(b"pong")
    assert client.recv(4) == b"pong"
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    client.close()
    accepted.close()


def test_recorder_loopback_exchange(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    path = tmp_path / "lo.pcap"
    with PcapRecorder(path, interface="lo", bpf=f"tcp port {port}") as recorder:
        _exchange(port, listener, b"ping")
    stats = recorder.stop()

    segments = _tcp_segments(path, port)
    flags = [f for _, f, _ in segments]
    syn, ack, psh, rst = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH, 4
    assert flags[:3] == [syn, syn | ack, ack]
    assert (port, psh | ack, b"pong") in [(s, f, d) for s, f, d in segments]
    assert flags[-1] & rst
    assert segments[-1][0] != port
    # Loopback packets appear once, not once outgoing and once incoming.
    assert flags.count(syn) == 1
    assert stats.packets == len(_read_frames(path))
    assert stats.packets == len(segments)
    assert stats.kernel_drops == 0


def test_recorder_filter_excludes(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    path = tmp_path / "none.pcap"
    with PcapRecorder(path, bpf=f"tcp port {port + 1 if port < 65535 else 1}"):
        _exchange(port, listener, b"ping")
    assert _read_frames(path) == []


def test_recorder_snaplen_truncates(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    path = tmp_path / "snap.pcap"
    request = bytes(range(256)) * 8
    with PcapRecorder(path, bpf=f"tcp port {port}", snaplen=100) as recorder:
        _exchange(port, listener, request)
    with path.open("rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        lengths = [(len(frame)) for _, frame in reader]
    assert recorder.stop().packets == len(lengths)
    assert max(lengths) == 100 + 20


def test_recorder_invalid_filter(tmp_path: Path) -> None:
    recorder = PcapRecorder(tmp_path / "x.pcap", bpf="tcp port banana")
    with pytest.raises(InputError, match="banana"):
        recorder.start()
    assert not (tmp_path / "x.pcap").exists()


def test_recorder_missing_interface(tmp_path: Path) -> None:
    recorder = PcapRecorder(tmp_path / "x.pcap", interface="nosuchif0")
    with pytest.raises(InputError, match="nosuchif0"):
        recorder.start()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_recorder_full_disk_is_capture_error() -> None:
    recorder = PcapRecorder(Path("/dev/full"))
    with pytest.raises(CaptureError) as caught:
        recorder.start()
    assert caught.value.message == (
        "cannot write capture file /dev/full: No space left on device"
    )
    assert caught.value.hint == "free space on its file system or record somewhere else"


def test_recorder_snaplen_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snaplen 10"):
        PcapRecorder(tmp_path / "x.pcap", snaplen=10)


@pytest.fixture
def veth_namespace() -> Iterator[tuple[str, str, str]]:
    """Create a namespace joined by a veth pair; yield (netns, host link, peer IP)."""
    tag = uuid.uuid4().hex[:6]
    netns, host_link, peer_link = f"pkcap{tag}", f"pkc{tag}h", f"pkc{tag}p"

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=10)

    try:
        run("ip", "netns", "add", netns)
        run("ip", "link", "add", host_link, "type", "veth", "peer", "name", peer_link)
        run("ip", "link", "set", peer_link, "netns", netns)
        run("ip", "addr", "add", "198.18.250.1/30", "dev", host_link)
        run("ip", "link", "set", host_link, "up")
        run("ip", "-n", netns, "addr", "add", "198.18.250.2/30", "dev", peer_link)
        run("ip", "-n", netns, "link", "set", peer_link, "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        yield netns, host_link, "198.18.250.2"
    finally:
        subprocess.run(["ip", "link", "del", host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def test_recorder_veth_outgoing(
    tmp_path: Path, veth_namespace: tuple[str, str, str]
) -> None:
    _netns, host_link, peer = veth_namespace
    path = tmp_path / "veth.pcap"
    payload = os.urandom(16)
    with PcapRecorder(path, interface=host_link, bpf="udp port 9") as recorder:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3):
            sender.sendto(payload, (peer, 9))
        sender.close()
    stats = recorder.stop()

    frames = _read_frames(path)
    assert stats.packets == 3
    assert len(frames) == 3
    for _, frame in frames:
        sll2 = dpkt.sll2.SLL2(frame)
        assert sll2.type == 4  # PACKET_OUTGOING
        assert sll2.intindex == socket.if_nametoindex(host_link)
        assert bytes(sll2.data.data.data) == payload


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_recorder_without_privilege(tmp_path: Path) -> None:
    """An unprivileged user gets PrivilegeError with a hint, not a traceback."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPOSITORY)!r})\n"
        "from pathlib import Path\n"
        "from pktscan.capture.recorder import PcapRecorder\n"
        "from pktscan.errors import PrivilegeError\n"
        "try:\n"
        f"    PcapRecorder(Path({str(tmp_path / 'x.pcap')!r})).start()\n"
        "except PrivilegeError as error:\n"
        "    print(error.message)\n"
        "    print(error.hint)\n"
    )
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    message, hint = result.stdout.splitlines()
    assert message == "opening an AF_PACKET socket to record packets was not permitted"
    assert hint == "run as root or grant the CAP_NET_RAW capability"
