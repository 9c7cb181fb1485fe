"""The exception hierarchy.

Every error pktscan raises on purpose derives from `PktscanError`, which is
never raised itself. Two branches tell whose fault a failure is:

- `PeerProtocolError`: a server, a capture or another peer sent bytes that
  break the protocol. It carries the byte offset, the field, the value and
  the limit, so that a message can point at the exact bytes.
- `LocalError`: our side failed: bad user input, a missing privilege, a
  lab that cannot start, a file that cannot be read. It carries a hint that
  tells the user what to do.

Caller mistakes inside the library (a wrong type, an out-of-range argument
from code) raise the built-in `TypeError` or `ValueError` instead.
"""

from __future__ import annotations


class PktscanError(Exception):
    """Root of pktscan's errors; raise one of its subclasses."""

    def __init__(self, message: str) -> None:
        if type(self) is PktscanError:
            raise TypeError("raise a subclass of PktscanError, not the root")
        super().__init__(message)
        self.message = message


class PeerProtocolError(PktscanError):
    """Bytes from a peer that break the protocol.

    Attributes:
        offset: byte offset of the offending field in the stream, or None.
        field: name of the field, as the RFC names it.
        value: the value read.
        limit: the limit the value broke, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        field: str | None = None,
        value: object = None,
        limit: object = None,
    ) -> None:
        super().__init__(message)
        self.offset = offset
        self.field = field
        self.value = value
        self.limit = limit


class LocalError(PktscanError):
    """A failure on our side, with a hint saying what the user can do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class InputError(LocalError):
    """Invalid user input: a target, a port list, an option value."""


class PrivilegeError(LocalError):
    """An operation needs root or a capability the process lacks."""


class LabError(LocalError):
    """The lab network or one of its servers could not be set up."""


class CaptureError(LocalError):
    """A capture file cannot be opened or read at all."""
