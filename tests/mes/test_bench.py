"""Check the benchmark's arithmetic and load generator (figures, never speed)."""

from __future__ import annotations

import argparse
import itertools

import pytest

from mes.bench.baseline import run_bare_client, start_bare_worker
from mes.bench.load import Sample, run_load
from mes.bench.report import percentile, summarise, table
from mes.bench.scenarios import MODEL
from mes.bench.stack import BenchStack


def test_percentiles_interpolate():
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert percentile(values, 50) == 5.5
    assert percentile(values, 0) == 1 and percentile(values, 100) == 10
    assert percentile([3.0], 99) == 3.0


def test_summary_counts_errors_and_throughput():
    samples = [Sample(start=i, latency_s=0.5, ok=i != 3) for i in range(4)]
    summary = summarise(samples)
    assert summary["count"] == 4 and summary["errors"] == 1
    assert summary["p50_ms"] == 500.0
    assert summary["throughput_rps"] == 3 / 3.5  # 3 good requests between t=0 and t=3.5


def test_closed_loop_runs_exactly_count_calls():
    counter = itertools.count()
    samples = run_load(lambda session: {"ok": next(counter) % 5 != 0}, label="t",
                       concurrency=4, count=50)
    assert len(samples) == 50 and sum(not s.ok for s in samples) == 10


def test_table_aligns_columns():
    text = table("T", ["a", "bb"], [["x", 1.234], ["long name", 12345.6]])
    lines = text.splitlines()
    assert lines[0] == "T" and lines[3].startswith("x ") and lines[3].endswith("1.23")
    assert lines[4].endswith("12346")


@pytest.mark.integration
def test_bare_celery_baseline_produces_figures():
    # A real redis-server and a real bare Celery worker, at a tiny size: figures, not speed.
    with BenchStack(models=[{"id": MODEL}], concurrency=1) as stack:
        stack.start_redis()
        start_bare_worker(stack, concurrency=1)
        args = argparse.Namespace(count=5, concurrency=1, rate=None)
        latency = run_bare_client(stack, "latency", args, "bare latency")
        args.count = 20
        batch = run_bare_client(stack, "throughput", args, "bare throughput")
    assert latency["count"] == 5 and latency["errors"] == 0 and latency["p50_ms"] > 0
    assert batch["errors"] == 0 and batch["jobs_per_s"] > 0 and batch["submit_rps"] > 0
