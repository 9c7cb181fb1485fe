"""Forward and reverse lookups against a real dnsmasq on loopback."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.asyncresolver
import pytest

from pktscan.errors import InputError
from pktscan.resolve import lookup_name, lookup_names, lookup_ptr, make_resolver

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None, reason="dnsmasq is not installed"
)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    folder: Path = tmp_path_factory.mktemp("dns")
    hosts = folder / "hosts"
    hosts.write_text(
        "198.18.0.10 tls.lab.pktscan.test\n"
        "198.18.0.11 two.lab.pktscan.test\n"
        "198.18.0.12 two.lab.pktscan.test\n"
    )
    port = _free_udp_port()
    process = subprocess.Popen(
        [
            "dnsmasq",
            "--keep-in-foreground",
            "-C",
            "/dev/null",
            "--no-resolv",
            # pytest's temporary folders are 0700: dnsmasq must stay root
            # to read the hosts file there.
            "--user=root",
            # Answer NXDOMAIN, not REFUSED, for unknown names of the lab domain.
            "--local=/lab.pktscan.test/",
            "--no-hosts",
            f"--addn-hosts={hosts}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            f"--port={port}",
            f"--pid-file={folder / 'pid'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                break
            time.sleep(0.05)
        assert process.poll() is None, "dnsmasq exited at start"
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    resolver = _resolver(port)
    try:
        asyncio.run(resolver.resolve("tls.lab.pktscan.test", "A"))
    except Exception:
        return False
    return True


def _resolver(port: int) -> dns.asyncresolver.Resolver:
    resolver = make_resolver(["127.0.0.1"], timeout=1.0)
    resolver.port = port
    return resolver


def test_name_resolves_to_address(dns_server: int) -> None:
    lookup = asyncio.run(lookup_name(_resolver(dns_server), "tls.lab.pktscan.test"))
    assert lookup.addresses == ("198.18.0.10",)
    assert lookup.error is None


def test_name_with_two_addresses(dns_server: int) -> None:
    lookup = asyncio.run(lookup_name(_resolver(dns_server), "two.lab.pktscan.test"))
    assert sorted(lookup.addresses) == ["198.18.0.11", "198.18.0.12"]


def test_unknown_name_reports_nxdomain(dns_server: int) -> None:
    lookup = asyncio.run(lookup_name(_resolver(dns_server), "none.lab.pktscan.test"))
    assert lookup.addresses == ()
    assert lookup.error == "NXDOMAIN"


def test_ptr_of_known_address(dns_server: int) -> None:
    name = asyncio.run(lookup_ptr(_resolver(dns_server), "198.18.0.10"))
    assert name == "tls.lab.pktscan.test"


def test_ptr_of_unknown_address_is_none(dns_server: int) -> None:
    assert asyncio.run(lookup_ptr(_resolver(dns_server), "198.18.0.99")) is None


def test_many_names_keep_order(dns_server: int) -> None:
    names = ["two.lab.pktscan.test", "tls.lab.pktscan.test", "none.lab.pktscan.test"]
    lookups = asyncio.run(lookup_names(_resolver(dns_server), names))
    assert [lookup.name for lookup in lookups] == names
    assert lookups[1].addresses == ("198.18.0.10",)


def test_invalid_resolver_address_is_rejected() -> None:
    with pytest.raises(InputError) as caught:
        make_resolver(["dns.example"])
    assert caught.value.message == "invalid resolver address 'dns.example'"
    assert caught.value.hint == "give --resolver an IPv4 or IPv6 address"
