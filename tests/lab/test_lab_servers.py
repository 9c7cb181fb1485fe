"""Each lab server responds as its kind should, checked from the scanner side.

All clients run inside the session lab's scanner namespace; the hellos are
built by lab_wire, not by pktscan's codec.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lab_wire import (
    SSL2,
    SSL3,
    TLS10,
    TLS12,
    ServerFlight,
    parse_flight,
    server_name_extension,
    sslv2_client_hello,
    tls_client_hello,
)

from pktscan.lab import Lab
from pktscan.lab.pki import WRONG_NAME

pytestmark = pytest.mark.lab

NSCLIENT = Path(__file__).with_name("lab_nsclient.py")
VERSION_NAMES = {SSL2: "SSLv2", SSL3: "SSLv3", TLS10: "TLSv1.0", TLS12: "TLSv1.2"}
# RFC 5246 alert descriptions the TLS servers send to hellos they reject.
HANDSHAKE_FAILURE = 40
PROTOCOL_VERSION = 70


def _run_client(lab: Lab, args: list[str], stdin: str | None = None) -> Any:
    argv = lab.exec_argv([sys.executable, str(NSCLIENT), *args])
    completed = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _servers(lab: Lab) -> dict[str, dict[str, Any]]:
    return {server["name"]: server for server in lab.manifest["servers"]}


def _set_hello(set_number: int, hostname: str) -> bytes:
    """A hello shaped like the scanner's protocol set `set_number`."""
    if set_number == 1:
        return sslv2_client_hello(TLS10)
    if set_number == 2:
        return tls_client_hello(TLS10, extensions=server_name_extension(hostname))
    if set_number == 3:
        return tls_client_hello(TLS12, extensions=server_name_extension(hostname))
    return tls_client_hello(SSL3, extensions=None, record_version=SSL3)


def _describe(result: dict[str, Any]) -> str:
    """Reduce a hello result to "cert VERSION", "alert N", "reset" or "eof"."""
    flight, complete = parse_flight(bytes.fromhex(result["data"]))
    if complete and flight.format == "alert":
        assert flight.alert is not None
        return f"alert {flight.alert[1]}"
    if complete and flight.certificates:
        assert flight.version is not None
        return f"cert {VERSION_NAMES[flight.version]}"
    return str(result["outcome"])


# What each server returns to hellos shaped like protocol sets 1 to 4.
SET_OUTCOMES = {
    "tls10-12": ["cert TLSv1.0", "cert TLSv1.0", "cert TLSv1.2", "alert 40"],
    "tls12-only": ["alert 70", "alert 70", "cert TLSv1.2", "alert 40"],
    "tls13-only": ["alert 70", "alert 70", "alert 70", "alert 40"],
    "ssl3-only": ["cert SSLv3", "cert SSLv3", "cert SSLv3", "cert SSLv3"],
    "ssl2-only": ["cert SSLv2", "reset", "reset", "reset"],
    "tls10-no-v2hello": ["reset", "cert TLSv1.0", "cert TLSv1.0", "alert 40"],
    "ssl3-intolerant": ["reset", "reset", "reset", "cert SSLv3"],
    "tls10-no-ext": ["cert TLSv1.0", "reset", "reset", "alert 40"],
    "bigchain": ["cert TLSv1.0", "cert TLSv1.0", "cert TLSv1.2", "alert 40"],
}


@pytest.fixture(scope="module")
def set_outcomes(lab: Lab) -> dict[str, list[str]]:
    """Outcome of every set-shaped hello against every TLS server."""
    servers = _servers(lab)
    requests = [
        [servers[name]["address"], servers[name]["port"], hello.hex()]
        for name in SET_OUTCOMES
        for hello in (_set_hello(n, servers[name]["hostname"]) for n in (1, 2, 3, 4))
    ]
    results = _run_client(lab, ["hellos"], json.dumps(requests))
    described = [_describe(result) for result in results]
    return {
        name: described[index * 4 : index * 4 + 4]
        for index, name in enumerate(SET_OUTCOMES)
    }


@pytest.mark.parametrize("name", sorted(SET_OUTCOMES))
def test_server_response_per_set(set_outcomes: dict[str, list[str]], name: str) -> None:
    assert set_outcomes[name] == SET_OUTCOMES[name]


@pytest.mark.parametrize("name", sorted(SET_OUTCOMES))
def test_manifest_expected_set_matches(
    lab: Lab, set_outcomes: dict[str, list[str]], name: str
) -> None:
    server = _servers(lab)[name]
    outcomes = set_outcomes[name]
    first = next(
        (n for n, outcome in enumerate(outcomes, 1) if outcome.startswith("cert")),
        None,
    )
    assert server["expected_set"] == first
    if first is not None:
        assert outcomes[first - 1] == f"cert {server['expected_version']}"


def _leaf_der(server: dict[str, Any]) -> bytes:
    pem = Path(server["cert_file"]).read_bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def served_flights(lab: Lab) -> dict[str, ServerFlight]:
    """The flight each TLS server sends to the hello of its expected set.

    The dh1024 server is left out: it accepts only DHE suites, which the
    test hellos of lab_wire do not offer.
    """
    servers = [
        server
        for server in lab.manifest["servers"]
        if server["expected_set"] and server["name"] != "dh1024"
    ]
    requests = [
        [
            server["address"],
            server["port"],
            _set_hello(server["expected_set"], server["hostname"]).hex(),
        ]
        for server in servers
    ]
    results = _run_client(lab, ["hellos"], json.dumps(requests))
    return {
        server["name"]: parse_flight(bytes.fromhex(result["data"]))[0]
        for server, result in zip(servers, results, strict=True)
    }


def test_served_leaf_matches_manifest(
    lab: Lab, served_flights: dict[str, ServerFlight]
) -> None:
    for name, flight in served_flights.items():
        server = _servers(lab)[name]
        assert flight.certificates, name
        served = hashlib.sha256(flight.certificates[0]).hexdigest()
        assert served == server["leaf_sha256"], name
        assert flight.certificates[0] == _leaf_der(server), name


def test_served_leaf_names_server(served_flights: dict[str, ServerFlight]) -> None:
    for name, flight in served_flights.items():
        leaf = x509.load_der_x509_certificate(flight.certificates[0])
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        hostname = f"{name}.lab.pktscan.test"
        if name == "wrong-name":
            hostname = WRONG_NAME
        assert san.value.get_values_for_type(x509.DNSName) == [hostname]
        common_names = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        assert [attribute.value for attribute in common_names] == [hostname]


def test_bigchain_spans_records(
    lab: Lab, served_flights: dict[str, ServerFlight]
) -> None:
    flight = served_flights["bigchain"]
    server = _servers(lab)["bigchain"]
    chain_der = [
        x509.load_pem_x509_certificate(Path(path).read_bytes()).public_bytes(
            Encoding.DER
        )
        for path in server["chain_files"]
    ]
    assert list(flight.certificates) == chain_der
    assert sum(len(der) for der in flight.certificates) > 16384
    assert flight.records >= 2


def test_tls13_leaf_matches_manifest(lab: Lab) -> None:
    server = _servers(lab)["tls13-only"]
    argv = lab.exec_argv(
        [
            "openssl", "s_client", "-tls1_3",
            "-connect", f"{server['address']}:{server['port']}",
            "-servername", server["hostname"],
        ]
    )  # fmt: skip
    completed = subprocess.run(
        argv, input="", capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
        completed.stdout,
        re.DOTALL,
    )
    assert match is not None, completed.stderr
    leaf = x509.load_pem_x509_certificate(match.group(0).encode())
    served = hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()
    assert served == server["leaf_sha256"]


def _s_client(lab: Lab, server: dict[str, Any], *options: str) -> bool:
    """Whether openssl s_client completes a handshake with these options."""
    argv = lab.exec_argv(
        [
            "openssl", "s_client", *options,
            "-connect", f"{server['address']}:{server['port']}",
        ]
    )  # fmt: skip
    completed = subprocess.run(
        argv, input="", capture_output=True, text=True, timeout=30, check=False
    )
    return completed.returncode == 0 and "Cipher is (NONE)" not in completed.stdout


S_CLIENT_CASES = [
    ("tls12-only", ("-tls1_2",), True),
    ("tls12-only", ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"), False),
    ("tls12-only", ("-tls1_3",), False),
    ("tls13-only", ("-tls1_3",), True),
    ("tls13-only", ("-tls1_2",), False),
    ("tls10-12", ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"), True),
    ("tls10-12", ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"), True),
    ("tls10-12", ("-tls1_2",), True),
    ("tls10-12", ("-tls1_3",), False),
    ("tls10-no-v2hello", ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"), True),
    ("tls10-no-v2hello", ("-tls1_2",), False),
]


@pytest.mark.parametrize(("name", "options", "succeeds"), S_CLIENT_CASES)
def test_openssl_handshake(
    lab: Lab, name: str, options: tuple[str, ...], succeeds: bool
) -> None:
    assert _s_client(lab, _servers(lab)[name], *options) is succeeds


def test_dns_answers_a_and_ptr(lab: Lab) -> None:
    servers = lab.manifest["servers"]
    names = [server["hostname"] for server in servers]
    addresses = [server["address"] for server in servers]
    result = _run_client(
        lab, ["dns", lab.manifest["resolver"], *names, "--", *addresses]
    )
    for server in servers:
        assert result["a"][server["hostname"]] == [server["address"]]
        assert result["ptr"][server["address"]] == [server["hostname"] + "."]
    assert result["system_nameservers"] == ["198.18.0.2"]
    assert result["system_a"] == [servers[0]["address"]]


def test_closed_port_resets(lab: Lab) -> None:
    server = _servers(lab)["closed"]
    result = _run_client(lab, ["connect", server["address"], str(server["port"]), "2"])
    assert result == {"state": "closed"}


def test_filtered_port_times_out(lab: Lab) -> None:
    server = _servers(lab)["filtered"]
    result = _run_client(lab, ["connect", server["address"], str(server["port"]), "2"])
    assert result == {"state": "filtered"}


def test_http_sends_server_header(lab: Lab) -> None:
    server = _servers(lab)["http"]
    result = _run_client(
        lab, ["http", server["address"], str(server["port"]), server["hostname"]]
    )
    head = result["response"]
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert re.search(r"\r\nServer: nginx/\d+\.\d+\.\d+\r\n", head)


def test_ssl2_server_survives_resets(lab: Lab) -> None:
    """The one-connection-at-a-time SSL 2.0 server serves every reset client."""
    server = _servers(lab)["ssl2-only"]
    hello = sslv2_client_hello(TLS10).hex()
    requests = [[server["address"], server["port"], hello] for _ in range(10)]
    results = _run_client(lab, ["hellos"], json.dumps(requests))
    for result in results:
        flight, complete = parse_flight(bytes.fromhex(result["data"]))
        assert complete
        assert flight.version == SSL2
        leaf_sha256 = hashlib.sha256(flight.certificates[0]).hexdigest()
        assert leaf_sha256 == server["leaf_sha256"]
