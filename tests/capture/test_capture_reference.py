"""Check the reference captures in captures/ and broken variants of them.

scripts/record-captures records each file from the lab: one scan of one lab
server, by its DNS name, on its port. The table below lists what each file
shows. Re-recording changes times, ports and fingerprints but none of the
facts in the table, unless the lab's servers change.

The broken variants are built from tls10-12.pcap (one attempt that brings
the certificate) and tls12-only.pcap (three attempts, sets 1 to 3), packet
by packet, and each must give its one precise deviation.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import xml.dom.minidom
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest
from typer.testing import CliRunner

from pktscan.capture.checker import check_file
from pktscan.capture.cli import app
from pktscan.capture.decode import network_layer
from pktscan.capture.reader import Damage, read_capture
from pktscan.capture.replay import replay_file
from pktscan.capture.sequence import Profile
from pktscan.capture.walk import Deviation

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
MAX_CAPTURE_BYTES = 200_000
MAX_TOTAL_BYTES = 2_000_000
PCAP_HEADER_LEN = 24
PCAP_RECORD_HEADER_LEN = 16
SSL3_INTOLERANT = ((1, "reset"), (2, "reset"), (3, "reset"), (4, "certificate"))
TLS13_ONLY = ((1, "alert"), (2, "alert"), (3, "alert"), (4, "alert"))


@dataclass(frozen=True)
class Reference:
    """What one reference capture shows.

    Attributes:
        name: file name without ".pcap", the lab server's name.
        target: "address:port".
        probe: the SYN probe's verdict.
        attempts: (protocol set, outcome) of each TLS attempt, in order.
        version: the negotiated version of the attempt with the certificate.
        chain: number of certificates in the served chain.
        common_name: the leaf's subject common name.
        profile: the verify profile of the engine that made it.
    """

    name: str
    target: str
    probe: str
    attempts: tuple[tuple[int, str], ...] = ()
    version: str | None = None
    chain: int = 0
    common_name: str | None = None
    profile: Profile = Profile.SCAN


def _first_set(name: str, address: int, version: str = "TLSv1.0") -> Reference:
    """Describe a server whose certificate comes with the first attempt."""
    return Reference(
        name,
        f"198.18.0.{address}:443",
        "open",
        ((1, "certificate"),),
        version,
        1,
        f"{name}.lab.pktscan.test",
    )


REFERENCES = [
    _first_set("tls10-12", 10),
    Reference(
        "tls12-only",
        "198.18.0.11:443",
        "open",
        ((1, "alert"), (2, "alert"), (3, "certificate")),
        "TLSv1.2",
        1,
        "tls12-only.lab.pktscan.test",
    ),
    Reference("tls13-only", "198.18.0.12:443", "open", TLS13_ONLY),
    _first_set("ssl3-only", 13, "SSLv3"),
    _first_set("ssl2-only", 14, "SSLv2"),
    Reference(
        "tls10-no-v2hello",
        "198.18.0.15:443",
        "open",
        ((1, "reset"), (2, "certificate")),
        "TLSv1.0",
        1,
        "tls10-no-v2hello.lab.pktscan.test",
    ),
    Reference(
        "ssl3-intolerant",
        "198.18.0.16:443",
        "open",
        SSL3_INTOLERANT,
        "SSLv3",
        1,
        "ssl3-intolerant.lab.pktscan.test",
    ),
    _first_set("tls10-no-ext", 17),
    Reference(
        "bigchain",
        "198.18.0.18:443",
        "open",
        ((1, "certificate"),),
        "TLSv1.0",
        21,
        "bigchain.lab.pktscan.test",
    ),
    Reference("http", "198.18.0.19:80", "open"),
    Reference("closed", "198.18.0.20:443", "closed"),
    Reference("filtered", "198.18.0.21:443", "filtered"),
    _first_set("expired", 41),
    _first_set("not-yet-valid", 42),
    _first_set("self-signed", 43),
    _first_set("weak-rsa", 44),
    _first_set("sha1-signed", 45),
    Reference(
        "wrong-name",
        "198.18.0.46:443",
        "open",
        ((1, "certificate"),),
        "TLSv1.0",
        1,
        "elsewhere.pktscan.test",
    ),
    Reference(
        "out-of-order",
        "198.18.0.47:443",
        "open",
        ((1, "certificate"),),
        "TLSv1.0",
        4,
        "out-of-order.lab.pktscan.test",
    ),
    Reference(
        "incomplete",
        "198.18.0.48:443",
        "open",
        ((1, "certificate"),),
        "TLSv1.0",
        2,
        "incomplete.lab.pktscan.test",
    ),
    _first_set("dh1024", 49),
    _first_set("expiring", 50),
    # The same servers scanned with the raw engine.
    Reference(
        "raw-tls10-12",
        "198.18.0.10:443",
        "open",
        ((1, "certificate"),),
        "TLSv1.0",
        1,
        "tls10-12.lab.pktscan.test",
        Profile.RAW,
    ),
    Reference(
        "raw-tls12-only",
        "198.18.0.11:443",
        "open",
        ((1, "alert"), (2, "alert"), (3, "certificate")),
        "TLSv1.2",
        1,
        "tls12-only.lab.pktscan.test",
        Profile.RAW,
    ),
    Reference(
        "raw-ssl3-intolerant",
        "198.18.0.16:443",
        "open",
        SSL3_INTOLERANT,
        "SSLv3",
        1,
        "ssl3-intolerant.lab.pktscan.test",
        Profile.RAW,
    ),
    # A closed port looks the same to both engines, so either profile fits.
    Reference("raw-closed", "198.18.0.20:443", "closed"),
]


def _path(reference: Reference) -> Path:
    return CAPTURES / f"{reference.name}.pcap"


def test_reference_files_listed() -> None:
    on_disk = sorted(path.stem for path in CAPTURES.glob("*.pcap"))
    readme = (CAPTURES / "README.md").read_text(encoding="utf-8")

    assert on_disk == sorted(reference.name for reference in REFERENCES)
    for name in on_disk:
        assert f"`{name}.pcap`" in readme, f"{name}.pcap has no README line"


def test_reference_file_sizes() -> None:
    sizes = {path.name: path.stat().st_size for path in CAPTURES.glob("*.pcap")}

    for name, size in sizes.items():
        assert size < MAX_CAPTURE_BYTES, f"{name} is {size} bytes"
    assert sum(sizes.values()) < MAX_TOTAL_BYTES


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: r.name)
def test_reference_verifies(reference: Reference) -> None:
    report = check_file(_path(reference), reference.profile)

    assert report.damage is None
    assert report.conforms
    assert [verdict.target for verdict in report.targets] == [reference.target]
    verdict = report.targets[0]
    assert verdict.probe == reference.probe
    sets = tuple(attempt.set_number for attempt in verdict.attempts)
    if reference.name != "http":
        assert sets == tuple(number for number, _ in reference.attempts)


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: r.name)
def test_reference_verify_default_profile(reference: Reference) -> None:
    result = CliRunner().invoke(app, ["verify", str(_path(reference))])

    assert result.exit_code == 0, result.output
    first_line = result.output.splitlines()[0]
    assert first_line.endswith(f"profile {reference.profile.value}")


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: r.name)
def test_reference_replays(reference: Reference) -> None:
    report = replay_file(_path(reference))

    assert report.damage is None
    assert len(report.results) == 1
    result = report.results[0]
    assert f"{result.ip}:{result.port}" == reference.target
    assert result.state == reference.probe
    server_name = reference.name.removeprefix("raw-")
    assert result.name == f"{server_name}.lab.pktscan.test"
    if reference.probe != "open":
        assert result.tls is None
        return
    assert result.ptr == result.name
    if reference.name == "http":
        assert result.tls is None
        assert result.http is not None
        assert result.http.status == "HTTP/1.1 200 OK"
        return
    assert result.tls is not None
    attempts = tuple((a.set_number, a.outcome) for a in result.tls.attempts)
    assert attempts == reference.attempts
    assert result.tls.version == reference.version
    assert len(result.tls.chain) == reference.chain
    if reference.common_name is not None:
        assert result.tls.chain[0].subject is not None
        assert f"CN={reference.common_name}," in result.tls.chain[0].subject


def _tshark_certificates(path: Path) -> set[str]:
    output = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-Y",
            "tls.handshake.certificate",
            "-T",
            "fields",
            "-e",
            "tls.handshake.certificate",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {
        hashlib.sha256(bytes.fromhex(value)).hexdigest()
        for line in output.split()
        for value in line.split(",")
        if value
    }


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
@pytest.mark.parametrize("reference", REFERENCES, ids=lambda r: r.name)
def test_reference_certificates_match_tshark(reference: Reference) -> None:
    report = replay_file(_path(reference))
    ours = {hashlib.sha256(der).hexdigest() for der in report.certificates()}

    assert len(ours) == reference.chain
    assert ours == _tshark_certificates(_path(reference))


# Broken variants, edited packet by packet.

Frames = list[tuple[float, bytes]]


def _load(path: Path) -> tuple[int, Frames]:
    with path.open("rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        return reader.datalink(), [(ts, bytes(buf)) for ts, buf in reader]


def _save(path: Path, linktype: int, frames: Frames) -> Path:
    # The recorder writes nanosecond timestamps, so the variants keep them.
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=linktype, nano=True)
        for timestamp, frame in frames:
            writer.writepkt(frame, timestamp)
    return path


def _times(path: Path) -> list[float]:
    """Return the frame timestamps as pktscan's reader gives them."""
    with read_capture(path) as reader:
        return [frame.timestamp for frame in reader]


def _edit_ip(linktype: int, frame: bytes, edit: Callable[[dpkt.ip.IP], None]) -> bytes:
    """Return the frame with its IPv4 packet edited and checksums recomputed."""
    located = network_layer(linktype, frame)
    assert located is not None
    _, offset = located
    packet = dpkt.ip.IP(frame[offset:])
    edit(packet)
    packet.data.sum = 0
    packet.sum = 0
    packet.len = len(packet)
    return frame[:offset] + bytes(packet)


def _tcp(linktype: int, frame: bytes) -> dpkt.tcp.TCP:
    located = network_layer(linktype, frame)
    assert located is not None
    segment = dpkt.ip.IP(frame[located[1] :]).data
    assert isinstance(segment, dpkt.tcp.TCP)
    return segment


def _one_attempt() -> tuple[int, Frames]:
    """Load tls10-12.pcap and check the packets the variants edit."""
    linktype, frames = _load(CAPTURES / "tls10-12.pcap")
    assert len(frames) == 16
    flight = _tcp(linktype, frames[13][1])
    assert flight.sport == 443
    assert flight.data[:1] == b"\x16"
    close = _tcp(linktype, frames[15][1])
    assert close.flags == dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK
    return linktype, frames


def _deviations(path: Path) -> tuple[Deviation, ...]:
    report = check_file(path, Profile.SCAN)
    assert len(report.targets) == 1
    return report.targets[0].deviations


def _leaf_sha256(path: Path) -> str | None:
    result = replay_file(path).results[0]
    assert result.tls is not None
    return result.tls.chain[0].sha256 if result.tls.chain else None


def test_variant_rst_missing(tmp_path: Path) -> None:
    linktype, frames = _one_attempt()
    path = _save(tmp_path / "rst-missing.pcap", linktype, frames[:15])

    assert _deviations(path) == (
        Deviation(
            15,
            _times(path)[14],
            "RST from scanner as its last packet",
            "end of the connection",
        ),
    )
    assert _leaf_sha256(path) == _leaf_sha256(CAPTURES / "tls10-12.pcap")


def test_variant_fin_instead_of_rst(tmp_path: Path) -> None:
    linktype, frames = _one_attempt()

    def to_fin(packet: dpkt.ip.IP) -> None:
        packet.data.flags = dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK

    timestamp, close = frames[15]
    frames[15] = (timestamp, _edit_ip(linktype, close, to_fin))
    path = _save(tmp_path / "fin.pcap", linktype, frames)

    assert _deviations(path) == (
        Deviation(
            16,
            _times(path)[15],
            "RST from scanner as its last packet",
            "FIN/ACK from scanner",
        ),
    )
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 1
    assert "set 1 (certificate in packet 14, close: FIN from scanner)" in (
        result.output
    )


def test_variant_attempts_out_of_order(tmp_path: Path) -> None:
    linktype, frames = _load(CAPTURES / "tls12-only.pcap")
    assert len(frames) == 34
    ports = [_tcp(linktype, frames[i][1]).sport for i in (8, 17, 26)]
    # Attempts start at packets 9, 18 and 27; set 3's moves before set 2's,
    # and the times stay in file order, as if the scanner had sent set 3
    # second.
    order = frames[:17] + frames[26:] + frames[17:26]
    original_times = [timestamp for timestamp, _ in frames]
    moved = [(original_times[i], frame) for i, (_, frame) in enumerate(order)]
    path = _save(tmp_path / "order.pcap", linktype, moved)
    times = _times(path)

    assert _deviations(path) == (
        Deviation(
            26,
            times[25],
            "no attempt after the certificate in packet 23",
            f"ClientHello (set 2) from port {ports[1]}",
        ),
        Deviation(29, times[28], "ClientHello of a set above 3", "ClientHello (set 2)"),
    )
    attempts = check_file(path, Profile.SCAN).targets[0].attempts
    assert [attempt.set_number for attempt in attempts] == [1, 3, 2]


def test_variant_certificate_split_out_of_order(tmp_path: Path) -> None:
    linktype, frames = _one_attempt()
    timestamp, flight_frame = frames[13]
    flight = _tcp(linktype, flight_frame)
    payload = bytes(flight.data)
    assert len(payload) > 600

    def piece(start: int, end: int) -> tuple[float, bytes]:
        def cut(packet: dpkt.ip.IP) -> None:
            packet.data.seq = (flight.seq + start) % 2**32
            packet.data.data = payload[start:end]

        return timestamp, _edit_ip(linktype, flight_frame, cut)

    # The tail arrives first, then the head, then the middle: packets 14,
    # 15 and 16. The certificate is complete only with packet 16.
    pieces = [piece(600, len(payload)), piece(0, 300), piece(300, 600)]
    path = _save(tmp_path / "split.pcap", linktype, frames[:13] + pieces + frames[14:])
    report = check_file(path, Profile.SCAN)

    assert report.conforms
    attempt = report.targets[0].attempts[0]
    assert attempt.certificate_number == 16
    assert _leaf_sha256(path) == _leaf_sha256(CAPTURES / "tls10-12.pcap")


def test_variant_truncated_file(tmp_path: Path) -> None:
    _, frames = _one_attempt()
    data = (CAPTURES / "tls10-12.pcap").read_bytes()
    # Cut 401 bytes into packet 14's data, the server flight.
    offset = PCAP_HEADER_LEN
    for _, frame in frames[:13]:
        offset += PCAP_RECORD_HEADER_LEN + len(frame)
    captured_length = struct.unpack_from("<I", data, offset + 8)[0]
    path = tmp_path / "truncated.pcap"
    path.write_bytes(data[: offset + PCAP_RECORD_HEADER_LEN + 401])
    report = check_file(path, Profile.SCAN)

    assert report.damage == Damage(
        14,
        offset,
        f"file ends after 401 of {captured_length} bytes of the record",
    )
    assert report.targets[0].deviations == (
        Deviation(
            13,
            _times(path)[12],
            "RST from scanner as its last packet",
            "end of the connection",
        ),
    )
    assert _leaf_sha256(path) is None
    verified = CliRunner().invoke(app, ["verify", str(path)])
    assert verified.exit_code == 1
    assert f"damage: reading stopped at packet 14 at byte offset {offset}" in (
        verified.output
    )
    replayed = CliRunner().invoke(app, ["replay", str(path)])
    assert replayed.exit_code == 1
    assert "0 with a certificate" in replayed.output


def _text_of(node: xml.dom.minidom.Element) -> str:
    child = node.firstChild
    assert isinstance(child, xml.dom.minidom.Text)
    return child.data


def test_reference_show_svg(tmp_path: Path) -> None:
    svg = tmp_path / "ladder.svg"
    path = CAPTURES / "tls12-only.pcap"
    result = CliRunner().invoke(app, ["show", str(path), "--svg", str(svg)])

    assert result.exit_code == 0, result.output
    document = xml.dom.minidom.parse(str(svg))
    texts = [
        (_text_of(node), node.getAttribute("fill"))
        for node in document.getElementsByTagName("text")
    ]
    labels = [text for text, _ in texts]
    assert labels[0].startswith("Each arrow is one TCP segment")
    assert labels.count("server 198.18.0.11:443") == 4
    assert sum(label.startswith("client 198.18.0.1:") for label in labels) == 4
    assert any(label.startswith("DNS A tls12-only.lab", 20) for label in labels)
    flight = "ServerHello, Certificate, ServerKeyExchange, ServerHelloDone"
    assert (flight, "#1f5fbf") in texts
    assert ("ClientHello (set 3)", "#1f5fbf") in texts
    assert texts.count(("RST/ACK", "#c00")) == 3
    assert ("SYN/ACK", "#000") in texts
