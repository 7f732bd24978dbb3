"""Run `mes bench batch` and `mes bench doors` at a tiny size: figures come back, never speed."""

from __future__ import annotations

import argparse

import pytest

from mes.bench import batching, doors


def scenario_args(module, **values) -> argparse.Namespace:
    """Parse a scenario's own flags at their defaults, then set the given values."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args([])
    for name, value in values.items():
        setattr(args, name, value)
    return args


@pytest.mark.integration
def test_batch_scenario_reports_ingest_drain_and_memory():
    args = scenario_args(batching, lines=400, runs=1, workers=1, concurrency=2)
    figures = batching.batch(args)
    med = figures["medians"]
    assert len(figures["runs"]) == 1 and med["batch_not_succeeded"] == 0
    assert med["ingest_s"] > 0 and med["ingest_jobs_per_s"] > 0 and med["polls"] > 0
    assert med["batch_jobs_per_s"] > 0 and med["bytes_per_job_finished"] > 0
    assert med["input_bytes_per_job"] > 0
    assert figures["one_at_a_time"]["jobs_per_s"] > 0 and figures["one_at_a_time"]["errors"] == 0
    assert set(figures["targets"]) == {"ingest_s_met", "ingest_rate_met", "poll_p99_met"}


@pytest.mark.integration
def test_doors_scenario_reports_each_door_against_v1():
    args = scenario_args(doors, count=5, runs=1, workers=1, concurrency=1)
    figures = doors.doors(args)
    assert set(figures["medians"]) == {"openai", "ollama", "v1"}
    assert all(m["errors"] == 0 and m["p50_ms"] > 0 for m in figures["medians"].values())
    assert set(figures["added_ms"]) == set(figures["targets"]) == {"openai", "ollama"}
    assert all(ms > 0 for ms in figures["web_cpu_ms_per_request"].values())


def test_doors_take_turns_in_every_position():
    rotation = doors.Rotation(doors.DOORS)
    order = [rotation.next() for _ in range(9)]
    assert order == ["openai", "ollama", "v1", "ollama", "v1", "openai", "v1", "openai", "ollama"]


def test_a_batch_body_holds_the_requested_lines():
    body = batching.batch_body(3)
    assert body.count(b'"custom_id"') == 3 and b'"line-2"' in body
