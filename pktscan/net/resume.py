"""The resume file of ``pktscan probe``: where an interrupted scan stopped.

The file is JSON. It records the scan's seed, shard, merged address ranges
and ports, which together fix the order of the walk, and the walk position
reached. Every probe before that position was sent and has its result line,
because a stopping scan still waits for the responses to the probes it sent.
A resumed scan must describe the same space, or the position would mean
other probes, so a mismatch is an input error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pktscan.errors import InputError
from pktscan.targets import TargetSpace

RESUME_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ResumeState:
    """A scan's identity and the walk position it reached."""

    seed: int
    shard: tuple[int, int]
    ranges: tuple[str, ...]
    ports: tuple[int, ...]
    position: int

    @classmethod
    def of(cls, space: TargetSpace, position: int) -> ResumeState:
        return cls(
            space.seed,
            space.shard,
            tuple(str(item) for item in space.ranges),
            space.ports,
            position,
        )

    def start_for(self, space: TargetSpace, path: Path) -> int:
        """Return the position to start `space` at.

        Raises:
            InputError: the file describes another scan.
        """
        current = ResumeState.of(space, self.position)
        for name in ("seed", "shard", "ranges", "ports"):
            if getattr(current, name) != getattr(self, name):
                raise InputError(
                    f"resume file '{path}' is for another scan (different {name})",
                    "give the targets, ports, exclusions, --seed and --shard of "
                    "the interrupted scan, or remove the resume file",
                )
        if not 0 <= self.position <= space.shard_steps:
            raise InputError(
                f"invalid position {self.position} in resume file '{path}'",
                "remove the resume file to start the scan again",
            )
        return self.position


def read_resume(path: Path) -> ResumeState | None:
    """Read a resume file, or return None when it does not exist.

    Raises:
        InputError: the file cannot be read or is not a resume file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise InputError(
            f"cannot read resume file '{path}': {error.strerror}",
            "check the path and its permissions",
        ) from error
    try:
        data = json.loads(text)
        if data.pop("format") != RESUME_FORMAT:
            raise ValueError("unknown format")
        return ResumeState(
            seed=int(data["seed"]),
            shard=(int(data["shard"][0]), int(data["shard"][1])),
            ranges=tuple(str(item) for item in data["ranges"]),
            ports=tuple(int(port) for port in data["ports"]),
            position=int(data["position"]),
        )
    except KeyError as error:
        raise InputError(
            f"invalid resume file '{path}': the field {error} is missing",
            "remove it to start the scan again",
        ) from None
    except (ValueError, TypeError, IndexError, AttributeError) as error:
        raise InputError(
            f"invalid resume file '{path}': {error}",
            "remove it to start the scan again",
        ) from None


def resume_text(state: ResumeState) -> str:
    """Return the contents of a resume file for `state`."""
    return json.dumps({"format": RESUME_FORMAT, **asdict(state)}) + "\n"


def write_resume(path: Path, state: ResumeState) -> None:
    """Write the resume file atomically, through a temporary file."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(resume_text(state), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        raise InputError(
            f"cannot write resume file '{path}': {error.strerror}",
            "check that the directory exists and is writable",
        ) from error
