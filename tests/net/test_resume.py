"""Tests for the probe command's resume file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pktscan.errors import InputError
from pktscan.net.resume import ResumeState, read_resume, write_resume
from pktscan.targets import TargetSpace


def space(**changes: object) -> TargetSpace:
    arguments: dict[str, object] = {
        "networks": ["198.18.0.0/24", "2001:db8::/120"],
        "ports": [443, 80],
        "exclude": ["198.18.0.9"],
        "seed": 7,
        "shard": (1, 4),
    }
    arguments.update(changes)
    return TargetSpace(**arguments)  # type: ignore[arg-type]


def test_resume_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "scan.resume"
    write_resume(path, ResumeState.of(space(), 42))
    state = read_resume(path)
    assert state == ResumeState(
        seed=7,
        shard=(1, 4),
        ranges=(
            "198.18.0.0-198.18.0.8",
            "198.18.0.10-198.18.0.255",
            "2001:db8::-2001:db8::ff",
        ),
        ports=(80, 443),
        position=42,
    )
    assert state is not None
    assert state.start_for(space(), path) == 42


def test_resume_missing_file(tmp_path: Path) -> None:
    assert read_resume(tmp_path / "none") is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seed": 8}, "seed"),
        ({"shard": (2, 4)}, "shard"),
        ({"ports": [443]}, "ports"),
        ({"exclude": []}, "ranges"),
    ],
)
def test_resume_rejects_other_scan(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    path = tmp_path / "scan.resume"
    state = ResumeState.of(space(), 5)
    with pytest.raises(InputError) as caught:
        state.start_for(space(**changes), path)
    assert caught.value.message == (
        f"resume file '{path}' is for another scan (different {field})"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "invalid resume file"),
        ('{"format": 2}', "invalid resume file"),
        ('{"format": 1, "seed": 1}', "invalid resume file"),
        ("[]", "invalid resume file"),
    ],
)
def test_resume_invalid_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scan.resume"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        read_resume(path)
    assert caught.value.message.startswith(f"{message} '{path}'")


def test_resume_position_beyond_walk(tmp_path: Path) -> None:
    path = tmp_path / "scan.resume"
    state = ResumeState.of(space(), space().shard_steps + 1)
    with pytest.raises(InputError) as caught:
        state.start_for(space(), path)
    assert caught.value.message == (
        f"invalid position {space().shard_steps + 1} in resume file '{path}'"
    )
