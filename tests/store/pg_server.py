"""A throwaway PostgreSQL server for the inventory tests.

The server runs from Debian's ``postgresql`` package in a temporary data
directory, as the ``postgres`` user when the tests run as root (initdb
rejects root). It listens only on a Unix socket in that directory, with no
TCP port, and stops by its PID when the tests end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Names the socket file .s.PGSQL.PORT; no TCP port is opened.
SOCKET_PORT = 5432
# Safety bounds on waits, not timing assertions.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def find_bindir() -> Path | None:
    """Return the directory of initdb and pg_ctl, or None when not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    """A running server: its directories, PID and the user it runs as."""

    bindir: Path
    root: Path
    pid: int
    user: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, database: str = "postgres") -> str:
        return (
            f"postgresql://postgres@/{database}"
            f"?host={self.socket_dir}&port={SOCKET_PORT}"
        )

    def create_database(self) -> str:
        """Create an empty database with a name unique to the call."""
        name = f"pktscan_{secrets.token_hex(4)}"
        self._psql(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        self._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _psql(self, statement: str) -> None:
        subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(SOCKET_PORT),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                statement,
            ],
            check=True,
            capture_output=True,
            timeout=STOP_TIMEOUT_S,
        )

    def stop(self) -> None:
        """Stop the server by its PID, then delete its directory."""
        with contextlib.suppress(ProcessLookupError):
            # SIGINT is PostgreSQL's "fast shutdown".
            os.kill(self.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of pg_ctl's daemonised process is gone for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_server(bindir: Path) -> PostgresServer:
    """Create a cluster in a new temporary directory and start it.

    Raises:
        subprocess.CalledProcessError: initdb or pg_ctl failed; the
            directory is removed.
    """
    root = Path(tempfile.mkdtemp(prefix="pktscan-pg-"))
    user = "postgres" if os.geteuid() == 0 else None
    try:
        (root / "socket").mkdir()
        if user is not None:
            account = pwd.getpwnam(user)
            for path in (root, root / "socket"):
                os.chown(path, account.pw_uid, account.pw_gid)
        root.chmod(0o700)
        data = root / "data"
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
            user=user,
        )
        options = (
            f"-k {root / 'socket'} -p {SOCKET_PORT} -c listen_addresses=''"
            " -c fsync=off -c max_connections=50"
        )
        subprocess.run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S + 10,
            user=user,
        )
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PostgresServer(bindir, root, pid, user)
