"""Configuration files and command lines of the lab's server processes.

Every process runs in the foreground inside the target namespace, with its
configuration, PID file and logs under the lab's state directory instead
of the host's /etc/nginx, /var/log and /run.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pktscan
from pktscan.lab.pki import IssuedCert, dh_params_pem
from pktscan.lab.plan import (
    BACKEND_PORT_BASE,
    DOMAIN,
    RESOLVER_ADDRESS,
    SCANNER_ADDRESS,
    SERVERS,
    Kind,
    ServerSpec,
)

# Without @SECLEVEL=0, an OpenSSL 3.0.19 server fails TLS 1.0 handshakes
# with "no suitable signature algorithm": TLS 1.0 and 1.1 sign with MD5 and
# SHA-1, which security level 1 and up reject.
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"
# Only DHE key exchange, so that the server sends its DH prime.
DHE_CIPHERS = (
    "DHE-RSA-AES128-SHA:DHE-RSA-AES256-SHA:DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0"
)
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Launch:
    """One process to start in the target namespace.

    Attributes:
        name: the server it belongs to; a backend is "NAME.backend".
        argv: its command line.
        software: what serves, as the manifest reports it.
        ready: ADDRESS:PORT that accepts connections once it is up.
        ready_from_scanner: whether `ready` is checked from the scanner
            namespace; backends on loopback are checked from the target.
    """

    name: str
    argv: tuple[str, ...]
    software: str
    ready: str
    ready_from_scanner: bool = True


@dataclass(frozen=True, slots=True)
class StateLayout:
    """Paths inside a lab's state directory."""

    root: Path

    @property
    def certs(self) -> Path:
        """Every certificate, key and chain file."""
        return self.root / "certs"

    @property
    def logs(self) -> Path:
        """Standard output, error and access logs of every process."""
        return self.root / "logs"

    @property
    def conf(self) -> Path:
        """Generated configuration files and server prefixes."""
        return self.root / "conf"

    @property
    def run(self) -> Path:
        """PID files that servers write themselves."""
        return self.root / "run"

    def make(self) -> None:
        """Create the directories."""
        for directory in (self.certs, self.logs, self.conf, self.run):
            directory.mkdir(parents=True, exist_ok=True)

    def log_file(self, name: str) -> Path:
        """Log file of the process called `name`."""
        return self.logs / f"{name}.log"


@functools.cache
def _command_version(argv: tuple[str, ...], prefix: str) -> str:
    """Return the first output line of a version command, after `prefix`."""
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown version"
    line = (completed.stdout + completed.stderr).strip().splitlines()
    text = line[0] if line else ""
    return text.split(prefix, 1)[-1].strip() or "unknown version"


def nginx_software() -> str:
    """Return the nginx and OpenSSL versions, e.g. "nginx 1.22.1 (OpenSSL 3.0.19)"."""
    nginx = _command_version(("nginx", "-v"), "nginx/")
    openssl = _command_version(("openssl", "version"), "OpenSSL").split()[0]
    return f"nginx {nginx} (OpenSSL {openssl})"


def dnsmasq_software() -> str:
    """Return the dnsmasq version, e.g. "dnsmasq 2.90"."""
    return "dnsmasq " + _command_version(("dnsmasq", "--version"), "version").split()[0]


def _python_module(module: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", module, *args)


def python_env() -> dict[str, str]:
    """Return the environment for lab helpers in Python, with pktscan on the path."""
    env = dict(os.environ)
    package_root = str(Path(pktscan.__file__).resolve().parent.parent)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root if not existing else f"{package_root}:{existing}"
    return env


def write_hosts_file(layout: StateLayout) -> Path:
    """Write the hosts file dnsmasq serves: A and PTR for every lab name."""
    lines = [
        f"{SCANNER_ADDRESS} scanner.{DOMAIN}",
        f"{RESOLVER_ADDRESS} ns.{DOMAIN}",
    ]
    lines += [f"{spec.address} {spec.hostname}" for spec in SERVERS]
    path = layout.conf / "hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def dnsmasq_launch(layout: StateLayout) -> Launch:
    """Launch dnsmasq serving only the records of the lab's hosts file."""
    hosts = write_hosts_file(layout)
    argv = (
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        # Authoritative for the lab domain: unknown names get NXDOMAIN, not
        # the REFUSED that a resolver with no upstream gives.
        f"--local=/{DOMAIN}/",
        f"--addn-hosts={hosts}",
        f"--listen-address={RESOLVER_ADDRESS}",
        "--bind-interfaces",
        f"--pid-file={layout.run / 'dnsmasq.pid'}",
        f"--log-facility={layout.log_file('dnsmasq.queries')}",
        "--log-queries",
    )
    return Launch("dnsmasq", argv, dnsmasq_software(), f"{RESOLVER_ADDRESS}:53")


def _nginx_conf(layout: StateLayout, name: str, server_block: str) -> tuple[Path, Path]:
    prefix = layout.conf / f"nginx-{name}"
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    temp = prefix / "temp"
    conf = f"""daemon off;
master_process on;
worker_processes 1;
pid {layout.run / f"{name}.nginx.pid"};
error_log {layout.log_file(name)} notice;
events {{
    worker_connections 1024;
}}
http {{
    access_log {layout.logs / f"{name}.access.log"};
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    default_type text/plain;
    server_tokens on;
{server_block}}}
"""
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return prefix, path


def _nginx_argv(
    layout: StateLayout, name: str, prefix: Path, conf: Path
) -> tuple[str, ...]:
    return (
        "nginx",
        "-p",
        f"{prefix}/",
        "-c",
        str(conf),
        "-e",
        str(layout.log_file(name)),
    )


def nginx_tls_launch(
    layout: StateLayout,
    name: str,
    hostname: str,
    listen: str,
    protocols: str,
    cert: IssuedCert,
    *,
    backend: bool = False,
    dhparam: Path | None = None,
) -> Launch:
    """Launch nginx serving TLS with `protocols` on `listen` (ADDRESS:PORT).

    With `dhparam`, a PKCS #3 PEM file, nginx offers only DHE suites with
    that group.
    """
    ciphers = LEGACY_CIPHERS
    dh_line = ""
    if dhparam is not None:
        ciphers = DHE_CIPHERS
        dh_line = f"\n        ssl_dhparam {dhparam};"
    block = f"""    server {{
        listen {listen} ssl;
        server_name {hostname};
        ssl_certificate {cert.bundle_file};
        ssl_certificate_key {cert.key_file};
        ssl_protocols {protocols};
        ssl_ciphers {ciphers};{dh_line}
        ssl_session_cache off;
        location / {{
            return 200 "{name}\\n";
        }}
    }}
"""
    prefix, conf = _nginx_conf(layout, name, block)
    argv = _nginx_argv(layout, name, prefix, conf)
    return Launch(name, argv, nginx_software(), listen, not backend)


def nginx_http_launch(layout: StateLayout, spec: ServerSpec) -> Launch:
    """Launch nginx serving plain HTTP with a versioned Server header."""
    listen = f"{spec.address}:{spec.port}"
    block = f"""    server {{
        listen {listen};
        server_name {spec.hostname};
        location / {{
            return 200 "{spec.name}\\n";
        }}
    }}
"""
    prefix, conf = _nginx_conf(layout, spec.name, block)
    argv = _nginx_argv(layout, spec.name, prefix, conf)
    return Launch(spec.name, argv, nginx_software(), listen)


def ssl3_launch(
    name: str,
    listen_address: str,
    port: int,
    cert: IssuedCert,
    *,
    backend: bool = False,
) -> Launch:
    """Launch the tlslite-ng server limited to SSL 3.0."""
    argv = _python_module(
        "pktscan.lab.ssl3_server",
        "--address", listen_address,
        "--port", str(port),
        "--cert", str(cert.leaf_file),
        "--key", str(cert.key_file),
    )  # fmt: skip
    software = "tlslite-ng " + _tlslite_version()
    return Launch(name, argv, software, f"{listen_address}:{port}", not backend)


def _tlslite_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlslite-ng")
    except PackageNotFoundError:
        return "unknown version"


def ssl2_launch(name: str, listen_address: str, port: int, cert: IssuedCert) -> Launch:
    """Launch scapy's TLS server automaton, which replies to SSLv2 hellos."""
    import scapy

    argv = _python_module(
        "pktscan.lab.ssl2_server",
        "--address", listen_address,
        "--port", str(port),
        "--cert", str(cert.leaf_file),
        "--key", str(cert.key_file),
    )  # fmt: skip
    software = f"scapy {scapy.VERSION} TLSServerAutomaton"
    return Launch(name, argv, software, f"{listen_address}:{port}")


def front_launch(spec: ServerSpec, backend_software: str) -> Launch:
    """Launch the asyncio front that resets rejected hellos and relays others."""
    listen = f"{spec.address}:{spec.port}"
    argv = _python_module(
        "pktscan.lab.front",
        "--listen",
        listen,
        "--backend",
        f"{LOOPBACK}:{backend_port(spec)}",
        *(f"--reject={feature}" for feature in spec.front_rejects),
    )
    rejects = ", ".join(spec.front_rejects)
    software = f"pktscan.lab.front (resets {rejects}) before {backend_software}"
    return Launch(spec.name, argv, software, listen)


def backend_port(spec: ServerSpec) -> int:
    """Loopback port of the backend behind the front `spec`."""
    return BACKEND_PORT_BASE + spec.host


def launches_for(
    layout: StateLayout, spec: ServerSpec, cert: IssuedCert | None
) -> list[Launch]:
    """Return the launches of every process `spec` needs, backends first."""
    listen = f"{spec.address}:{spec.port}"
    if spec.kind is Kind.NGINX_HTTP:
        return [nginx_http_launch(layout, spec)]
    if spec.kind in (Kind.CLOSED, Kind.FILTERED):
        return []
    assert cert is not None
    if spec.kind is Kind.NGINX_TLS:
        assert spec.protocols is not None
        dhparam = None
        if spec.weak_dh:
            dhparam = layout.conf / f"{spec.name}.dhparam.pem"
            dhparam.write_bytes(dh_params_pem())
        return [
            nginx_tls_launch(
                layout, spec.name, spec.hostname, listen, spec.protocols, cert,
                dhparam=dhparam,
            )
        ]  # fmt: skip
    if spec.kind is Kind.TLSLITE_SSL3:
        return [ssl3_launch(spec.name, spec.address, spec.port, cert)]
    if spec.kind is Kind.SCAPY_SSL2:
        return [ssl2_launch(spec.name, spec.address, spec.port, cert)]
    return _front_launches(layout, spec, cert)


def _front_launches(
    layout: StateLayout, spec: ServerSpec, cert: IssuedCert
) -> list[Launch]:
    backend_name = f"{spec.name}.backend"
    port = backend_port(spec)
    if spec.backend is Kind.TLSLITE_SSL3:
        backend = ssl3_launch(backend_name, LOOPBACK, port, cert, backend=True)
    else:
        assert spec.backend_protocols is not None
        backend = nginx_tls_launch(
            layout, backend_name, spec.hostname, f"{LOOPBACK}:{port}",
            spec.backend_protocols, cert, backend=True,
        )  # fmt: skip
    return [backend, front_launch(spec, backend.software)]
