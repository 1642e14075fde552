"""Small helpers shared by the benchmarks: percentiles and the JSON line each figure prints."""

from __future__ import annotations

import json
import statistics
import sys


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


def emit(figure: dict[str, object]) -> None:
    """Print one figure as one compact JSON line, as the issues write them (flushed: ``make
    bench`` streams them)."""
    sys.stdout.write(json.dumps(figure, separators=(",", ":")) + "\n")
    sys.stdout.flush()
