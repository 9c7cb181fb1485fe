"""Cross-check of our hellos against tshark's TLS dissector.

The hellos go into a pcap file as TCP payload to port 443 (written with
scapy, nothing is sent), and `tshark -r pcap -T json` reads them back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from pktscan.tls import sets
from pktscan.tls.sets import build_set_hello

TSHARK = shutil.which("tshark")
RANDOM = bytes(range(32))
SNI = "www.example.test"

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


@pytest.fixture(scope="module")
def dissected(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """tshark's `tls` layer of each set's hello, in set order."""
    path: Path = tmp_path_factory.mktemp("tshark") / "hellos.pcap"
    packets = [
        Ether()
        / IP(src="198.18.0.1", dst="198.18.0.2")
        / TCP(sport=40000 + n, dport=443, flags="PA", seq=1, ack=1)
        / build_set_hello(n, RANDOM, SNI)
        for n in (1, 2, 3, 4)
    ]
    wrpcap(str(path), packets)
    assert TSHARK is not None
    output = subprocess.run(
        [TSHARK, "-r", str(path), "-T", "json", "--no-duplicate-keys"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return [packet["_source"]["layers"]["tls"] for packet in json.loads(output)]


def as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def hex4(values: tuple[int, ...]) -> list[str]:
    return [f"0x{value:04x}" for value in values]


def test_set1_sslv2_fields(dissected: list[dict[str, Any]]) -> None:
    layer = dissected[0]["tls.record"]
    assert layer["tls.record.version"] == "0x0002"
    assert layer["tls.record.length"] == "176"
    assert layer["tls.handshake.version"] == "0x0301"
    assert layer["tls.handshake.challenge_length"] == "32"
    specs = as_list(layer["tls.handshake.ciphersuites"]["tls.handshake.cipherspec"])
    assert specs == [f"0x{spec:06x}" for spec in sets.SET1_CIPHER_SPECS]


@pytest.mark.parametrize("set_number", [2, 3, 4])
def test_tls_set_fields(dissected: list[dict[str, Any]], set_number: int) -> None:
    chosen = sets.protocol_set(set_number)
    data = build_set_hello(set_number, RANDOM, SNI)
    record = dissected[set_number - 1]["tls.record"]
    hello = record["tls.handshake"]
    assert record["tls.record.version"] == f"0x{chosen.record_version:04x}"
    assert record["tls.record.length"] == str(len(data) - 5)
    assert hello["tls.handshake.version"] == f"0x{chosen.client_version:04x}"
    assert hello["tls.handshake.random"] == RANDOM.hex(":")
    assert hello["tls.handshake.session_id_length"] == "0"
    suites = as_list(hello["tls.handshake.ciphersuites"]["tls.handshake.ciphersuite"])
    expected = sets.build_set_hello_object(set_number, RANDOM, SNI)
    assert suites == hex4(expected.cipher_suites)  # type: ignore[union-attr]
    assert "0x5600" not in suites  # TLS_FALLBACK_SCSV


def test_set3_extensions(dissected: list[dict[str, Any]]) -> None:
    hello = dissected[2]["tls.record"]["tls.handshake"]
    extensions = [value for key, value in hello.items() if key.startswith("Extension:")]
    types = [int(ext["tls.handshake.extension.type"]) for ext in extensions]
    assert types == [0, 10, 11, 13, 65281, 23, 35, 5, 21]
    sni = extensions[0]["Server Name Indication extension"]
    assert sni["tls.handshake.extensions_server_name"] == SNI
    groups = extensions[1]["tls.handshake.extensions_supported_groups"]
    assert groups["tls.handshake.extensions_supported_group"] == hex4(sets.GROUPS)
    schemes = extensions[3]["tls.handshake.sig_hash_algs"]["tls.handshake.sig_hash_alg"]
    assert schemes == hex4(sets.SIGNATURE_SCHEMES)
    assert hello["tls.handshake.length"] == "508"


@pytest.mark.parametrize("set_number", [2, 3, 4])
def test_ja3_string(dissected: list[dict[str, Any]], set_number: int) -> None:
    # JA3: version,suites,extension types,groups,point formats (decimal).
    hello = sets.build_set_hello_object(set_number, RANDOM, SNI)
    extensions = hello.extensions or ()  # type: ignore[union-attr]
    has_groups = bool(extensions)
    expected = ",".join(
        [
            str(hello.client_version),  # type: ignore[union-attr]
            "-".join(str(s) for s in hello.cipher_suites),  # type: ignore[union-attr]
            "-".join(str(e.extension_type) for e in extensions),
            "-".join(str(g) for g in sets.GROUPS) if has_groups else "",
            "0" if has_groups else "",
        ]
    )
    hello_layer = dissected[set_number - 1]["tls.record"]["tls.handshake"]
    assert hello_layer["tls.handshake.ja3_full"] == expected
