"""The Lab object: bring a lab up, describe it, take it down.

A lab is two network namespaces, NAME-scan and NAME-tgt, joined by a veth
pair, with real servers in the target namespace. Its state directory
contains the manifest (lab.json), certificates, configurations, logs and
the PIDs of every process the lab started.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pktscan.errors import LabError, PrivilegeError
from pktscan.lab import netns
from pktscan.lab.pki import IssuedCert, LabPKI
from pktscan.lab.plan import (
    DEFAULT_NAME,
    DOMAIN,
    PORTS,
    RESOLVER_ADDRESS,
    SCANNER_ADDRESS,
    SERVERS,
    STATE_ROOT,
    Kind,
    LabNames,
    ServerSpec,
    server_by_name,
)
from pktscan.lab.procs import ProcessTable, is_alive, stop_pids
from pktscan.lab.servers import (
    Launch,
    StateLayout,
    dnsmasq_launch,
    launches_for,
    python_env,
)

logger = logging.getLogger(__name__)

MANIFEST_FILE = "lab.json"
TARGETS_FILE = "targets.txt"
PROCESS_TABLE_FILE = "pids.json"
# Present in every state directory a lab created; `down` deletes only
# directories that contain it.
MARKER_FILE = ".pktscan-lab"
READY_TIMEOUT_S = 20.0
STATUS_CONNECT_TIMEOUT_S = 1.0
_LOG_TAIL_LINES = 5
_PROBE_POLL_S = 0.1


def require_root() -> None:
    """Raise PrivilegeError unless the process runs as root."""
    if os.geteuid() != 0:
        raise PrivilegeError(
            "the lab needs root to create network namespaces",
            hint="run it with sudo",
        )


class Lab:
    """A lab of one name, up or not.

    Use `up()` and `down()`, or a `with` block that does both. `Lab.load()`
    opens a lab that another process brought up.
    """

    def __init__(
        self, name: str = DEFAULT_NAME, state_dir: str | Path | None = None
    ) -> None:
        self.names = LabNames.from_name(name)
        self.name = name
        self.state_dir = Path(state_dir) if state_dir is not None else STATE_ROOT / name
        self.layout = StateLayout(self.state_dir)
        self._manifest: dict[str, Any] | None = None
        self._processes: ProcessTable | None = None

    @classmethod
    def load(cls, name: str = DEFAULT_NAME, state_dir: str | Path | None = None) -> Lab:
        """Open a running lab by reading its manifest.

        Raises:
            LabError: no manifest exists, so the lab is not up.
        """
        lab = cls(name, state_dir)
        _ = lab.manifest
        return lab

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()

    @property
    def manifest_path(self) -> Path:
        """Path of lab.json."""
        return self.state_dir / MANIFEST_FILE

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed lab.json.

        Raises:
            LabError: the lab is not up, or its manifest cannot be read.
        """
        if self._manifest is None:
            try:
                text = self.manifest_path.read_text()
            except FileNotFoundError as error:
                raise LabError(
                    f"lab {self.name!r} is not up: {self.manifest_path} not found",
                    hint=f"pktscan lab up --name {self.name}",
                ) from error
            try:
                self._manifest = json.loads(text)
            except ValueError as error:
                raise LabError(
                    f"invalid lab manifest {self.manifest_path}: {error}",
                    hint=f"pktscan lab down --name {self.name}, then up again",
                ) from error
        return self._manifest

    def server(self, name: str) -> dict[str, Any]:
        """Return the manifest entry of the server called `name`.

        Raises:
            LabError: the manifest has no such server.
        """
        for entry in self.manifest["servers"]:
            if entry["name"] == name:
                return dict(entry)
        raise LabError(f"lab {self.name!r} has no server named {name!r}")

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """Return `argv` prefixed to run inside the scanner namespace."""
        if not argv:
            raise ValueError("exec_argv needs a command")
        return netns.in_namespace(self.names.scanner_namespace, argv)

    def _down_hint(self) -> str:
        hint = f"pktscan lab down --name {self.name}"
        if self.state_dir != STATE_ROOT / self.name:
            hint += f" --state-dir {self.state_dir}"
        return hint

    def up(self) -> dict[str, Any]:
        """Create the namespaces, start every server, wait until all accept connections.

        Removes everything it created when any step fails or is interrupted.

        Returns:
            The manifest, as also written to lab.json.

        Raises:
            PrivilegeError: not running as root.
            LabError: a lab of this name exists, a setup command failed, or
                a server did not accept connections in time.
        """
        require_root()
        self._reject_existing()
        started = time.monotonic()
        try:
            self._build()
        except BaseException:
            errors = self._teardown()
            for error in errors:
                logger.error(
                    "lab %s: cleanup after a failed start: %s", self.name, error
                )
            raise
        logger.info("lab %s is up in %.1f s", self.name, time.monotonic() - started)
        return self.manifest

    def down(self) -> None:
        """Stop the lab's processes and delete everything it created.

        Works on a lab that is partly up or already gone, and after a crash
        of the process that brought it up.

        Raises:
            PrivilegeError: not running as root.
            LabError: something could not be removed; the message lists it.
        """
        require_root()
        errors = self._teardown()
        if errors:
            raise LabError(
                f"lab {self.name!r} was not fully removed: " + "; ".join(errors),
                hint=f"fix the cause, then run {self._down_hint()} again",
            )

    def status(self) -> list[dict[str, Any]]:
        """Check that each server's processes run and its port accepts connections.

        Returns one dict per server with its name, address, port, software,
        expected_state, processes (name to running or not), port_state as
        probed from the scanner namespace ("open", "closed", "filtered" or
        "error: ...") and ok (processes run and port_state is as expected).

        Raises:
            LabError: the lab is not up.
        """
        require_root()
        servers = self.manifest["servers"]
        table = ProcessTable.load(self.state_dir / PROCESS_TABLE_FILE)
        targets = [f"{entry['address']}:{entry['port']}" for entry in servers]
        probe = self._probe(
            self.names.scanner_namespace,
            targets,
            timeout=STATUS_CONNECT_TIMEOUT_S,
            wait=0.0,
        )
        states = self._collect(
            probe, limit=len(targets) * STATUS_CONNECT_TIMEOUT_S + 10
        )
        assert states is not None
        report = []
        for entry, target in zip(servers, targets, strict=True):
            processes = {
                name: is_alive(record)
                for name, record in table.records.items()
                if name == entry["name"] or name.startswith(entry["name"] + ".")
            }
            port_state = states.get(target, "not probed")
            report.append(
                {
                    "name": entry["name"],
                    "address": entry["address"],
                    "port": entry["port"],
                    "software": entry["software"],
                    "expected_state": entry["expected_state"],
                    "processes": processes,
                    "port_state": port_state,
                    "ok": all(processes.values())
                    and port_state == entry["expected_state"],
                }
            )
        return report

    def stop_server(self, name: str) -> None:
        """Stop the processes of one server, so that its port is closed.

        The manifest keeps the server; `status` then reports it as not ok.

        Raises:
            InputError: no lab server has that name.
            LabError: the lab is not up, or a process did not stop.
        """
        require_root()
        spec = server_by_name(name)
        _ = self.manifest
        table = self._process_table()
        names = [
            record
            for record in table.records
            if record == spec.name or record.startswith(spec.name + ".")
        ]
        stuck = table.stop(names)
        if stuck:
            raise LabError(
                f"lab {self.name!r}: {', '.join(stuck)} did not stop",
                hint=self._down_hint(),
            )

    def replace_certificate(self, name: str) -> str:
        """Restart one TLS server with a new certificate from the lab's root CA.

        The new certificate has the same profile as the old one (subject,
        issuer, defect) with a new serial number and validity, and for most
        servers a new key. The manifest entry is rewritten.

        Returns:
            The SHA-256 of the new leaf, in hex.

        Raises:
            InputError: no lab server has that name.
            LabError: the lab is not up, the server serves no certificate, or
                the restarted server does not accept connections in time.
        """
        require_root()
        spec = server_by_name(name)
        if not spec.serves_tls:
            raise LabError(
                f"lab server {name!r} serves no certificate",
                hint="name a TLS server of the lab",
            )
        manifest = self.manifest
        self.stop_server(name)
        cert = _issue(LabPKI.load(self.layout.certs), spec)
        launches = launches_for(self.layout, spec, cert)
        table = self._process_table()
        env = python_env()
        for launch in launches:
            table.start(
                launch.name,
                self.names.target_namespace,
                launch.argv,
                self.layout.log_file(launch.name),
                env,
            )
        self._wait_ready(launches)
        entry = _server_entry(spec, cert, launches, self.names)
        servers = [
            entry if server["name"] == name else server
            for server in manifest["servers"]
        ]
        self._save_manifest({**manifest, "servers": servers})
        logger.info("lab %s: %s serves leaf %s", self.name, name, cert.leaf_sha256)
        return cert.leaf_sha256

    def _process_table(self) -> ProcessTable:
        if self._processes is None:
            self._processes = ProcessTable.load(self.state_dir / PROCESS_TABLE_FILE)
        return self._processes

    def _reject_existing(self) -> None:
        found = [
            f"namespace {namespace}"
            for namespace in (self.names.scanner_namespace, self.names.target_namespace)
            if netns.namespace_exists(namespace)
        ]
        if self.state_dir.exists() and any(self.state_dir.iterdir()):
            found.append(f"state directory {self.state_dir}")
        if found:
            raise LabError(
                f"lab {self.name!r} already exists: " + ", ".join(found),
                hint=self._down_hint(),
            )

    def _build(self) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        (self.state_dir / MARKER_FILE).write_text(f"{self.name}\n")
        self.layout.make()
        self._processes = ProcessTable(self.state_dir / PROCESS_TABLE_FILE)

        netns.create_network(self.names, [spec.address for spec in SERVERS])
        for spec in SERVERS:
            if spec.kind is Kind.FILTERED:
                netns.add_drop_rule(self.names, spec.address, spec.port)
        netns.write_resolv_conf(self.names)

        certs = self._issue_certs()
        launches: dict[str, list[Launch]] = {"dnsmasq": [dnsmasq_launch(self.layout)]}
        for spec in SERVERS:
            launches[spec.name] = launches_for(self.layout, spec, certs.get(spec.name))
        env = python_env()
        for group in launches.values():
            for launch in group:
                self._processes.start(
                    launch.name,
                    self.names.target_namespace,
                    launch.argv,
                    self.layout.log_file(launch.name),
                    env,
                )
        self._wait_ready([launch for group in launches.values() for launch in group])
        self._write_manifest(certs, launches)

    def _issue_certs(self) -> dict[str, IssuedCert]:
        pki = LabPKI(self.layout.certs)
        return {spec.name: _issue(pki, spec) for spec in SERVERS if spec.serves_tls}

    def _probe(
        self, namespace: str, targets: Sequence[str], *, timeout: float, wait: float
    ) -> subprocess.Popen[str]:
        argv = [
            sys.executable,
            "-m",
            "pktscan.lab.probe",
            f"--timeout={timeout}",
            f"--wait={wait}",
            *targets,
        ]
        return subprocess.Popen(
            netns.in_namespace(namespace, argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(),
        )

    def _collect(
        self,
        probe: subprocess.Popen[str],
        limit: float,
        watched: Sequence[str] = (),
    ) -> dict[str, str] | None:
        """Return the probe's result, or None when a watched process exits.

        Stopping at the first exited server spares the wait for a port that
        will never open.
        """
        deadline = time.monotonic() + limit
        while True:
            try:
                stdout, stderr = probe.communicate(timeout=_PROBE_POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            exited = self._processes is not None and any(
                self._processes.exited(name) is not None for name in watched
            )
            if exited or time.monotonic() >= deadline:
                probe.kill()
                probe.communicate()
                if exited:
                    return None
                raise LabError(f"port probe did not finish within {limit:.0f} s")
        if probe.returncode != 0:
            raise LabError(f"port probe failed: {stderr.strip()}")
        result: dict[str, str] = json.loads(stdout)
        return result

    def _wait_ready(self, launches: list[Launch]) -> None:
        """Wait until every server accepts connections and closed ports reset."""
        scanner_targets = [
            launch.ready for launch in launches if launch.ready_from_scanner
        ]
        closed = [
            f"{spec.address}:{spec.port}"
            for spec in SERVERS
            if spec.kind is Kind.CLOSED
        ]
        backend_targets = [
            launch.ready for launch in launches if not launch.ready_from_scanner
        ]
        limit = READY_TIMEOUT_S + 10.0
        probes = [
            self._probe(
                self.names.scanner_namespace,
                [*scanner_targets, *(f"{target}=closed" for target in closed)],
                timeout=0.5,
                wait=READY_TIMEOUT_S,
            )
        ]
        if backend_targets:
            probes.append(
                self._probe(
                    self.names.target_namespace,
                    backend_targets,
                    timeout=0.5,
                    wait=READY_TIMEOUT_S,
                )
            )
        states: dict[str, str] = {}
        server_exited = False
        try:
            for probe in probes:
                watched = [launch.name for launch in launches]
                result = self._collect(probe, limit, watched)
                if result is None:
                    server_exited = True
                    break
                states.update(result)
        finally:
            for probe in probes:
                if probe.poll() is None:
                    probe.kill()
                    probe.communicate()

        assert self._processes is not None
        if server_exited:
            not_ready = [
                launch
                for launch in launches
                if self._processes.exited(launch.name) is not None
            ]
        else:
            not_ready = [
                launch for launch in launches if states.get(launch.ready) != "open"
            ]
        # The state directory goes away with the failed lab, so the logs
        # move to a directory of their own that the message names.
        log_dir = self._preserve_logs() if not_ready else self.layout.logs
        failures = [
            self._not_ready_message(
                launch, states.get(launch.ready, "not probed"), log_dir
            )
            for launch in not_ready
        ]
        failures += [
            f"closed port {target} answered {states.get(target)!r}, expected a reset"
            for target in closed
            if states.get(target) != "closed"
        ]
        if failures:
            raise LabError(
                f"lab {self.name!r} did not come up: " + "; ".join(failures),
                hint="read the named log files",
            )

    def _preserve_logs(self) -> Path:
        """Copy the logs out of the state directory and return the copy."""
        copy = Path(tempfile.mkdtemp(prefix=f"pktscan-lab-{self.name}-logs-"))
        shutil.copytree(self.layout.logs, copy, dirs_exist_ok=True)
        return copy

    def _not_ready_message(self, launch: Launch, state: str, log_dir: Path) -> str:
        assert self._processes is not None
        exit_code = self._processes.exited(launch.name)
        log_file = log_dir / self.layout.log_file(launch.name).name
        status = "still running" if exit_code is None else f"exited with {exit_code}"
        message = (
            f"{launch.name} ({launch.ready}) is not ready: port {state}, "
            f"process {status}, log {log_file}"
        )
        tail = _tail(log_file, _LOG_TAIL_LINES)
        if tail:
            message += f" ending: {tail}"
        return message

    def _write_manifest(
        self, certs: dict[str, IssuedCert], launches: dict[str, list[Launch]]
    ) -> None:
        servers = [
            _server_entry(spec, certs.get(spec.name), launches[spec.name], self.names)
            for spec in SERVERS
        ]
        targets_path = self.state_dir / TARGETS_FILE
        targets_path.write_text("".join(f"{spec.hostname}\n" for spec in SERVERS))
        manifest = {
            "name": self.name,
            "scanner_namespace": self.names.scanner_namespace,
            "target_namespace": self.names.target_namespace,
            "scanner_address": SCANNER_ADDRESS,
            "resolver": RESOLVER_ADDRESS,
            "domain": DOMAIN,
            "state_dir": str(self.state_dir.resolve()),
            "targets_file": str(targets_path.resolve()),
            "ports": PORTS,
            "ca_file": str((self.layout.certs / "root-ca.pem").resolve()),
            "servers": servers,
        }
        self._save_manifest(manifest)

    def _save_manifest(self, manifest: dict[str, Any]) -> None:
        temporary = self.manifest_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")
        temporary.replace(self.manifest_path)
        self._manifest = manifest

    def _teardown(self) -> list[str]:
        """Stop processes, delete kernel objects and the state directory."""
        errors: list[str] = []
        processes = self._processes
        if processes is None:
            try:
                processes = ProcessTable.load(self.state_dir / PROCESS_TABLE_FILE)
            except LabError as error:
                errors.append(error.message)
                processes = ProcessTable(self.state_dir / PROCESS_TABLE_FILE)
        stuck = processes.stop_all()
        errors += [f"process {name} did not stop" for name in stuck]

        # A server started just before the starting process was killed can
        # miss the record. Only the lab starts processes in its target
        # namespace, so whatever still runs there is one of its servers.
        # NOTE: one killed before `ip netns exec` entered the namespace is
        # in neither place and keeps running.
        unrecorded = netns.namespace_pids(self.names.target_namespace)
        if unrecorded:
            logger.warning(
                "lab %s: stopping unrecorded PIDs %s in %s",
                self.name,
                unrecorded,
                self.names.target_namespace,
            )
            survivors = stop_pids(unrecorded)
            errors += [f"PID {pid} did not stop" for pid in survivors]
        # The scanner namespace also runs what users start with `lab exec`,
        # which the lab leaves alone.
        foreign = netns.namespace_pids(self.names.scanner_namespace)
        if foreign:
            listed = " ".join(str(pid) for pid in foreign)
            errors.append(
                f"processes still run in {self.names.scanner_namespace} "
                f"(PIDs {listed}); end them with kill"
            )
        errors += netns.destroy_network(self.names)
        errors += self._remove_state_dir()
        self._processes = None
        self._manifest = None
        return errors

    def _remove_state_dir(self) -> list[str]:
        if not self.state_dir.exists():
            return []
        if not (self.state_dir / MARKER_FILE).exists() and any(
            self.state_dir.iterdir()
        ):
            return [
                f"{self.state_dir} has no {MARKER_FILE} file, so it was not "
                "created by a lab and was left in place"
            ]
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self.state_dir.exists():
            return [f"could not remove {self.state_dir}"]
        # /run/pktscan/lab and /run/pktscan go too once no lab uses them;
        # rmdir fails on a directory that another lab still has files in.
        if self.state_dir.parent == STATE_ROOT:
            for directory in (STATE_ROOT, STATE_ROOT.parent):
                try:
                    directory.rmdir()
                except OSError:
                    break
        return []


def _issue(pki: LabPKI, spec: ServerSpec) -> IssuedCert:
    if spec.cert_profile is not None:
        return pki.issue_profile(spec.name, spec.hostname, spec.cert_profile)
    return pki.issue(spec.name, spec.hostname, big_chain=spec.name == "bigchain")


def _server_entry(
    spec: ServerSpec,
    cert: IssuedCert | None,
    launches: list[Launch],
    names: LabNames,
) -> dict[str, Any]:
    """Build the manifest entry of one server.

    `chain_files` lists every certificate the server sends, leaf first, one
    PEM file each; `cert_file` is the first of them.
    """
    chain_files = []
    if cert is not None:
        served = [cert.leaf_file, *cert.intermediate_files]
        chain_files = [str(path.resolve()) for path in served]
    if launches:
        software = launches[-1].software
    elif spec.kind is Kind.FILTERED:
        software = f"nftables drop rule in table inet {names.nft_table}"
    else:
        software = f"none: nothing listens on port {spec.port}"
    return {
        "name": spec.name,
        "hostname": spec.hostname,
        "address": spec.address,
        "port": spec.port,
        "software": software,
        "expected_state": spec.expected_state,
        "expected_set": spec.expected_set,
        "expected_version": spec.expected_version,
        "leaf_sha256": cert.leaf_sha256 if cert else None,
        "cert_file": str(cert.leaf_file.resolve()) if cert else None,
        "chain_files": chain_files,
    }


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])
