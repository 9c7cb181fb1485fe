"""Tests of the JSON lines writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from store_helpers import T0, closed_result, tls_result

from pktscan.errors import LocalError
from pktscan.results import CertInfo
from pktscan.store.jsonl import JsonLinesWriter


def test_each_line_flushed(tmp_path: Path, chain_a: list[CertInfo]) -> None:
    path = tmp_path / "out" / "results.jsonl"
    first = tls_result("198.18.0.2", 443, chain_a, T0)
    second = closed_result("198.18.0.2", 444, T0)
    writer = JsonLinesWriter(path)

    writer.write(first)
    after_first = path.read_text(encoding="utf-8")
    writer.write(second)
    after_second = path.read_text(encoding="utf-8")
    writer.close()

    assert after_first.endswith("\n")
    assert [json.loads(line) for line in after_first.splitlines()] == [first.to_json()]
    assert [json.loads(line) for line in after_second.splitlines()] == [
        first.to_json(),
        second.to_json(),
    ]


def test_appends_to_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    with JsonLinesWriter(path) as writer:
        writer.write(closed_result("198.18.0.2", 1, T0))
    with JsonLinesWriter(str(path)) as writer:
        writer.write(closed_result("198.18.0.2", 2, T0))

    ports = [json.loads(line)["port"] for line in path.read_text().splitlines()]
    assert ports == [1, 2]


def test_dash_writes_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    result = closed_result("198.18.0.7", 443, T0)

    with JsonLinesWriter("-") as writer:
        writer.write(result)

    out = capsys.readouterr().out
    assert out == json.dumps(result.to_json(), separators=(",", ":")) + "\n"


def test_unwritable_path_rejected(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    with pytest.raises(LocalError, match="failed to open JSON lines output") as caught:
        JsonLinesWriter(blocker / "results.jsonl")

    assert (
        caught.value.hint == "choose a writable output path, or - for standard output"
    )
