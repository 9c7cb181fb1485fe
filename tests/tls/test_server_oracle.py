"""Server replies decoded field by field by pktscan, tshark and scapy.

Every recorded flight in `flights/` is written into a synthetic pcap: the
server side of one TCP connection from port 443, in MSS-sized segments.
`tshark -T json` reads the pcap back, and scapy's TLS layer parses the
same bytes.
The fields compared are those `server_oracle` lists.

tshark 4.0 dissects port 443 as TLS by default, and reassembles records
across segments with `tcp.desegment_tcp_streams` (on by default, set here
so the test says what it relies on).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from server_oracle import (
    Fields,
    decode_ours,
    decode_scapy,
    decode_tshark,
    tshark_records,
    write_server_pcap,
)

FLIGHTS = Path(__file__).parent / "flights"
FLIGHT_NAMES = sorted(
    p.stem for p in FLIGHTS.glob("*.bin") if not p.name.endswith(".hello.bin")
)
TSHARK = shutil.which("tshark")
TSHARK_SECONDS = 120
TSHARK_OPTIONS = ("-o", "tcp.desegment_tcp_streams:TRUE")

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def run_tshark(path: Path, *options: str) -> list[dict[str, Any]]:
    """Return the `_source.layers` of every frame of `path`."""
    assert TSHARK is not None
    output = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "json", "--no-duplicate-keys", *options],
        capture_output=True,
        check=True,
        timeout=TSHARK_SECONDS,
    ).stdout
    return [frame["_source"]["layers"] for frame in json.loads(output)]


def tshark_fields(data: bytes, tmp_path: Path) -> Fields:
    path = tmp_path / "flight.pcap"
    write_server_pcap(data, path)
    frames = run_tshark(path, *TSHARK_OPTIONS)
    records = [r for frame in frames for r in tshark_records(frame.get("tls", []))]
    return decode_tshark(records)


@needs_tshark
@pytest.mark.parametrize("name", FLIGHT_NAMES)
def test_flight_matches_tshark(name: str, tmp_path: Path) -> None:
    data = (FLIGHTS / f"{name}.bin").read_bytes()
    ours = decode_ours(data)
    theirs = tshark_fields(data, tmp_path)

    assert ours.records == theirs.records
    assert ours.messages == theirs.messages


def flight_formats() -> dict[str, str]:
    """Hello format ("tls" or "sslv2") of each flight, from its manifest."""
    entries = [
        *json.loads((FLIGHTS / "manifest.json").read_text()),
        *json.loads((FLIGHTS / "real-networks.json").read_text()),
    ]
    return {entry["name"]: entry["hello_format"] for entry in entries}


def pin_scapy_big_chain(ours: Fields) -> Fields:
    # scapy 2.8.0 does not reassemble a handshake message split over records:
    # the Certificate (16,384 + 6,013 bytes of fragment) comes out as two Raw
    # messages, each as long as its record's fragment.
    messages = [*ours.messages]
    messages[1:2] = [{"undecoded": 16384}, {"undecoded": 6013}]
    return Fields(ours.records, messages)


def pin_scapy_tls13(ours: Fields) -> Fields:
    # After the TLS 1.3 ServerHello and ChangeCipherSpec, scapy 2.8.0 tries to
    # decrypt the next record, and its `pre_dissect` raises ValueError in
    # `_tls_auth_decrypt`. `TLS.do_dissect_payload` catches the error, so the
    # four application_data records (28 + 1,552 + 286 + 58 bytes) end up in one Raw.
    records = ours.records[:2]
    records.append(
        ("undecoded", 0, sum(5 + length for _, _, length in ours.records[2:]))
    )
    return Fields(records, ours.messages)


def pin_scapy_not_tls(ours: Fields) -> Fields:
    # The HTTP 400 page is not TLS: pktscan finds no record, and scapy's TLS
    # class hands the whole 309 bytes to Raw.
    return Fields([("undecoded", 0, 309)], ours.messages)


# Flight name -> how scapy's fields differ from ours, with the reason.
SCAPY_DIFFERENCES = {
    "openssl-big-chain": pin_scapy_big_chain,
    "openssl-tls13": pin_scapy_tls13,
    "nginx-http-400": pin_scapy_not_tls,
}


@pytest.mark.parametrize("name", FLIGHT_NAMES)
def test_flight_matches_scapy(name: str) -> None:
    data = (FLIGHTS / f"{name}.bin").read_bytes()
    ours = decode_ours(data)
    theirs = decode_scapy(data, flight_formats()[name])

    expected = SCAPY_DIFFERENCES.get(name, lambda fields: fields)(ours)
    assert theirs.records == expected.records
    assert theirs.messages == expected.messages
