"""Server replies decoded field by field by pktscan, tshark and scapy.

Every recorded flight in `flights/` is written into a synthetic pcap: the
server side of one TCP connection from port 443, in MSS-sized segments.
`tshark -T json` reads the pcap back, and scapy's TLS layer parses the
same bytes. Then every TLS and SSL 2.0 flow that pktscan's replay finds in
the corpus (PKTSCAN_CORPUS, default shared/corpus/pcaps beside the
repository, skipped when missing) is compared with tshark's decode of the
same file. The fields compared are those `server_oracle` lists. In both
parts, the events of pktscan's HandshakeReader must agree with the codec. Where a
decoder differs for a known reason, a table below pins the difference.

tshark 4.0 dissects port 443 as TLS by default, and reassembles records
across segments with `tcp.desegment_tcp_streams`, which is on by default
and set here so that the test states what it relies on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from server_oracle import (
    Fields,
    Message,
    as_list,
    decode_events,
    decode_ours,
    decode_scapy,
    decode_tshark,
    tshark_records,
    write_server_pcap,
)

from pktscan.capture.flows import flows_from_file
from pktscan.capture.replay import HelloFormat, replay_flows
from pktscan.tls.client import HandshakeReader
from pktscan.tls.events import Event

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
        check=False,  # 2 when a packet is malformed, with the JSON written
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


def flight_formats() -> dict[str, HelloFormat]:
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


def assert_reader_agrees(events: Iterable[Event], ours: Fields) -> None:
    """Check that HandshakeReader reported what the codec decodes, in order.

    The reader stops once the flight is done, so it may report fewer
    messages than `decode_ours`, never different ones.
    """
    reported = decode_events(events)
    assert reported == ours.messages[: len(reported)]


@pytest.mark.parametrize("name", FLIGHT_NAMES)
def test_flight_reader_matches_codec(name: str) -> None:
    data = (FLIGHTS / f"{name}.bin").read_bytes()
    reader = HandshakeReader(flight_formats()[name])
    events = reader.feed(data)

    assert events
    assert_reader_agrees(events, decode_ours(data))


# The corpus: real captures, each flow's server bytes against tshark's decode.

DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pcaps"
CORPUS = Path(os.environ.get("PKTSCAN_CORPUS", str(DEFAULT_CORPUS)))
CORPUS_FILES = (
    sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix != ".md")
    if CORPUS.is_dir()
    else []
)
# tshark places segments after a gap by sequence number, as pktscan's flows do.
CORPUS_OPTIONS = (*TSHARK_OPTIONS, "-o", "tcp.reassemble_out_of_order:TRUE")

Endpoints = tuple[str, int, str, int]  # sender address and port, receiver's


def tshark_streams(path: Path) -> dict[Endpoints, list[list[dict[str, Any]]]]:
    """Map each sender and receiver to the TLS records of its TCP streams.

    The streams of one address pair come in tshark's stream order. In a
    tunnel, the innermost IP header names the endpoints.
    """
    frames = run_tshark(path, "-J", "ip ipv6 tcp tls", *CORPUS_OPTIONS)
    streams: dict[tuple[Endpoints, str], list[dict[str, Any]]] = {}
    for frame in frames:
        if "tls" not in frame:
            continue
        ip = as_list(frame.get("ip") or frame.get("ipv6"))[-1]
        tcp = as_list(frame["tcp"])[-1]
        source = ip.get("ip.src") or ip.get("ipv6.src")
        destination = ip.get("ip.dst") or ip.get("ipv6.dst")
        endpoints = (
            source,
            int(tcp["tcp.srcport"]),
            destination,
            int(tcp["tcp.dstport"]),
        )
        key = (endpoints, tcp["tcp.stream"])
        streams.setdefault(key, []).extend(tshark_records(frame["tls"]))
    grouped: dict[Endpoints, list[list[dict[str, Any]]]] = {}
    for (endpoints, _), records in streams.items():
        grouped.setdefault(endpoints, []).append(records)
    return grouped


def pin_unknown_message_as_encrypted(ours: Fields) -> Fields:
    # Packet 6 carries a ServerHello, then a 758-byte handshake record whose
    # message type is 9 (unassigned), length 754: a Certificate with its type
    # byte damaged. tshark 4.0.17 labels the record "Encrypted Handshake
    # Message" and decodes no message in it, while pktscan reports type 9.
    return Fields(ours.records, [m for m in ours.messages if m != {"type": 9}])


def pin_broken_der_entry(ours: Fields) -> Fields:
    # Packet 6: the Certificate's one entry is 9 bytes of broken DER
    # (30 05 30 84 ff ff ff ...). tshark outputs only its first 7 bytes and
    # marks the packet malformed, while pktscan keeps all 9, as sent.
    messages = [
        {"type": 11, "certificates": ("26bd8df98cae30a6",)}
        if m == {"type": 11, "certificates": ("a8b66060986b36dd",)}
        else m
        for m in ours.messages
    ]
    return Fields(ours.records, messages)


def pin_encrypted_sslv2_lengths(ours: Fields) -> Fields:
    # After the SERVER-HELLO, the server's three records (packets 9, 11
    # and 18) are encrypted. tshark 4.0.17 shows them as "Encrypted Data"
    # with no tls.record.length, so their length reads as -1.
    records = [ours.records[0], *((kind, v, -1) for kind, v, _ in ours.records[1:])]
    return Fields(records, ours.messages)


def pin_oversized_certificate(ours: Fields) -> Fields:
    # The Certificate message is 339,629 bytes long, over pktscan's cap of
    # MAX_HANDSHAKE_MESSAGE_LEN (262,144), so the codec stops there with an
    # error. tshark 4.0.17 labels the 21 records that carry it "Encrypted
    # Handshake Message", leaves the Certificate out and decodes the
    # ServerKeyExchange (secp256r1) and ServerHelloDone after it.
    assert ours.messages[1] == {
        "error": "handshake message length 339629 at offset 100 exceeds 262144"
    }
    rest: list[Message] = [{"type": 12, "named_group": 23}, {"type": 14}]
    return Fields(ours.records, [ours.messages[0], *rest])


# Corpus file -> how tshark's fields differ from pktscan's, with the reason.
TSHARK_DIFFERENCES = {
    "nDPI_tls_invalid_reads.pcap": pin_unknown_message_as_encrypted,
    "suricata-verify_bug-1450-04_tls_DER-incomplete-header.pcap": (
        pin_broken_der_entry
    ),
    "zeek_ssl-v2.pcap": pin_encrypted_sslv2_lengths,
    "zeek_tls-fragmented-handshake.pcap": pin_oversized_certificate,
}


@needs_tshark
@pytest.mark.skipif(not CORPUS_FILES, reason=f"no corpus at {CORPUS}")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus_flows_match_tshark(path: Path) -> None:
    streams = tshark_streams(path)
    pin = TSHARK_DIFFERENCES.get(path.name, lambda fields: fields)

    pinned = 0
    for flow in replay_flows(flows_from_file(path), str(path)).flows:
        connection = flow.connection
        endpoints = (*connection.server, *connection.client)
        theirs = decode_tshark(streams.get(endpoints, [[]]).pop(0))
        ours = decode_ours(connection.server_stream.data)
        expected = pin(ours)
        assert theirs.records == expected.records, flow.target
        assert theirs.messages == expected.messages, flow.target
        assert_reader_agrees(flow.outcome.events, ours)
        pinned += expected != ours

    # A pinned difference that no longer occurs must leave the table.
    assert pinned == (path.name in TSHARK_DIFFERENCES)
