"""The lab's fixed plan: names derived from the lab name, addresses, servers.

Every lab uses the same addresses, 198.18.0.0/24 out of the benchmark range
198.18.0.0/15 (RFC 2544). Two labs never see each other's packets because
each one lives in its own pair of network namespaces.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pktscan.errors import InputError
from pktscan.lab.pki import CertProfile

DEFAULT_NAME = "pktscan-lab"
STATE_ROOT = Path("/run/pktscan/lab")
NETNS_CONFIG_ROOT = Path("/etc/netns")

SUBNET_PREFIX = "198.18.0."
PREFIX_LEN = 24
SCANNER_ADDRESS = "198.18.0.1"
RESOLVER_ADDRESS = "198.18.0.2"
DOMAIN = "lab.pktscan.test"
PORTS = "80,443"

# Linux limits interface names to IFNAMSIZ - 1 = 15 bytes.
_IFNAME_MAX = 15
# Long enough for any sane name, short enough that "NAME-scan" stays a
# valid file name under /run/netns and /etc/netns.
_NAME_MAX = 64
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class Kind(StrEnum):
    """Build recipe of a server; each kind has its own launcher."""

    NGINX_TLS = "nginx-tls"
    NGINX_HTTP = "nginx-http"
    TLSLITE_SSL3 = "tlslite-ssl3"
    SCAPY_SSL2 = "scapy-ssl2"
    FRONT = "front"
    CLOSED = "closed"
    FILTERED = "filtered"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server of the lab and what a correct scan finds on it.

    Attributes:
        name: short name, also the first label of its DNS name.
        host: last octet of its address in 198.18.0.0/24.
        port: TCP port it listens on.
        kind: how it is built.
        expected_state: "open", "closed" or "filtered".
        expected_set: protocol set (1-4) whose hello first brings the
            certificate, or None when none of the four does.
        expected_version: protocol version the server negotiates with that
            set (for tls13-only, the version it negotiates at all).
        protocols: nginx `ssl_protocols` value, for nginx-served TLS.
        front_rejects: hello features a front resets on, for kind FRONT.
        backend: kind of the loopback backend behind a front.
        backend_protocols: nginx `ssl_protocols` of that backend.
        cert_profile: defect of the server's certificate, for the servers
            that trigger findings.
        weak_dh: serve only DHE suites with a 1024-bit prime.
        expected_findings: finding kinds (`pktscan.certs.FindingKind`
            values) that a scan of the server by its address must report.
    """

    name: str
    host: int
    port: int
    kind: Kind
    expected_state: str
    expected_set: int | None
    expected_version: str | None
    protocols: str | None = None
    front_rejects: tuple[str, ...] = ()
    backend: Kind | None = None
    backend_protocols: str | None = None
    cert_profile: CertProfile | None = None
    weak_dh: bool = False
    expected_findings: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """IPv4 address of the server inside the target namespace."""
        return f"{SUBNET_PREFIX}{self.host}"

    @property
    def hostname(self) -> str:
        """DNS name that the lab resolver maps to the address."""
        return f"{self.name}.{DOMAIN}"

    @property
    def serves_tls(self) -> bool:
        """Whether the server presents a certificate."""
        return self.kind not in (Kind.NGINX_HTTP, Kind.CLOSED, Kind.FILTERED)


_FINDING_PROTOCOLS = "TLSv1 TLSv1.1 TLSv1.2"


def _finding_server(
    name: str,
    host: int,
    findings: tuple[str, ...],
    profile: CertProfile | None = None,
    *,
    weak_dh: bool = False,
) -> ServerSpec:
    return ServerSpec(
        name, host, 443, Kind.NGINX_TLS, "open", 1, "TLSv1.0",
        protocols=_FINDING_PROTOCOLS,
        cert_profile=profile,
        weak_dh=weak_dh,
        expected_findings=findings,
    )  # fmt: skip


# Servers whose certificate or handshake triggers one finding kind each,
# from 198.18.0.41 up.
FINDING_SERVERS: tuple[ServerSpec, ...] = (
    _finding_server("expired", 41, ("expired",), CertProfile.EXPIRED),
    _finding_server("not-yet-valid", 42, ("not_yet_valid",), CertProfile.NOT_YET_VALID),
    _finding_server("self-signed", 43, ("self_signed",), CertProfile.SELF_SIGNED),
    _finding_server("weak-rsa", 44, ("weak_rsa_key",), CertProfile.WEAK_RSA),
    _finding_server("sha1-signed", 45, ("weak_signature",), CertProfile.SHA1),
    _finding_server("wrong-name", 46, ("name_mismatch",), CertProfile.WRONG_NAME),
    _finding_server(
        "out-of-order", 47, ("chain_out_of_order",), CertProfile.OUT_OF_ORDER
    ),
    _finding_server("incomplete", 48, ("chain_incomplete",), CertProfile.INCOMPLETE),
    _finding_server("dh1024", 49, ("weak_dh",), weak_dh=True),
    _finding_server("expiring", 50, ("expiring",), CertProfile.EXPIRING),
)  # fmt: skip

SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "tls10-12", 10, 443, Kind.NGINX_TLS, "open", 1, "TLSv1.0",
        protocols="TLSv1 TLSv1.1 TLSv1.2",
    ),
    ServerSpec(
        "tls12-only", 11, 443, Kind.NGINX_TLS, "open", 3, "TLSv1.2",
        protocols="TLSv1.2",
    ),
    ServerSpec(
        "tls13-only", 12, 443, Kind.NGINX_TLS, "open", None, "TLSv1.3",
        protocols="TLSv1.3",
    ),
    ServerSpec("ssl3-only", 13, 443, Kind.TLSLITE_SSL3, "open", 1, "SSLv3"),
    ServerSpec("ssl2-only", 14, 443, Kind.SCAPY_SSL2, "open", 1, "SSLv2"),
    ServerSpec(
        "tls10-no-v2hello", 15, 443, Kind.FRONT, "open", 2, "TLSv1.0",
        front_rejects=("v2hello",),
        backend=Kind.NGINX_TLS,
        backend_protocols="TLSv1",
    ),
    ServerSpec(
        "ssl3-intolerant", 16, 443, Kind.FRONT, "open", 4, "SSLv3",
        front_rejects=("v2hello", "above-ssl3"),
        backend=Kind.TLSLITE_SSL3,
    ),
    ServerSpec(
        "tls10-no-ext", 17, 443, Kind.FRONT, "open", 1, "TLSv1.0",
        front_rejects=("extensions",),
        backend=Kind.NGINX_TLS,
        backend_protocols="TLSv1",
    ),
    ServerSpec(
        "bigchain", 18, 443, Kind.NGINX_TLS, "open", 1, "TLSv1.0",
        protocols="TLSv1 TLSv1.1 TLSv1.2",
    ),
    ServerSpec("http", 19, 80, Kind.NGINX_HTTP, "open", None, None),
    ServerSpec("closed", 20, 443, Kind.CLOSED, "closed", None, None),
    ServerSpec("filtered", 21, 443, Kind.FILTERED, "filtered", None, None),
)  # fmt: skip
SERVERS = (*SERVERS, *FINDING_SERVERS)

# Backends of the fronts listen on loopback inside the target namespace,
# on this port plus the front's host octet.
BACKEND_PORT_BASE = 8000


def server_by_name(name: str) -> ServerSpec:
    """Return the server spec called `name`.

    Raises:
        InputError: no lab server has that name.
    """
    for spec in SERVERS:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in SERVERS)
    raise InputError(f"unknown lab server {name!r}", hint=f"use one of: {known}")


@dataclass(frozen=True, slots=True)
class LabNames:
    """Kernel object names of one lab, all derived from the lab name.

    Attributes:
        name: the lab name.
        scanner_namespace: network namespace of the scanner.
        target_namespace: network namespace of the servers.
        scanner_link: veth end inside the scanner namespace.
        target_link: veth end inside the target namespace.
        nft_table: nftables table (family inet) in the target namespace.
    """

    name: str
    scanner_namespace: str
    target_namespace: str
    scanner_link: str
    target_link: str
    nft_table: str

    @classmethod
    def from_name(cls, name: str) -> LabNames:
        """Derive every kernel name from a lab name.

        Veth names take 8 hex digits of the SHA-256 of the name, since the
        name itself may be longer than an interface name allows.

        Raises:
            InputError: the name is empty, too long or has characters other
                than letters, digits, '_', '.' and '-'.
        """
        if len(name) > _NAME_MAX or not _NAME_PATTERN.fullmatch(name):
            raise InputError(
                f"invalid lab name {name!r}",
                hint=(
                    f"use 1 to {_NAME_MAX} letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit"
                ),
            )
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        scanner_link = f"pkl{digest}s"
        target_link = f"pkl{digest}t"
        assert len(scanner_link) <= _IFNAME_MAX
        return cls(
            name=name,
            scanner_namespace=f"{name}-scan",
            target_namespace=f"{name}-tgt",
            scanner_link=scanner_link,
            target_link=target_link,
            nft_table=f"pktscan_lab_{digest}",
        )
