"""Measure memory: process RSS, Redis bytes per finished job, and 100,000 queued jobs."""

from __future__ import annotations

import json
import signal
import statistics
import time
from typing import Any

import psutil

from mes.bench.load import run_load
from mes.bench.report import summarise, table
from mes.bench.scenarios import MODEL, ZERO_LATENCY, _drain, _submit_batch, say
from mes.bench.stack import BenchStack
from mes.store import names


def rss_mb(pid: int) -> float:
    """Return the resident memory of a process and its children, in MiB."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1_048_576


def memory(args) -> dict[str, Any]:
    """Report RSS per process, Redis bytes per finished job, and the cost of a deep queue."""
    with BenchStack(models=[{"id": MODEL, "timeout_s": 1500, "max_tokens": 64,
                             "max_concurrency": 64}],
                    concurrency=args.workers, engine_args=ZERO_LATENCY) as stack:
        stack.start_redis()
        engine = stack.start_engine()
        worker = stack.start_worker("w1", engine)
        stack.start_web()
        client = stack.redis()
        body = {"model": MODEL, "prompt": "Say hello", "options": {"max_tokens": 8}}
        _submit_batch(stack, args, "warm-up", body)
        _drain(stack, args.count, timeout_s=600)
        client.memory_purge() if hasattr(client, "memory_purge") else None
        before = client.info("memory")["used_memory"]
        finished = args.count * 4
        _submit_batch(stack, type("A", (), {"concurrency": args.concurrency, "count": finished}),
                      "finished jobs", body)
        _drain(stack, args.count + finished, timeout_s=900)
        after = client.info("memory")["used_memory"]
        per_job = (after - before) / finished
        sample = [json.loads(raw) for raw in (client.hget(key, "data")
                                               for key in list(client.scan_iter(names.job("*"), count=1000))[:200])
                  if raw]
        payload = statistics.mean(len(json.dumps(job["request"])) + len(job["result"]["text"])
                                  + len(json.dumps(job["metadata"])) for job in sample)
        record = statistics.mean(len(json.dumps(job)) for job in sample)
        web_rss = rss_mb(next(p for p in stack.procs if p.name == "web").pid)
        worker_rss = rss_mb(worker.pid)
        # A deep queue: stop the worker so submissions stay queued.
        worker.stop(signal.SIGTERM)
        queued_before = client.info("memory")["used_memory"]
        started = time.monotonic()
        deep = type("A", (), {"concurrency": max(args.concurrency, 8), "count": args.queued})
        _, samples = _submit_batch(stack, deep, f"queue {args.queued}", body)
        submit_s = time.monotonic() - started
        queued_after = client.info("memory")["used_memory"]

        def models(session):
            return {"ok": session.get(stack.web_url + "/v1/models", headers=stack.headers,
                                      timeout=30).status_code == 200}
        listing = summarise(run_load(models, label="GET /v1/models", concurrency=1, count=50))
        queue_len = client.llen("mes.bench")
    figures = {"web_rss_mib": web_rss, "worker_rss_mib": worker_rss,
               "redis_bytes_per_finished_job": per_job, "payload_bytes": payload,
               "record_json_bytes": record, "overhead_beyond_payload": per_job - payload,
               "queued_jobs": args.queued, "queued_in_broker": queue_len,
               "redis_bytes_per_queued_job": (queued_after - queued_before) / args.queued,
               "queue_submit_rps": args.queued / submit_s,
               "submit_errors": sum(1 for s in samples if not s.ok),
               "models_p50_ms_with_queue": listing["p50_ms"],
               "models_p99_ms_with_queue": listing["p99_ms"]}
    print(table("memory", ["figure", "value"], [[k, v] for k, v in figures.items()]))
    say("  (RSS includes each process's children: gunicorn workers, Celery pool processes)")
    return {"scenario": "memory", **figures}
