"""The benchmark scenarios: each starts its stack, runs, prints a table and returns figures."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import requests

from mes.bench.baseline import run_bare_client, start_bare_worker
from mes.bench.load import run_load
from mes.bench.report import batch_figures, median_of, summarise, table
from mes.bench.stack import BenchStack
from mes.jobs import FINAL_STATES
from mes.store import names

MODEL = "smollm2:135m"
ZERO_LATENCY = ("--simulated", "--token-ms", "0", "--prompt-ms", "0", "--load-ms", "0",
                "--num-parallel", "64", "--response-tokens", "8")


def say(text: str) -> None:
    """Print a line for people to stderr (tables go to stdout)."""
    print(text, file=sys.stderr, flush=True)


def overhead(args) -> dict[str, Any]:
    """Compare synchronous /v1/inference through MES with the engine direct and a bare Celery no-op."""
    with BenchStack(models=[{"id": MODEL, "timeout_s": 120, "max_tokens": 64}],
                    concurrency=args.workers, engine_args=ZERO_LATENCY) as stack:
        stack.start_redis()
        engine = stack.start_engine()
        stack.start_worker("w1", engine)
        start_bare_worker(stack, args.workers)
        stack.start_web()
        body = {"model": MODEL, "prompt": "Say hello", "options": {"max_tokens": 8}, "wait_s": 30}
        direct_body = {"model": MODEL, "prompt": "Say hello", "stream": False,
                       "options": {"num_predict": 8}}

        def via_mes(session):
            response = session.post(stack.web_url + "/v1/inference", json=body,
                                    headers=stack.headers, timeout=60)
            return {"ok": response.status_code == 200 and response.json()["status"] == "succeeded"}

        def direct(session):
            response = session.post(engine + "/api/generate", json=direct_body, timeout=60)
            return {"ok": response.status_code == 200}

        runs: dict[str, list[dict]] = {"direct": [], "mes": [], "bare": []}
        for run in range(args.runs + 1):  # run 0 warms every path up and is dropped
            for name, call in (("direct", direct), ("mes", via_mes)):
                samples = run_load(call, label=f"{name} run {run}", concurrency=args.concurrency,
                                   count=args.count, rate=args.rate)
                if run:
                    runs[name].append(summarise(samples))
            bare = run_bare_client(stack, "latency", args, f"bare Celery run {run}")
            if run:
                runs["bare"].append(bare)
    keys = ("p50_ms", "p90_ms", "p99_ms", "throughput_rps")
    med = {name: {key: median_of(results, key) for key in keys} for name, results in runs.items()}
    added = {key: med["mes"][key] - med["direct"][key] for key in ("p50_ms", "p90_ms", "p99_ms")}
    ratio = {key: med["mes"][key] / med["bare"][key] for key in keys}
    print(table(f"overhead: {args.count} requests x {args.runs} runs, concurrency "
                f"{args.concurrency}, medians over runs",
                ["path", "p50 ms", "p90 ms", "p99 ms", "req/s"],
                [["engine direct", *[med["direct"][k] for k in keys]],
                 ["MES /v1/inference", *[med["mes"][k] for k in keys]],
                 ["bare Celery no-op", *[med["bare"][k] for k in keys]],
                 ["added by MES", added["p50_ms"], added["p90_ms"], added["p99_ms"], ""],
                 ["MES / bare Celery", *[ratio[k] for k in keys]]]))
    return {"scenario": "overhead", "medians": med, "added_ms": added, "ratio_to_bare": ratio,
            "runs": runs}


def ended_jobs(client) -> int:
    """Return how many jobs have ended on the stack so far, in any final state."""
    # Only the jobs_<final state> counters: the hash also counts submitted jobs, batches and
    # the jobs batches brought in, none of them ended jobs.
    counters = client.hmget(names.COUNTERS, [f"jobs_{state.value}" for state in FINAL_STATES])
    return sum(int(value or 0) for value in counters)


def _drain(stack: BenchStack, target: int, timeout_s: float) -> float:
    """Wait until `target` jobs have ended in total; return when the last one did."""
    client = stack.redis()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ended_jobs(client) >= target:
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"only part of {target} jobs ended within {timeout_s}s")


def _submit_batch(stack: BenchStack, args, label: str, body: dict) -> tuple[float, list]:
    def submit(session):
        response = session.post(stack.web_url + "/v1/jobs", json=body, headers=stack.headers,
                                timeout=60)
        return {"ok": response.status_code == 202}
    started = time.monotonic()
    samples = run_load(submit, label=label, concurrency=args.concurrency, count=args.count)
    return started, samples


def throughput(args) -> dict[str, Any]:
    """Measure completed jobs per second, end to end, for MES jobs and bare Celery no-ops."""
    results, bare_results = [], []
    with BenchStack(models=[{"id": MODEL, "timeout_s": 600, "max_tokens": 64,
                             "max_concurrency": 64}],
                    concurrency=args.workers, engine_args=ZERO_LATENCY) as stack:
        stack.start_redis()
        engine = stack.start_engine()
        stack.start_worker("w1", engine)
        start_bare_worker(stack, args.workers)
        stack.start_web()
        body = {"model": MODEL, "prompt": "Say hello", "options": {"max_tokens": 8}}
        ended = 0
        for run in range(args.runs + 1):
            started, samples = _submit_batch(stack, args, f"submit run {run}", body)
            submitted_at = time.monotonic()
            ended += args.count
            done_at = _drain(stack, ended, timeout_s=600)
            figures = batch_figures(args.count, started, submitted_at, done_at, samples)
            bare = run_bare_client(stack, "throughput", args, f"bare Celery run {run}")
            if run:
                results.append(figures)
                bare_results.append(bare)
            say(f"  run {run}: {figures['jobs_per_s']:.0f} jobs/s end to end, bare Celery "
                f"{bare['jobs_per_s']:.0f}")
    keys = ("submit_rps", "jobs_per_s")
    med = {key: median_of(results, key) for key in keys}
    bare_med = {key: median_of(bare_results, key) for key in keys}
    ratio = {key: med[key] / bare_med[key] for key in keys}
    print(table(f"throughput: {args.count} jobs x {args.runs} runs, {args.workers} worker "
                f"processes, {args.concurrency} submitting clients, medians",
                ["figure", "MES", "bare Celery no-op", "MES / bare"],
                [["submits accepted per s", med["submit_rps"], bare_med["submit_rps"],
                  ratio["submit_rps"]],
                 ["jobs completed per s (submit to last done)", med["jobs_per_s"],
                  bare_med["jobs_per_s"], ratio["jobs_per_s"]]]))
    return {"scenario": "throughput", "medians": med, "bare_medians": bare_med,
            "ratio_to_bare": ratio, "runs": results, "bare_runs": bare_results}


def scaleout(args) -> dict[str, Any]:
    """Compare 3 engines with 3 worker groups against 1 of each, the engine being the bottleneck."""
    engine_args = ("--simulated", "--token-ms", "20", "--prompt-ms", "0", "--load-ms", "0",
                   "--num-parallel", "1", "--response-tokens", "16")
    rates = {}
    for groups in (1, 3):
        runs = []
        with BenchStack(models=[{"id": MODEL, "timeout_s": 600, "max_tokens": 64,
                                 "max_concurrency": 64}],
                        concurrency=1, engine_args=engine_args) as stack:
            stack.start_redis()
            for group in range(groups):
                stack.start_worker(f"g{group}", stack.start_engine(), concurrency=1)
            stack.start_web()
            body = {"model": MODEL, "prompt": "Say hello"}
            ended = 0
            for run in range(args.runs):
                started, _ = _submit_batch(stack, args, f"{groups} group(s) run {run}", body)
                ended += args.count
                runs.append(args.count / (_drain(stack, ended, timeout_s=900) - started))
        rates[groups] = statistics.median(runs)
    print(table(f"scale-out: {args.count} jobs x {args.runs} runs, engine 20 ms/token x 16 "
                "tokens, 1 slot per engine, medians",
                ["groups (engine + worker)", "jobs/s", "x one group"],
                [[1, rates[1], 1.0], [3, rates[3], rates[3] / rates[1]]]))
    return {"scenario": "scaleout", "jobs_per_s": rates, "ratio": rates[3] / rates[1]}


def realmodel(args) -> dict[str, Any]:
    """Compare SmolLM2 through MES with the same prompt sent to the engine directly."""
    options = {"temperature": 0, "seed": 42}
    with BenchStack(models=[{"id": MODEL, "timeout_s": 600, "max_tokens": args.max_tokens,
                             "runner_options": {"num_ctx": 2048}, "options": options}],
                    concurrency=1, engine_args=("--num-ctx", "2048")) as stack:
        stack.start_redis()
        engine = stack.start_engine()
        stack.start_worker("w1", engine)
        stack.start_web()
        prompt = "Explain in a few sentences why the sky is blue."
        body = {"model": MODEL, "prompt": prompt, "options": {"max_tokens": args.max_tokens},
                "wait_s": 300}
        direct_body = {"model": MODEL, "prompt": prompt, "stream": True, "keep_alive": "5m",
                       "options": {**options, "num_predict": args.max_tokens, "num_ctx": 2048}}
        sides: dict[str, list[dict]] = {"direct": [], "mes": []}
        session = requests.Session()
        for run in range(args.runs + 1):
            for name in (("direct", "mes") if run % 2 else ("mes", "direct")):
                begin = time.monotonic()
                if name == "mes":
                    job = session.post(stack.web_url + "/v1/inference", json=body,
                                       headers=stack.headers, timeout=600).json()
                    tokens = job["result"]["usage"]["completion_tokens"]
                else:
                    final = {}
                    with session.post(engine + "/api/generate", json=direct_body, stream=True,
                                      timeout=600) as response:
                        for line in response.iter_lines():
                            final = requests.models.complexjson.loads(line) if line else final
                    tokens = final["eval_count"]
                elapsed = time.monotonic() - begin
                if run:  # run 0 loads the model and warms both paths
                    sides[name].append({"latency_s": elapsed, "tokens": tokens,
                                        "tokens_per_s": tokens / elapsed})
                say(f"  run {run} {name}: {tokens} tokens in {elapsed:.2f}s")
    med = {name: {key: statistics.median(r[key] for r in results)
                  for key in ("latency_s", "tokens", "tokens_per_s")}
           for name, results in sides.items()}
    ratio = med["mes"]["tokens_per_s"] / med["direct"]["tokens_per_s"]
    print(table(f"real model: {MODEL}, {args.runs} interleaved runs, max {args.max_tokens} "
                "tokens, temperature 0, medians",
                ["path", "latency s", "tokens", "tokens/s"],
                [["engine direct", *med["direct"].values()], ["MES /v1/inference", *med["mes"].values()],
                 ["MES / direct", "", "", ratio]]))
    return {"scenario": "realmodel", "medians": med, "ratio": ratio, "runs": sides}
