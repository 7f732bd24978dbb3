"""`mes bench doors`: the same short chat request through the OpenAI door, the Ollama door and
MES's own /v1/inference, alternating, with the zero-latency simulated engine.

Every request is a synchronous chat job of the same messages and the same 8-token cap:
  openai  POST /openai/v1/chat/completions, non-streaming (`max_tokens`);
  ollama  POST /ollama/api/chat with "stream": false (`options.num_predict`);
  v1      POST /v1/inference with `wait_s` (`options.max_tokens`).
The clients are plain requests sessions, one per client thread for all three doors, so the
client's own cost is the same on every side; the doors take turns request by request, and
each door comes first, second and third in as many rounds. A door's added latency is its
p50 (p99) less /v1/inference's in the same run, and the median of that over `--runs`.
Run 0 warms every path up and is dropped. Then each door alone takes `--count` requests
more, and the web processes' CPU seconds over them give its CPU per request: a figure the
neighbours of a shared machine inflate far less than a latency.
"""

from __future__ import annotations

import itertools
import statistics
import threading
from typing import Any

from mes.bench.batching import cpu_seconds
from mes.bench.load import Sample, run_load
from mes.bench.report import median_of, summarise, table
from mes.bench.scenarios import MODEL, ZERO_LATENCY, say
from mes.bench.stack import BenchStack

DOORS = ("openai", "ollama", "v1")
LABELS = {"openai": "POST /openai/v1/chat/completions", "ollama": "POST /ollama/api/chat",
          "v1": "POST /v1/inference"}
MESSAGES = [{"role": "user", "content": "Say hello"}]
TOKENS = 8
ADDED_P50_MS = 1.0  # issue 14's target for each door over /v1/inference
KEYS = ("p50_ms", "p90_ms", "p99_ms")  # no req/s: the doors share each run's time


def add_arguments(parser) -> None:
    """Add the doors scenario's own flags to `mes bench` (it uses --count, --runs, ...)."""
    group = parser.add_argument_group("doors")
    group.add_argument("--doors", default=",".join(DOORS),
                       help="doors: which paths to compare, comma-separated (v1 always runs)")


def requests_for(stack: BenchStack) -> dict[str, tuple[str, dict]]:
    """Return each door's URL and body for the same chat request."""
    return {
        "openai": (stack.web_url + "/openai/v1/chat/completions",
                   {"model": MODEL, "messages": MESSAGES, "max_tokens": TOKENS}),
        "ollama": (stack.web_url + "/ollama/api/chat",
                   {"model": MODEL, "messages": MESSAGES, "stream": False,
                    "options": {"num_predict": TOKENS}}),
        "v1": (stack.web_url + "/v1/inference",
               {"model": MODEL, "messages": MESSAGES, "options": {"max_tokens": TOKENS},
                "wait_s": 30}),
    }


def answered(door: str, status: int, body: Any) -> bool:
    """Tell whether a door's answer is a finished reply in its own wire format."""
    if status != 200 or not isinstance(body, dict):
        return False
    if door == "openai":
        return isinstance(body["choices"][0]["message"]["content"], str)
    if door == "ollama":
        return body.get("done") is True and isinstance(body["message"]["content"], str)
    return body.get("status") == "succeeded"


class Rotation:
    """Hand out doors in rounds, each round starting one door later than the one before."""

    def __init__(self, doors: tuple[str, ...]):
        self._doors = doors
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    def next(self) -> str:
        """Return the door of the next request."""
        with self._lock:
            n = next(self._numbers)
        size = len(self._doors)
        return self._doors[(n + n // size) % size]


def one_run(stack: BenchStack, doors: tuple[str, ...], args, label: str
            ) -> dict[str, list[Sample]]:
    """Send `--count` requests through each door, taking turns; return the samples by door."""
    wire = requests_for(stack)
    rotation = Rotation(doors)

    def call(session):
        door = rotation.next()
        url, body = wire[door]
        response = session.post(url, json=body, headers=stack.headers, timeout=60)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return {"ok": answered(door, response.status_code, answer), "door": door}

    samples = run_load(call, label=label, concurrency=getattr(args, "concurrency", 1),
                       count=getattr(args, "count", 500) * len(doors))
    return {door: [s for s in samples if s.info.get("door") == door] for door in doors}


def chosen_doors(args) -> tuple[str, ...]:
    """Return the doors to run, /v1/inference always among them (it is the baseline)."""
    wanted = [door for door in args.doors.split(",") if door]
    unknown = set(wanted) - set(DOORS)
    if unknown:
        raise SystemExit(f"mes bench doors: unknown doors {sorted(unknown)}; choose from {DOORS}")
    return tuple(door for door in DOORS if door in wanted or door == "v1")


def doors(args) -> dict[str, Any]:
    """Run the doors side by side `--runs` times; print medians, added latency and the target."""
    paths = chosen_doors(args)
    runs_wanted = getattr(args, "runs", 5)
    runs: dict[str, list[dict]] = {door: [] for door in paths}
    with BenchStack(models=[{"id": MODEL, "timeout_s": 120, "max_tokens": 64}],
                    concurrency=getattr(args, "workers", 2), engine_args=ZERO_LATENCY) as stack:
        stack.start_redis()
        stack.start_worker("w1", stack.start_engine())
        stack.start_web()
        for run in range(runs_wanted + 1):  # run 0 warms every path up and is dropped
            by_door = one_run(stack, paths, args, f"doors run {run}")
            figures = {door: summarise(samples) for door, samples in by_door.items()}
            say(f"  run {run}: " + ", ".join(f"{door} p50 {f['p50_ms']:.2f} ms"
                                            for door, f in figures.items()))
            if run:
                for door, f in figures.items():
                    runs[door].append(f)
        cpu_ms = {door: web_cpu_ms(stack, door, args) for door in paths}
    med = {door: {key: median_of(results, key) for key in (*KEYS, "errors")}
           for door, results in runs.items()}
    added = {door: {key: statistics.median(r[key] - v[key] for r, v in zip(runs[door], runs["v1"]))
                    for key in ("p50_ms", "p99_ms")}
             for door in paths if door != "v1"}
    found = {door: {"added_p50_ms": round(a["p50_ms"], 3), "met": a["p50_ms"] <= ADDED_P50_MS}
             for door, a in added.items()}
    rows = [[LABELS[door], *[med[door][key] for key in KEYS], med[door]["errors"],
             added[door]["p50_ms"] if door in added else "",
             added[door]["p99_ms"] if door in added else "", cpu_ms[door]] for door in paths]
    print(table(f"doors: {getattr(args, 'count', 500)} requests per door x {runs_wanted} runs, "
                f"alternating, concurrency {getattr(args, 'concurrency', 1)}, zero-latency "
                "engine, medians over runs",
                ["path", "p50 ms", "p90 ms", "p99 ms", "errors", "added p50 ms",
                 "added p99 ms", "web CPU ms/req"], rows))
    print(f"target: each door adds at most {ADDED_P50_MS:g} ms at p50 over /v1/inference: "
          + ", ".join(f"{door} {'met' if f['met'] else 'missed'}" for door, f in found.items()))
    return {"scenario": "doors", "medians": med, "added_ms": added, "targets": found,
            "web_cpu_ms_per_request": cpu_ms, "runs": runs}


def web_cpu_ms(stack: BenchStack, door: str, args) -> float:
    """Send `--count` requests through one door alone; return the web's CPU ms per request."""
    before, _ = cpu_seconds(stack)
    one_run(stack, (door,), args, f"{door} alone, for its CPU")
    after, _ = cpu_seconds(stack)
    return (after - before) * 1000 / getattr(args, "count", 500)
