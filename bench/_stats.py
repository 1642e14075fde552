"""Small helpers shared by the benchmarks: percentiles and the JSON line each figure prints."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank ``pct`` percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def p50_p99(values: list[float], prefix: str) -> dict[str, float]:
    """``{prefix}_p50_ms`` and ``{prefix}_p99_ms`` of millisecond ``values``, rounded."""
    return {
        f"{prefix}_p50_ms": round(statistics.median(values), 2),
        f"{prefix}_p99_ms": round(percentile(values, 99), 2),
    }


def taking_turns(rounds: int, first: T, second: T) -> Iterator[T]:
    """``first, second, second, first, first, second, ...`` for ``rounds`` rounds: two things
    measured side by side, each going first every other round, so that neither always runs
    right after the other (in its caches, or in its wake)."""
    for i in range(rounds):
        yield from (first, second) if i % 2 == 0 else (second, first)


def emit(figure: dict[str, object]) -> None:
    """Print one figure as one compact JSON line, as the issues write them (flushed: ``make
    bench`` streams them)."""
    sys.stdout.write(json.dumps(figure, separators=(",", ":")) + "\n")
    sys.stdout.flush()
