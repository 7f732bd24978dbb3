"""Parse `mes bench` arguments and run one scenario."""

from __future__ import annotations

import argparse
import json

from mes.bench import batching, doors, footprint, scenarios, streaming, structured_suite, swap
from mes.bench.report import write_json

SCENARIOS = {
    "overhead": scenarios.overhead,
    "throughput": scenarios.throughput,
    "scaleout": scenarios.scaleout,
    "realmodel": scenarios.realmodel,
    "memory": footprint.memory,
    "structured": structured_suite.structured,
    "swap": swap.swap,
    "stream": streaming.stream,
    "batch": batching.batch,
    "doors": doors.doors,
}


def main(argv: list[str]) -> int:
    """Run the scenario named on the command line; print its table; optionally write JSON."""
    parser = argparse.ArgumentParser(prog="mes bench", description="Measure MES on a private stack.")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--concurrency", type=int, default=1, help="client threads (default 1)")
    parser.add_argument("--count", type=int, default=500, help="requests or jobs per run")
    parser.add_argument("--rate", type=float, help="open loop: requests started per second")
    parser.add_argument("--runs", type=int, default=5, help="measured runs; medians are reported")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (celery -c)")
    parser.add_argument("--max-tokens", type=int, default=64, help="realmodel: tokens per reply")
    parser.add_argument("--queued", type=int, default=100_000, help="memory: jobs to queue")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    for module in (swap, streaming, batching, doors):
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    figures = SCENARIOS[args.scenario](args)
    figures["args"] = vars(args)
    write_json(args.json, figures)
    if not args.json:
        print(json.dumps({k: v for k, v in figures.items() if k != "runs"}, default=str))
    return 0
