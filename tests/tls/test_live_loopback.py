"""Live exchanges with real servers on 127.0.0.1, through HandshakeReader.

The same servers as the recorded flights (see flights/record_flights.py),
started afresh for each test and stopped by PID, so that a change in the
hellos that breaks a real server fails here even before the flights are
recorded again. Everything stays on the loopback interface.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pktscan.tls.client import HandshakeReader
from pktscan.tls.sets import build_set_hello

FLIGHTS = Path(__file__).parent / "flights"


def _load_recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "record_flights", FLIGHTS / "record_flights.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recorder = _load_recorder()


def leaf_sha256(name: str) -> str:
    cert = x509.load_pem_x509_certificate((FLIGHTS / f"{name}-leaf.pem").read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def run_exchange(command_for_port, set_number: int) -> tuple[str, str | None, str]:  # type: ignore[no-untyped-def]
    port = recorder._free_port()
    hello_format = "sslv2" if set_number == 1 else "tls"
    hello = build_set_hello(set_number, os.urandom(32), "rsa.flights.pktscan.test")
    with recorder.running(command_for_port(port), port):
        reply = recorder.exchange(port, hello, hello_format)
    reader = HandshakeReader(hello_format)  # type: ignore[arg-type]
    reader.feed(reply)
    outcome = reader.finish("eof")
    sha = hashlib.sha256(outcome.chain[0]).hexdigest() if outcome.chain else ""
    return outcome.outcome, outcome.version_name, sha


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize(
    ("options", "set_number", "version"),
    [
        (["-cipher", "DEFAULT:@SECLEVEL=0", "-no_tls1_3"], 3, "TLSv1.2"),
        (["-cipher", "DEFAULT:@SECLEVEL=0", "-tls1"], 2, "TLSv1.0"),
        (["-cipher", "DEFAULT:@SECLEVEL=0", "-tls1"], 1, "TLSv1.0"),
    ],
    ids=["tls12-set3", "tls10-set2", "tls10-set1"],
)
def test_openssl_server(options: list[str], set_number: int, version: str) -> None:
    outcome, version_name, sha = run_exchange(
        lambda port: recorder.openssl(port, "rsa", *options), set_number
    )
    assert outcome == "certificate"
    assert version_name == version
    assert sha == leaf_sha256("rsa")


def test_tlslite_ssl3_server() -> None:
    cert, key = str(FLIGHTS / "rsa-leaf.pem"), str(FLIGHTS / "rsa-leaf.key")
    outcome, version_name, sha = run_exchange(
        lambda port: [
            recorder.PYTHON,
            "-c",
            recorder.TLSLITE_SERVER,
            str(port),
            cert,
            key,
        ],
        4,
    )
    assert (outcome, version_name) == ("certificate", "SSLv3")
    assert sha == leaf_sha256("rsa")


def test_scapy_sslv2_server() -> None:
    cert, key = str(FLIGHTS / "rsa-leaf.pem"), str(FLIGHTS / "rsa-leaf.key")
    outcome, version_name, sha = run_exchange(
        lambda port: [
            recorder.PYTHON,
            "-c",
            recorder.SCAPY_SERVER,
            str(port),
            cert,
            key,
        ],
        1,
    )
    assert (outcome, version_name) == ("certificate", "SSLv2")
    assert sha == leaf_sha256("rsa")
