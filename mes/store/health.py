"""Read and write the service's shared health records: worker heartbeats, breakers, queue depths.

Both sides use them: workers write their heartbeats and breaker failures, while the web's
/ready, /v1/status and /metrics and the reaper read them. Keeping the reads here means the
intake side never imports worker code to learn whether the workers are alive.

Heartbeats live in one sorted set per queue (member: the worker's hostname, score: when its
beat expires), so counting live workers is one ZCOUNT per queue, never a keyspace SCAN.
"""

from __future__ import annotations

import time

from mes.queueing import BROKER_STEPS, PRIORITY_SEP, broker_lists
from mes.store import names

class Heartbeats:
    """Record which workers consume which queues, and count the live ones."""

    def __init__(self, redis):
        self._redis = redis

    def beat(self, queues: list[str], hostname: str, ttl_s: float, now: float | None = None) -> None:
        """Mark a worker alive on each queue for ttl_s more seconds, in one round trip."""
        now = time.time() if now is None else now
        pipe = self._redis.pipeline(transaction=False)
        for queue in queues:
            key = names.workers(queue)
            pipe.zremrangebyscore(key, "-inf", now)  # the dead leave, so the set stays small
            pipe.zadd(key, {hostname: now + ttl_s})
            pipe.expire(key, max(60, int(10 * ttl_s)))
        pipe.execute()

    def leave(self, queues: list[str], hostname: str) -> None:
        """Remove a worker at once, so /ready sees it go without waiting for its TTL."""
        pipe = self._redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zrem(names.workers(queue), hostname)
        pipe.execute()


def count_workers(redis, queues: list[str], now: float | None = None) -> dict[str, int]:
    """Return how many live workers consume each queue, in one round trip."""
    now = time.time() if now is None else now
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        pipe.zcount(names.workers(queue), f"({now}", "+inf")
    return {queue: int(count) for queue, count in zip(queues, pipe.execute())}


def breaker_state(redis, backend: str, now: float) -> dict:
    """Describe a backend's circuit breaker for /ready and /v1/status."""
    failures, open_until = redis.hmget(names.breaker(backend), "failures", "open_until")
    is_open = bool(open_until) and float(open_until) > now
    return {"state": "open" if is_open else "closed", "failures": int(failures or 0),
            "retry_in_s": round(float(open_until) - now, 1) if is_open else 0}


def queue_depths(redis, queues: list[str]) -> dict[str, dict[str, int]]:
    """Return how many messages wait in each Celery queue, per priority lane and in all.

    Celery's Redis transport keeps one list per priority step: `mes.<family>` for
    interactive jobs and `mes.<family>:9` for batch ones (mes.queueing.broker_lists).
    KEDA scales workers on the same lists.
    """
    lane_of = {step: lane for lane, step in BROKER_STEPS.items()}
    pipe = redis.pipeline(transaction=False)
    for queue in queues:
        for name in broker_lists(queue):
            pipe.llen(name)
    lengths = iter(pipe.execute())
    depths = {}
    for queue in queues:
        per_lane = {}
        for name in broker_lists(queue):
            step = 0 if name == queue else int(name.rsplit(PRIORITY_SEP, 1)[1])
            per_lane[lane_of.get(step, str(step))] = int(next(lengths))
        depths[queue] = {"depth": sum(per_lane.values()), "lanes": per_lane}
    return depths


def worker_alive(redis, queue: str, hostname: str, now: float | None = None) -> bool:
    """Tell whether one named worker's heartbeat on a queue is current."""
    expires = redis.zscore(names.workers(queue), hostname)
    return expires is not None and expires > (time.time() if now is None else now)
