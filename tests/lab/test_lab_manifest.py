"""The session lab's manifest, network layout and status."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pktscan.lab import Lab

pytestmark = pytest.mark.lab

MANIFEST_KEYS = {
    "name", "scanner_namespace", "target_namespace", "scanner_address",
    "resolver", "domain", "state_dir", "targets_file", "ports", "ca_file",
    "servers",
}  # fmt: skip
SERVER_KEYS = {
    "name", "hostname", "address", "port", "software", "expected_state",
    "expected_set", "expected_version", "leaf_sha256", "cert_file",
    "chain_files",
}  # fmt: skip
# name: (address, port, expected_state, expected_set, expected_version)
EXPECTED_SERVERS = {
    "tls10-12": ("198.18.0.10", 443, "open", 1, "TLSv1.0"),
    "tls12-only": ("198.18.0.11", 443, "open", 3, "TLSv1.2"),
    "tls13-only": ("198.18.0.12", 443, "open", None, "TLSv1.3"),
    "ssl3-only": ("198.18.0.13", 443, "open", 1, "SSLv3"),
    "ssl2-only": ("198.18.0.14", 443, "open", 1, "SSLv2"),
    "tls10-no-v2hello": ("198.18.0.15", 443, "open", 2, "TLSv1.0"),
    "ssl3-intolerant": ("198.18.0.16", 443, "open", 4, "SSLv3"),
    "tls10-no-ext": ("198.18.0.17", 443, "open", 1, "TLSv1.0"),
    "bigchain": ("198.18.0.18", 443, "open", 1, "TLSv1.0"),
    "http": ("198.18.0.19", 80, "open", None, None),
    "closed": ("198.18.0.20", 443, "closed", None, None),
    "filtered": ("198.18.0.21", 443, "filtered", None, None),
    "expired": ("198.18.0.41", 443, "open", 1, "TLSv1.0"),
    "not-yet-valid": ("198.18.0.42", 443, "open", 1, "TLSv1.0"),
    "self-signed": ("198.18.0.43", 443, "open", 1, "TLSv1.0"),
    "weak-rsa": ("198.18.0.44", 443, "open", 1, "TLSv1.0"),
    "sha1-signed": ("198.18.0.45", 443, "open", 1, "TLSv1.0"),
    "wrong-name": ("198.18.0.46", 443, "open", 1, "TLSv1.0"),
    "out-of-order": ("198.18.0.47", 443, "open", 1, "TLSv1.0"),
    "incomplete": ("198.18.0.48", 443, "open", 1, "TLSv1.0"),
    "dh1024": ("198.18.0.49", 443, "open", 1, "TLSv1.0"),
    "expiring": ("198.18.0.50", 443, "open", 1, "TLSv1.0"),
}
# Certificates sent by the servers whose chain is not a lone leaf, bigchain
# aside: leaf, two intermediates in the wrong order and the root; leaf and
# the upper intermediate only.
CHAIN_LENGTHS = {"out-of-order": 4, "incomplete": 2}
SOFTWARE_PREFIXES = {
    "tls10-12": "nginx ",
    "ssl3-only": "tlslite-ng ",
    "ssl2-only": "scapy ",
    "tls10-no-v2hello": "pktscan.lab.front ",
    "http": "nginx ",
}


def test_manifest_top_level(lab: Lab) -> None:
    manifest = lab.manifest
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["name"] == lab.name
    assert manifest["scanner_namespace"] == f"{lab.name}-scan"
    assert manifest["target_namespace"] == f"{lab.name}-tgt"
    assert manifest["scanner_address"] == "198.18.0.1"
    assert manifest["resolver"] == "198.18.0.2"
    assert manifest["domain"] == "lab.pktscan.test"
    assert manifest["ports"] == "80,443"
    assert manifest["state_dir"] == str(Path(f"/run/pktscan/lab/{lab.name}"))


def test_manifest_servers(lab: Lab) -> None:
    servers = lab.manifest["servers"]
    assert [server["name"] for server in servers] == list(EXPECTED_SERVERS)
    for server in servers:
        assert set(server) == SERVER_KEYS
        expected = EXPECTED_SERVERS[server["name"]]
        actual = (
            server["address"],
            server["port"],
            server["expected_state"],
            server["expected_set"],
            server["expected_version"],
        )
        assert actual == expected
        assert server["hostname"] == f"{server['name']}.lab.pktscan.test"
        prefix = SOFTWARE_PREFIXES.get(server["name"])
        if prefix is not None:
            assert server["software"].startswith(prefix)


def test_manifest_cert_files(lab: Lab) -> None:
    for server in lab.manifest["servers"]:
        if server["cert_file"] is None:
            assert server["leaf_sha256"] is None
            assert server["chain_files"] == []
            continue
        leaf = x509.load_pem_x509_certificate(Path(server["cert_file"]).read_bytes())
        digest = hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()
        assert digest == server["leaf_sha256"]
        assert server["chain_files"][0] == server["cert_file"]
        if server["name"] == "bigchain":
            assert len(server["chain_files"]) > 2
        else:
            expected = CHAIN_LENGTHS.get(server["name"], 1)
            assert len(server["chain_files"]) == expected, server["name"]
    assert Path(lab.manifest["ca_file"]).exists()


def test_targets_file_lists_hostnames(lab: Lab) -> None:
    lines = Path(lab.manifest["targets_file"]).read_text().splitlines()
    assert lines == [server["hostname"] for server in lab.manifest["servers"]]


def _ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout


def test_namespaces_have_no_default_route(lab: Lab) -> None:
    for namespace in (lab.names.scanner_namespace, lab.names.target_namespace):
        routes = _ip("-n", namespace, "-4", "route", "show", "table", "all")
        assert "default" not in routes
        main_routes = _ip("-n", namespace, "-4", "route").splitlines()
        assert [route.split()[0] for route in main_routes] == ["198.18.0.0/24"]


def test_target_namespace_addresses(lab: Lab) -> None:
    addresses = _ip("-n", lab.names.target_namespace, "-4", "-o", "addr")
    for server in lab.manifest["servers"]:
        assert f"inet {server['address']}/24 " in addresses
    assert "inet 198.18.0.2/24 " in addresses
    assert "inet 127.0.0.1/8 " in addresses


def test_exec_argv_runs_in_scanner_namespace(lab: Lab) -> None:
    argv = lab.exec_argv(["ip", "-4", "-o", "addr"])
    assert argv[:4] == ["ip", "netns", "exec", f"{lab.name}-scan"]
    output = subprocess.run(
        argv, capture_output=True, text=True, timeout=10, check=True
    ).stdout
    assert "inet 198.18.0.1/24 " in output
    assert "inet 127.0.0.1/8 " in output
    assert "198.18.0.10" not in output


def test_status_reports_all_ok(lab: Lab) -> None:
    report = lab.status()
    assert [entry["name"] for entry in report] == list(EXPECTED_SERVERS)
    for entry in report:
        assert entry["port_state"] == entry["expected_state"], entry["name"]
        assert entry["ok"], entry["name"]
    by_name = {entry["name"]: entry for entry in report}
    assert by_name["tls10-no-ext"]["processes"] == {
        "tls10-no-ext.backend": True,
        "tls10-no-ext": True,
    }
    assert by_name["closed"]["processes"] == {}
