"""`mes bench batch`: one native batch (POST /v1/batches) against the same jobs sent one request
at a time, on one private stack with the zero-latency simulated engine.

Each run, in this order:
- ingest: `--lines` requests posted as one JSON body; the seconds to the 202 and jobs/s,
  while another key polls GET /v1/jobs/{id} of its own ordinary job in a loop (its p50/p99
  during the ingest, and in the second before it for comparison);
- memory: Redis's used_memory before the ingest, once the batch is accepted (its jobs queued
  and held) and once it has finished (its jobs final), per job and per input byte;
- drain: the batch from its POST to its `finished_at`, in jobs/s; then the same jobs submitted
  one request at a time by `--concurrency` clients, as the throughput scenario does, from the
  first submit to the last job ended.
Run 0 (at most 1,000 lines) warms every path up and is dropped; the tables show medians over
`--runs`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from typing import Any

import psutil
import requests

from mes.bench.processes import wait_until
from mes.bench.report import batch_figures, median_of, percentile, table
from mes.bench.scenarios import MODEL, ZERO_LATENCY, _drain, _submit_batch, ended_jobs, say
from mes.bench.stack import BenchStack
from mes.store import names

READER = "reader"  # the other caller: a key of its own, with the jobs scope only
INGEST_S, INGEST_RATE, POLL_P99_MS = 2.0, 5000.0, 50.0  # issue 15's ingest targets
CLIENTS = 8  # submitting clients one at a time, unless --concurrency says otherwise
IDLE_S = 1.0  # the poller's lead before the ingest, for its figures at rest
WARMUP_LINES = 1000  # run 0, which warms every path up and is dropped


def add_arguments(parser) -> None:
    """Add the batch scenario's own flags to `mes bench`."""
    group = parser.add_argument_group("batch")
    group.add_argument("--lines", type=int, default=10_000,
                       help="batch: requests in the batch (and jobs sent one at a time)")
    group.add_argument("--drain-timeout-s", type=float, default=900,
                       help="batch: give up on a drain after this long")
    group.add_argument("--web-workers", type=int, default=2,
                       help="batch: web processes (1 puts the poller on the ingest's own)")


def job_body(index: int) -> dict[str, Any]:
    """Return one short request, the same in the batch and one at a time."""
    return {"model": MODEL, "prompt": f"Say hello {index}", "options": {"max_tokens": 8}}


def batch_body(lines: int) -> bytes:
    """Return the JSON body of a batch of `lines` requests."""
    requests_ = [{"custom_id": f"line-{i}", **job_body(i)} for i in range(lines)]
    return json.dumps({"requests": requests_}, separators=(",", ":")).encode()


class Poller:
    """Read one job again and again from a session of its own until stopped."""

    def __init__(self, url: str, headers: dict[str, str]):
        self._url = url
        self._headers = headers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.samples: list[tuple[float, float, bool]] = []  # (start, ms, ok)

    def _loop(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            began = time.perf_counter()
            try:
                ok = session.get(self._url, headers=self._headers, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            self.samples.append((began, (time.perf_counter() - began) * 1000, ok))
        session.close()

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the last request."""
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> dict[str, float]:
        """Return p50/p99 (ms), count and errors of the polls that started in [start, end)."""
        inside = [(ms, ok) for began, ms, ok in self.samples if start <= began < end]
        latencies = [ms for ms, ok in inside if ok]
        return {"polls": len(inside), "errors": len(inside) - len(latencies),
                "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                "max_ms": max(latencies, default=float("nan"))}


def used_memory(stack: BenchStack) -> int:
    """Return Redis's used_memory in bytes."""
    return int(stack.redis().info("memory")["used_memory"])


def cpu_seconds(stack: BenchStack) -> tuple[float, float]:
    """Return the CPU seconds the web processes and Redis have used so far.

    On a shared machine a wall time says as much about the neighbours as about MES; the CPU
    an ingest costs does not.
    """
    web = 0.0
    for proc in stack.procs:
        if proc.name == "web":
            master = psutil.Process(proc.pid)
            for process in [master, *master.children(recursive=True)]:
                times = process.cpu_times()
                web += times.user + times.system
    info = stack.redis().info("cpu")
    return web, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def reader_job(stack: BenchStack, reader_key: str) -> str:
    """Run one ordinary job as the other caller; return its id."""
    response = requests.post(stack.web_url + "/v1/inference", timeout=60,
                             headers={"Authorization": f"Bearer {reader_key}"},
                             json={**job_body(0), "wait_s": 30})
    response.raise_for_status()
    return response.json()["id"]


def ingest_and_drain(stack: BenchStack, args, lines: int, poll_url: str,
                     poll_headers: dict[str, str]) -> dict[str, float]:
    """Post a batch while the other caller polls; wait for it to finish; return the figures."""
    body = batch_body(lines)
    headers = {**stack.headers, "Content-Type": "application/json"}
    before = used_memory(stack)
    poller = Poller(poll_url, poll_headers)
    poller.start()
    time.sleep(IDLE_S)
    web_cpu, redis_cpu = cpu_seconds(stack)
    started_wall, started = time.time(), time.perf_counter()
    response = requests.post(stack.web_url + "/v1/batches", data=body, headers=headers,
                             timeout=300)
    accepted = time.perf_counter()
    web_cpu_after, redis_cpu_after = cpu_seconds(stack)
    poller.stop()
    if response.status_code != 202:
        raise RuntimeError(f"the batch was refused: {response.status_code} {response.text[:500]}")
    queued = used_memory(stack)
    batch_key = names.batch(response.json()["id"])
    client = stack.redis()
    wait_until(lambda: client.hget(batch_key, "finished_at"), args.drain_timeout_s,
               "the batch finished")
    finished_at = float(client.hget(batch_key, "finished_at"))
    failed = lines - int(client.hget(batch_key, "succeeded") or 0)
    finished = used_memory(stack)
    ingest_s = accepted - started
    idle, during = poller.between(started - IDLE_S, started), poller.between(started, accepted)
    return {"ingest_s": ingest_s, "ingest_jobs_per_s": lines / ingest_s,
            "ingest_web_cpu_s": web_cpu_after - web_cpu,
            "ingest_redis_cpu_s": redis_cpu_after - redis_cpu,
            "poll_idle_p50_ms": idle["p50_ms"], "poll_idle_p99_ms": idle["p99_ms"],
            "poll_p50_ms": during["p50_ms"], "poll_p99_ms": during["p99_ms"],
            "poll_max_ms": during["max_ms"], "polls": during["polls"],
            "poll_errors": during["errors"],
            "batch_jobs_per_s": lines / (finished_at - started_wall),
            "batch_not_succeeded": failed,
            "bytes_per_job_queued": (queued - before) / lines,
            "bytes_per_job_finished": (finished - before) / lines,
            "input_bytes_per_job": len(body) / lines}


def one_at_a_time(stack: BenchStack, args, lines: int, label: str) -> dict[str, float]:
    """Submit the same jobs with one POST /v1/jobs each and wait for the last to end."""
    ended = ended_jobs(stack.redis())
    load = argparse.Namespace(concurrency=load_clients(args), count=lines)
    body = {**job_body(0), "priority": "batch"}
    started, samples = _submit_batch(stack, load, label, body)
    submitted_at = time.monotonic()
    done_at = _drain(stack, ended + lines, timeout_s=args.drain_timeout_s)
    return batch_figures(lines, started, submitted_at, done_at, samples)


def batch(args) -> dict[str, Any]:
    """Run ingest, memory and drain `--runs` times on one stack; print medians and targets."""
    runs_wanted = getattr(args, "runs", 3)
    workers = getattr(args, "workers", 2)
    results, singles = [], []
    with BenchStack(models=[{"id": MODEL, "timeout_s": 600, "max_tokens": 64,
                             "max_concurrency": 64}],
                    concurrency=workers, engine_args=ZERO_LATENCY,
                    web_workers=getattr(args, "web_workers", 2)) as stack:
        reader_key = "reader-" + secrets.token_urlsafe(16)
        stack.settings["MES_API_KEYS"] += f",{READER}:{reader_key}:jobs"
        stack.start_redis()
        engine = stack.start_engine()
        stack.start_worker("w1", engine)
        stack.start_beat()
        stack.start_web()
        poll_url = f"{stack.web_url}/v1/jobs/{reader_job(stack, reader_key)}"
        poll_headers = {"Authorization": f"Bearer {reader_key}"}
        for run in range(runs_wanted + 1):
            lines = args.lines if run else min(args.lines, WARMUP_LINES)  # run 0 is dropped
            figures = ingest_and_drain(stack, args, lines, poll_url, poll_headers)
            say(f"  run {run} batch: accepted in {figures['ingest_s']:.2f} s "
                f"({figures['ingest_jobs_per_s']:.0f} jobs/s), poll p99 "
                f"{figures['poll_p99_ms']:.1f} ms, {figures['batch_jobs_per_s']:.0f} jobs/s "
                "end to end")
            single = one_at_a_time(stack, args, lines, f"one at a time, run {run}")
            say(f"  run {run} one at a time: {single['jobs_per_s']:.0f} jobs/s end to end")
            if run:
                results.append(figures)
                singles.append(single)
    med = {key: median_of(results, key) for key in results[0]}
    single_med = {key: median_of(singles, key) for key in ("submit_rps", "jobs_per_s", "errors")}
    input_bytes = med["input_bytes_per_job"]
    found = {"ingest_s_met": med["ingest_s"] <= INGEST_S,
             "ingest_rate_met": med["ingest_jobs_per_s"] >= INGEST_RATE,
             "poll_p99_met": med["poll_p99_ms"] < POLL_P99_MS}
    title = (f"batch: {args.lines} jobs x {runs_wanted} runs, {workers} worker processes, "
             f"{getattr(args, 'web_workers', 2)} web processes, zero-latency engine, medians")
    print(table(title + " (ingest)", ["figure", "value", "target"], [
        ["POST /v1/batches to its 202, s", med["ingest_s"], f"<= {INGEST_S:g}"],
        ["jobs accepted per s", med["ingest_jobs_per_s"], f">= {INGEST_RATE:g}"],
        ["CPU s used meanwhile: web / Redis",
         f"{med['ingest_web_cpu_s']:.2f} / {med['ingest_redis_cpu_s']:.2f}", ""],
        ["other caller's GET /v1/jobs/{id} p50 ms, during", med["poll_p50_ms"], ""],
        ["other caller's GET /v1/jobs/{id} p99 ms, during", med["poll_p99_ms"],
         f"< {POLL_P99_MS:g}"],
        ["the same p50 / p99 ms, the second before",
         f"{med['poll_idle_p50_ms']:.2f} / {med['poll_idle_p99_ms']:.2f}", ""]]))
    print(table(title + " (drain)", ["path", "jobs/s end to end", "submits/s"], [
        ["one POST /v1/batches", med["batch_jobs_per_s"], med["ingest_jobs_per_s"]],
        [f"one POST /v1/jobs each ({load_clients(args)} clients)", single_med["jobs_per_s"],
         single_med["submit_rps"]],
        ["batch / one at a time", med["batch_jobs_per_s"] / single_med["jobs_per_s"], ""]]))
    print(table(title + " (Redis memory)", ["figure", "queued", "finished"], [
        ["bytes per job", med["bytes_per_job_queued"], med["bytes_per_job_finished"]],
        ["bytes per input byte", med["bytes_per_job_queued"] / input_bytes,
         med["bytes_per_job_finished"] / input_bytes]]))
    print(f"input: {input_bytes:.0f} bytes of JSON per request; targets: " + json.dumps(found))
    return {"scenario": "batch", "medians": med, "one_at_a_time": single_med, "targets": found,
            "runs": results, "one_at_a_time_runs": singles}


def load_clients(args) -> int:
    """Return how many clients submit one at a time (mes bench's --concurrency)."""
    return getattr(args, "concurrency", CLIENTS)
