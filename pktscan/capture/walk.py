"""Walk tokens through a `SequenceModel` and collect deviations.

Each step of the model accepts some token kinds between `min_count` and
`max_count` times. A token goes to the current step or, once the current
step has its minimum, to a later one. A token that no reachable step accepts
is a `Deviation`, unless the model lists it as ignorable or as trailing. After
a deviation the walk moves to the first later step that accepts the token, so
one mistake is reported once and the rest of the sequence is still checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pktscan.capture.sequence import SequenceModel, Step


@dataclass(frozen=True, slots=True)
class Token:
    """One observation in a sequence: a segment, or a lookup or connection."""

    kind: str
    number: int | None
    timestamp: float | None
    text: str


@dataclass(frozen=True, slots=True)
class Deviation:
    """A packet where the capture departs from the expected sequence.

    Attributes:
        number: packet number, or None when no packet carries the deviation.
        timestamp: the packet's time, seconds since the epoch.
        expected: what the sequence expected there.
        seen: what the capture shows instead.
    """

    number: int | None
    timestamp: float | None
    expected: str
    seen: str

    def to_json(self) -> dict[str, Any]:
        """Return the deviation as a JSON object."""
        return {
            "packet": self.number,
            "time": self.timestamp,
            "expected": self.expected,
            "seen": self.seen,
        }


def walk_sequence(
    model: SequenceModel,
    tokens: Sequence[Token],
    end: Token,
    *,
    has_dns: bool = True,
) -> list[Deviation]:
    """Walk tokens through a model's steps and return the deviations.

    Args:
        model: the expected sequence.
        tokens: observations in order.
        end: where the sequence ends, used as "seen" for a missing step.
        has_dns: whether the capture contains DNS; steps marked `needs_dns`
            expect nothing without it.
    """
    walk = _Walk(model, has_dns)
    for token in tokens:
        walk.feed(token)
    walk.finish(end)
    return walk.deviations


class _Walk:
    def __init__(self, model: SequenceModel, has_dns: bool) -> None:
        self.steps = model.steps
        self.model = model
        self.has_dns = has_dns
        self.index = 0
        self.count = 0
        self.seen: set[str] = set()
        self.reported: set[int] = set()
        self.deviations: list[Deviation] = []

    def _minimum(self, step: Step) -> int:
        if step.requires is not None and step.requires not in self.seen:
            return 0
        if step.needs_dns and not self.has_dns:
            return 0
        return step.min_count

    def _accepts(self, step: Step, token: Token, count: int) -> bool:
        if token.kind not in step.tokens:
            return False
        if step.requires is not None and step.requires not in self.seen:
            return False
        return step.max_count is None or count < step.max_count

    def _place(self, token: Token) -> int:
        """Return the step that accepts the token, or -1 - the blocking step."""
        position, count = self.index, self.count
        while position < len(self.steps):
            step = self.steps[position]
            if self._accepts(step, token, count):
                return position
            if count < self._minimum(step):
                return -1 - position
            position, count = position + 1, 0
        return -1 - len(self.steps)

    def _finished(self) -> bool:
        last = len(self.steps) - 1
        if self.index < last:
            return all(
                self._minimum(step) == 0 for step in self.steps[self.index + 1 :]
            ) and self.count >= self._minimum(self.steps[self.index])
        return self.count >= self._minimum(self.steps[last])

    def feed(self, token: Token) -> None:
        placed = self._place(token)
        if placed >= 0:
            self._advance(placed, token)
            return
        blocked = -1 - placed
        if blocked >= len(self.steps) and token.kind in self.model.trailing:
            return
        if token.kind in self.model.ignorable and not (
            blocked >= len(self.steps) and self._finished()
        ):
            return
        if blocked not in self.reported:
            expected = (
                self.steps[blocked].expected
                if blocked < len(self.steps)
                else self.model.after_last
            )
            self.deviations.append(
                Deviation(token.number, token.timestamp, expected, token.text)
            )
            self.reported.add(blocked)
        later = next(
            (
                position
                for position in range(blocked + 1, len(self.steps))
                if self._accepts(self.steps[position], token, 0)
            ),
            None,
        )
        if later is not None:
            self._advance(later, token)

    def _advance(self, position: int, token: Token) -> None:
        if position != self.index:
            self.index, self.count = position, 0
        self.count += 1
        self.seen.add(token.kind)

    def finish(self, end: Token) -> None:
        position, count = self.index, self.count
        while position < len(self.steps):
            step = self.steps[position]
            if count < self._minimum(step):
                if position not in self.reported:
                    self.deviations.append(
                        Deviation(end.number, end.timestamp, step.expected, end.text)
                    )
                return
            position, count = position + 1, 0
