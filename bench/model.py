"""What a scenario reports: its figure, the reference figure, the goal and whether it is met."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One part of a scenario's goal.

    Attributes:
        what: The figure checked, e.g. "p99 delivery latency".
        value: Its value in this run.
        limit: The goal, e.g. "< 250 ms".
        met: Whether the value meets it.
    """

    what: str
    value: str
    limit: str
    met: bool


@dataclass(frozen=True)
class Result:
    """One scenario's outcome (one object of `bench/results/latest.json`).

    Attributes:
        name: The scenario.
        value: The headline figure (None when the scenario could not run).
        unit: Its unit.
        reference: The reference measured in the same run (or quoted), same unit.
        ratio: value / reference, where that means something.
        goal: The goal as written in the issue.
        met: Whether every check passed (None when the scenario could not run).
        checks: Each part of the goal with its figure.
        details: Further figures (percentiles, client CPU, sizes).
        limits: What limits the figure on this machine, in a sentence or two.
        available: False when the path measured does not exist yet.
    """

    name: str
    value: float | None
    unit: str
    reference: float | None
    ratio: float | None
    goal: str
    met: bool | None
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    limits: str = ""
    available: bool = True

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to `latest.json`."""
        return asdict(self)


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference rounded to 3 places, or None when either is missing or zero."""
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def unavailable(name: str, unit: str, goal: str, why: str) -> Result:
    """The result of a scenario whose path does not exist yet (reported, never faked)."""
    return Result(name, None, unit, None, None, goal, None, limits=why, available=False)
