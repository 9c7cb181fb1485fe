"""Lab names and the address plan; no root needed."""

from __future__ import annotations

import ipaddress

import pytest

from pktscan.errors import InputError, PrivilegeError
from pktscan.lab import Lab
from pktscan.lab.plan import (
    RESOLVER_ADDRESS,
    SCANNER_ADDRESS,
    SERVERS,
    LabNames,
    server_by_name,
)


def test_names_from_default_lab() -> None:
    names = LabNames.from_name("pktscan-lab")
    assert names.scanner_namespace == "pktscan-lab-scan"
    assert names.target_namespace == "pktscan-lab-tgt"
    assert names.scanner_link != names.target_link
    assert names.nft_table.startswith("pktscan_lab_")


@pytest.mark.parametrize("name", ["a", "pktscan-lab", "x" * 64, "ci_run.42"])
def test_link_names_fit_ifnamsiz(name: str) -> None:
    names = LabNames.from_name(name)
    assert len(names.scanner_link) <= 15
    assert len(names.target_link) <= 15


def test_names_differ_between_labs() -> None:
    first = LabNames.from_name("lab-one")
    second = LabNames.from_name("lab-two")
    assert first.scanner_link != second.scanner_link
    assert first.nft_table != second.nft_table


@pytest.mark.parametrize("name", ["", "-lead", "a/b", "a b", "x" * 65, "ünï"])
def test_invalid_lab_name_rejected(name: str) -> None:
    with pytest.raises(InputError) as caught:
        Lab(name)
    assert repr(name) in caught.value.message
    assert caught.value.hint is not None


def test_addresses_unique_in_one_subnet() -> None:
    subnet = ipaddress.ip_network("198.18.0.0/24")
    addresses = [SCANNER_ADDRESS, RESOLVER_ADDRESS, *(s.address for s in SERVERS)]
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        assert ipaddress.ip_address(address) in subnet
    assert ipaddress.ip_network("198.18.0.0/15").supernet_of(subnet)


def test_server_by_name() -> None:
    assert server_by_name("bigchain").address == "198.18.0.18"
    with pytest.raises(InputError) as caught:
        server_by_name("nginx")
    assert "'nginx'" in caught.value.message


def test_exec_argv_prefix() -> None:
    lab = Lab("pktscan-lab")
    argv = lab.exec_argv(["pktscan", "scan", "tls10-12.lab.pktscan.test"])
    assert argv == [
        "ip", "netns", "exec", "pktscan-lab-scan",
        "pktscan", "scan", "tls10-12.lab.pktscan.test",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        lab.exec_argv([])


def test_up_without_root_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(PrivilegeError) as caught:
        Lab("pkt-test-noroot").up()
    assert "root" in caught.value.message
    assert caught.value.hint == "run it with sudo"
