"""JSON lines output: one `PortResult.to_json()` object per line.

Each line is written and flushed to the operating system as soon as its
result arrives, so a scanner that crashes or is killed loses no line it has
written. Flushing does not fsync, so a power loss can still lose the tail.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import TracebackType
from typing import TextIO

from pktscan.errors import LocalError
from pktscan.results import PortResult

__all__ = ["JsonLinesWriter"]

#: The path that selects standard output.
STDOUT_PATH = "-"


class JsonLinesWriter:
    """Writer of scan results as JSON lines to a file or to standard output.

    The file is opened for appending, so several scans can share one file.
    Use it as a context manager, or call `close` when done.
    """

    def __init__(self, path: Path | str) -> None:
        """Open `path` for appending, creating its parent directories.

        Args:
            path: the output file, or ``-`` for standard output.

        Raises:
            LocalError: the file cannot be created or opened.
        """
        self.path = str(path)
        self._stream: TextIO
        self._owns_stream = self.path != STDOUT_PATH
        if not self._owns_stream:
            self._stream = sys.stdout
            return
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._stream = target.open("a", encoding="utf-8")
        except OSError as exc:
            raise LocalError(
                f"failed to open JSON lines output {target}: {exc.strerror}",
                hint="choose a writable output path, or - for standard output",
            ) from exc

    def write(self, result: PortResult) -> None:
        """Write one result as one line and flush it."""
        line = json.dumps(result.to_json(), separators=(",", ":"), sort_keys=False)
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except OSError as exc:
            raise LocalError(
                f"failed to write to JSON lines output {self.path}: {exc.strerror}",
                hint="check free disk space and the file's permissions",
            ) from exc

    def close(self) -> None:
        """Close the file; standard output is flushed and left open."""
        if self._owns_stream:
            self._stream.close()
        else:
            self._stream.flush()

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
