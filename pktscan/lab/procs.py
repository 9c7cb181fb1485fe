"""Server processes: start them in a namespace, record them, stop them.

Each server starts as the leader of a new session, so its PID is also its
process group id and signalling the group reaches its children (nginx
workers) too. The record keeps the kernel's start time of each PID next to
it, so that a stop after a crash or a reboot never signals an unrelated
process that reused the PID.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pktscan.errors import LabError
from pktscan.lab.netns import in_namespace

logger = logging.getLogger(__name__)

STOP_GRACE_S = 3.0
_POLL_INTERVAL_S = 0.02


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A started process as stored in pids.json.

    Attributes:
        name: lab server or helper the process serves.
        pid: its PID, which is also its process group id.
        start_time: field 22 of /proc/PID/stat, in clock ticks since boot.
        argv: the command line it was started with.
        log_file: where its standard output and error go.
    """

    name: str
    pid: int
    start_time: int
    argv: tuple[str, ...]
    log_file: str


def _start_time(pid: int) -> int | None:
    """Return the start time of `pid`, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces, so split
    # after the last ')'. Fields after it start at field 3 (state).
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    """Return whether the recorded process still runs (same PID, same start time)."""
    return _start_time(record.pid) == record.start_time


class ProcessTable:
    """The processes of one lab, kept in memory and in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, ProcessRecord] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def load(cls, path: Path) -> ProcessTable:
        """Read the table from `path`; a missing file gives an empty table."""
        table = cls(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return table
        except (OSError, ValueError) as error:
            raise LabError(f"cannot read process table {path}: {error}") from error
        for item in data.get("processes", []):
            item["argv"] = tuple(item["argv"])
            record = ProcessRecord(**item)
            table.records[record.name] = record
        return table

    def _save(self) -> None:
        data = {"processes": [asdict(record) for record in self.records.values()]}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        temporary.replace(self.path)

    def start(
        self,
        name: str,
        namespace: str,
        argv: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> ProcessRecord:
        """Start `argv` inside `namespace` and record it under `name`.

        Raises:
            LabError: the process cannot be started.
        """
        command = in_namespace(namespace, argv)
        with log_file.open("ab") as log:
            try:
                child = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=dict(env) if env is not None else None,
                )
            except OSError as error:
                raise LabError(f"cannot start {name}: {error}") from error
        start_time = _start_time(child.pid)
        if start_time is None:
            # Exited before we could read /proc; keep a record that no
            # live process matches, so that readiness reports it.
            start_time = -1
        record = ProcessRecord(name, child.pid, start_time, tuple(argv), str(log_file))
        self.records[name] = record
        self._children[child.pid] = child
        self._save()
        logger.debug("started %s as PID %d: %s", name, child.pid, " ".join(argv))
        return record

    def exited(self, name: str) -> int | None:
        """Exit code of a process this object started, or None if it runs."""
        record = self.records[name]
        child = self._children.get(record.pid)
        if child is not None:
            return child.poll()
        return None if is_alive(record) else -1

    def stop_all(self, *, group: bool = True) -> list[str]:
        """Stop every recorded process: SIGTERM, then SIGKILL.

        With `group`, each signal goes to the process group that the PID
        leads. Only PIDs whose start time still matches the record are
        signalled. Returns the names of processes that would not stop.
        """
        return self._stop_records(list(self.records.values()), group=group)

    def stop(self, names: Sequence[str]) -> list[str]:
        """Stop the named processes and their groups, and drop their records.

        Returns the names of processes that would not stop; their records
        stay, so that the lab's teardown tries again.

        Raises:
            LabError: a name is not in the table.
        """
        missing = [name for name in names if name not in self.records]
        if missing:
            raise LabError(f"no recorded process named {', '.join(missing)}")
        stuck = self._stop_records([self.records[name] for name in names], group=True)
        for name in names:
            if name not in stuck:
                del self.records[name]
        self._save()
        return stuck

    def _stop_records(self, records: list[ProcessRecord], *, group: bool) -> list[str]:
        send = _signal_group if group else _signal_process
        live = [record for record in records if is_alive(record)]
        for record in live:
            send(record.pid, signal.SIGTERM)
        stubborn = self._wait_gone(live, STOP_GRACE_S)
        for record in stubborn:
            logger.warning(
                "%s (PID %d) ignored SIGTERM; sending SIGKILL", record.name, record.pid
            )
            if is_alive(record):
                send(record.pid, signal.SIGKILL)
        remaining = self._wait_gone(stubborn, STOP_GRACE_S)
        for child in self._children.values():
            child.poll()
        return [record.name for record in remaining]

    def _wait_gone(
        self, records: list[ProcessRecord], timeout: float
    ) -> list[ProcessRecord]:
        deadline = time.monotonic() + timeout
        pending = list(records)
        while pending and time.monotonic() < deadline:
            for child in self._children.values():
                child.poll()
            pending = [record for record in pending if is_alive(record)]
            if pending:
                time.sleep(_POLL_INTERVAL_S)
        return pending


def stop_pids(pids: Sequence[int]) -> list[int]:
    """Stop processes by PID: SIGTERM, then SIGKILL. Return the survivors.

    Each PID is signalled only while its start time is the one read before
    the first signal, so a reused PID is never hit.
    """
    records = []
    for pid in pids:
        start_time = _start_time(pid)
        if start_time is not None:
            records.append(ProcessRecord(f"PID {pid}", pid, start_time, (), ""))
    table = ProcessTable(Path(os.devnull))
    table.records = {record.name: record for record in records}
    stuck = table.stop_all(group=False)
    return [int(name.split()[1]) for name in stuck]


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _signal_process(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
