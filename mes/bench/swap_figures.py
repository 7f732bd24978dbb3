"""Figures of one `mes bench swap` side from its job records: waits, loads and their bound."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from mes.bench.report import percentile


def summary(makespan: float, loads: dict[str, int], batch: list[dict],
            interactive: list[dict]) -> dict[str, Any]:
    """Return one side's figures from its job records: {"wait", "paid_load", "ok"} each."""
    def waits(records):
        return [r["wait"] for r in records if r["ok"]]
    b, i = waits(batch), waits(interactive)
    return {"makespan_s": round(makespan, 2), "loads": sum(loads.values()),
            "loads_by_model": loads,
            "loads_for_batch": loads_for_batch(batch, interactive),
            "batch_jobs": len(batch), "interactive_jobs": len(interactive),
            "failed": sum(1 for r in batch + interactive if not r["ok"]),
            "batch_wait_p50_s": round(percentile(b, 50), 2),
            "batch_wait_p95_s": round(percentile(b, 95), 2),
            "interactive_wait_p50_s": round(percentile(i, 50), 2) if i else None,
            "interactive_wait_p95_s": round(percentile(i, 95), 2) if i else None,
            "interactive_wait_max_s": round(max(i), 2) if i else None}


def loads_for_batch(batch: list[dict], interactive: list[dict]) -> int:
    """Count the loads after which a model served batch work before it was loaded again.

    The job that pays a load is often an interactive one (it goes first), so which job paid
    says little; what a load served does. The rest served only interactive jobs.
    """
    found = 0
    rows = sorted((r["start"], r["model"], r["paid_load"], lane) for lane, records in
                  (("batch", batch), ("interactive", interactive)) for r in records if r["ok"])
    serving: dict[str, bool] = {}  # model -> its current load has served batch work
    for _, model, paid_load, lane in rows:
        if paid_load:
            serving[model] = False
        if lane == "batch" and serving.get(model) is False:
            serving[model] = True
            found += 1
    return found


def foreseen_fewest_loads(spans: dict[str, float], arrivals: list[tuple[float, str]]) -> int:
    """Return the fewest loads any scheduler could need, knowing every arrival in advance.

    `spans` is each model's batch work as one block (its load included), `arrivals` the
    interactive jobs as (seconds after the start, model). With one model loaded at a time,
    each block costs one load, an interactive job that arrives before or during its model's
    block rides along with it, and the models that get one after their block (except the
    last block's, still loaded) cost one more load each, all of theirs grouped into it,
    however long that makes them wait. The best order of the blocks gives the bound.
    """
    unbatched = {model for _, model in arrivals} - set(spans)
    best = None
    for order in itertools.permutations(spans):
        end, late = 0.0, 0
        for i, model in enumerate(order):
            end += spans[model]
            if i < len(order) - 1 and any(at > end for at, m in arrivals if m == model):
                late += 1
        best = late if best is None else min(best, late)
    return len(spans) + (best or 0) + len(unbatched)


def foreseen(batch: list[dict], interactive: list[dict], started: float) -> int | None:
    """Return foreseen_fewest_loads for one MES run's job records (None without them)."""
    spans: dict[str, list[float]] = {}
    for r in batch:
        if r["ok"]:
            first, last = spans.get(r["model"], [r["start"], r["finished"]])
            spans[r["model"]] = [min(first, r["start"]), max(last, r["finished"])]
    if not spans:
        return None
    return foreseen_fewest_loads({m: last - first for m, (first, last) in spans.items()},
                                 [(r["submitted"] - started, r["model"])
                                  for r in interactive if r["ok"]])


def medians(results: list[dict]) -> dict[str, Any]:
    """Return the median of every number over runs (the first run's value for the rest)."""
    out: dict[str, Any] = {}
    for key, value in results[0].items():
        values = [r[key] for r in results]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        out[key] = statistics.median(values) if numeric else value
    return out
