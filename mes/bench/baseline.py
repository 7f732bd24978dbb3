"""Measure a bare Celery no-op round trip beside MES, on the same private Redis.

mes/ never imports celery (tests/test_layering.py), so the bare Celery side lives in
workers/baseline.py and runs as processes that this module starts: one worker
(`python -m workers.baseline worker`) for the whole scenario, and one short-lived client
per measured run (`python -m workers.baseline latency|throughput`) that sends the no-op with
`send_task`, waits for it through Celery's Redis result backend (the worker SETs and
PUBLISHes the result, the client is woken by pub/sub, as MES's web waiter is), and prints
its figures as one JSON line. This module only starts those processes and reads the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys

import redis as redis_lib

from mes.bench.processes import Proc, wait_until
from mes.bench.stack import BenchStack

NOOP_TASK = "mes.bench.noop"
QUEUE = "bench.baseline"
# The bare worker sets this key from its worker_ready signal.
READY_KEY = "bench:baseline:ready"


def start_bare_worker(stack: BenchStack, concurrency: int) -> Proc:
    """Start the bare Celery worker on the stack's Redis and wait until it is ready."""
    command = [sys.executable, "-m", "workers.baseline", "worker", "--concurrency", str(concurrency)]
    proc = Proc("worker-baseline", command, stack.env(), stack.log_dir)
    stack.procs.append(proc)  # stack.stop() ends it with the rest
    client = redis_lib.Redis.from_url(stack.redis_url)
    wait_until(lambda: client.exists(READY_KEY), 60, "bare Celery worker", proc)
    return proc


def run_bare_client(stack: BenchStack, mode: str, args, label: str) -> dict:
    """Run one measured batch of the bare client ('latency' or 'throughput'); return its figures."""
    command = [sys.executable, "-m", "workers.baseline", mode, "--count", str(args.count),
               "--concurrency", str(args.concurrency), "--label", label]
    if mode == "latency" and args.rate:
        command += ["--rate", str(args.rate)]
    # stderr (the progress line) goes straight to ours; stdout carries the figures.
    done = subprocess.run(command, env=stack.env(), stdout=subprocess.PIPE, text=True,
                          timeout=900, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
