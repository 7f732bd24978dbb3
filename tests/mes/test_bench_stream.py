"""Run `mes bench stream` at a tiny size: figures come back, never speed."""

from __future__ import annotations

import argparse

import pytest

from mes.bench import streaming


def stream_args(**values) -> argparse.Namespace:
    """Parse the stream scenario's own flags at their defaults, then set the given values."""
    parser = argparse.ArgumentParser()
    streaming.add_arguments(parser)
    args = parser.parse_args([])
    args.workers, args.max_tokens = 1, 8
    for name, value in values.items():
        setattr(args, name, value)
    return args


@pytest.mark.integration
def test_stream_scenario_reports_both_sides():
    # The hold part (a second stack) ran at full size for docs/benchmarks.md; here, one stack.
    figures = streaming.stream(stream_args(count=2, token_ms=5.0, no_real=True, streams=0))
    simulated = figures["simulated"]
    for side in ("direct", "mes"):
        assert simulated[side]["ttft_p50_ms"] > 0 and simulated[side]["tokens"] > 1
        assert simulated[side]["tokens_per_s"] > 0
    assert "ttft_p50_ms" in simulated["added"] and simulated["added"]["tokens_per_s_ratio"] > 0
    assert "hold" not in figures and "real" not in figures


def test_tokens_per_s_runs_from_the_first_token_to_done():
    figures = streaming._figures(start=10.0, first=10.5, end=12.5, tokens=9)
    assert figures["ttft_ms"] == 500.0 and figures["tokens_per_s"] == 4.0


def test_a_stream_without_done_is_an_error_not_a_figure():
    with pytest.raises(RuntimeError):
        streaming._figures(start=1.0, first=1.1, end=None, tokens=3)
