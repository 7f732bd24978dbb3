"""Run the bare Celery baseline of `mes bench`: a no-op task, its worker and its clients.

`python -m workers.baseline worker --concurrency N` runs the worker;
`python -m workers.baseline latency|throughput --count N` runs one measured batch and prints
its figures as one JSON line. mes/bench/baseline.py starts these processes (mes/ may not
import celery). The broker settings are MES's own (mes.queueing.celery_config); only the
no-op keeps its result, because the Redis result backend (SET and PUBLISH by the worker,
pub/sub wake-up in the client) is the bare equivalent of MES's job record and waiter. The
throughput client polls those result keys instead, as the MES side polls its counters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import redis as redis_lib
from celery import Celery, signals

from mes.bench.baseline import NOOP_TASK, QUEUE, READY_KEY
from mes.bench.load import run_load
from mes.bench.report import batch_figures, summarise
from mes.queueing import BROKER_STEPS, celery_config
from mes.settings import Settings

PRIORITY = BROKER_STEPS["interactive"]  # the lane MES's synchronous jobs take


def make_baseline_celery(settings: Settings) -> Celery:
    """Create a Celery app with MES's broker settings and one no-op task."""
    app = Celery("mes-baseline", set_as_current=True)
    app.conf.update(celery_config(settings))

    @app.task(name=NOOP_TASK, ignore_result=False)
    def noop() -> None:
        """Do nothing; the result backend records that it ran."""

    @signals.worker_ready.connect(weak=False)
    def say_ready(sender=None, **kwargs):
        """Tell the bench, through Redis, that this worker consumes its queue."""
        redis_lib.Redis.from_url(settings.redis_url).set(READY_KEY, "1")

    return app


def send_noop(app: Celery):
    """Queue one no-op the way MES's web queues a job, and return its AsyncResult."""
    return app.send_task(NOOP_TASK, queue=QUEUE, priority=PRIORITY)


def warm_up(app: Celery, rounds: int = 5) -> None:
    """Open the broker and result connections before anything is timed."""
    for _ in range(rounds):
        send_noop(app).get(timeout=60)


def attempt(action) -> dict:
    """Run one client action; count an exception as an error, like a failed HTTP request."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - any failure is one error in the figures
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True}


def latency(app: Celery, args) -> dict:
    """Time no-op round trips, one at a time per client, from send to result."""
    warm_up(app)
    samples = run_load(lambda session: attempt(lambda: send_noop(app).get(timeout=60)),
                       label=args.label, concurrency=args.concurrency, count=args.count,
                       rate=args.rate)
    return summarise(samples)


def wait_for_results(app: Celery, sent: list, timeout_s: float = 600.0) -> float:
    """Poll the no-ops' result keys, oldest first, until all are stored; return when."""
    # Polled every 20 ms, as the MES side polls its counters (scenarios._drain); the oldest
    # 100 only, because the no-ops end roughly in the order they were sent.
    pending = [app.backend.get_key_for_task(result.id) for result in sent]
    deadline = time.monotonic() + timeout_s
    while True:
        head = pending[:100]
        stored = app.backend.client.mget(head)
        pending = [key for key, value in zip(head, stored) if value is None] + pending[100:]
        if not pending:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} no-ops had not run after {timeout_s}s")
        time.sleep(0.02)


def throughput(app: Celery, args) -> dict:
    """Send `count` no-ops from client threads and return jobs/s until the last one ran."""
    sent: list = []
    warm_up(app)
    started = time.monotonic()
    samples = run_load(lambda session: attempt(lambda: sent.append(send_noop(app))),
                       label=args.label, concurrency=args.concurrency, count=args.count)
    submitted_at = time.monotonic()
    done_at = wait_for_results(app, sent)
    return batch_figures(args.count, started, submitted_at, done_at, samples)


def main(argv: list[str]) -> int:
    """Run the bare worker, or one measured batch whose figures go to stdout as JSON."""
    parser = argparse.ArgumentParser(prog="python -m workers.baseline")
    parser.add_argument("mode", choices=("worker", "latency", "throughput"))
    parser.add_argument("--concurrency", type=int, default=1, help="worker: -c; clients: threads")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--label", default="bare Celery")
    args = parser.parse_args(argv)
    app = make_baseline_celery(Settings.from_env(os.environ))
    if args.mode == "worker":
        # The flags of mes.stack.worker_command; WARNING because MES's bench workers log at
        # warning too, so neither writes a line per task.
        app.worker_main(["worker", "-Q", QUEUE, "-c", str(args.concurrency),
                         "-n", "baseline@%h", "--loglevel", "WARNING"])
        return 0
    figures = (latency if args.mode == "latency" else throughput)(app, args)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
