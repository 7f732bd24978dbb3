"""Summarise samples: percentiles, throughput, and tables for people or JSON for machines."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Sequence

from mes.bench.load import Sample


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summarise(samples: list[Sample]) -> dict[str, float]:
    """Return count, errors, p50/p90/p99 latency (ms) and throughput (req/s)."""
    ok = [s for s in samples if s.ok]
    latencies = [s.latency_s * 1000 for s in ok]
    span = (max(s.start + s.latency_s for s in samples) - min(s.start for s in samples)) \
        if samples else 0.0
    return {"count": len(samples), "errors": len(samples) - len(ok),
            "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
            "p99_ms": percentile(latencies, 99), "throughput_rps": len(ok) / span if span else 0.0}


def batch_figures(count: int, started: float, submitted_at: float, done_at: float,
                  samples: list[Sample]) -> dict[str, float]:
    """Return submits/s, jobs/s from the first submit to the last job done, and errors."""
    return {"submit_rps": count / (submitted_at - started),
            "jobs_per_s": count / (done_at - started),
            "errors": sum(1 for s in samples if not s.ok)}


def median_of(runs: list[dict[str, float]], key: str) -> float:
    """Return the median of one figure over several runs."""
    return statistics.median(run[key] for run in runs)


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """Format a plain-text table with aligned columns."""
    cells = [header] + [[_fmt(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in cells[1:]]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_json(path: str | None, data: dict) -> None:
    """Write the figures as JSON if a path was given."""
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str))
