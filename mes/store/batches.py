"""Keep batches in Redis: a record with counts by state, the ordered job list, and the held jobs.

A batch is one hash (its record and its counts; the store's save script moves the counts as
its jobs change state and ends the batch with its last job), one list of its job ids in the
order of its requests, and an entry in its owner's index. Its jobs are held back per model
(mes.scheduling.release hands them to the workers as they free up), so the order in which
they run is decided when a worker is free, not when the batch was accepted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from mes.jobs import Job
from mes.store import names, scripts
from mes.store.events import EVENTS_CAP
from mes.store.held import held_score
from mes.store.jobs import RedisJobStore, StaleJob

COUNTED = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
# Jobs per script call at ingest. Under gevent the web's other requests run while a call
# waits for Redis, but Redis serves nobody else while the script runs, so a chunk is also the
# longest stretch other clients wait for (about 0.05 ms of Redis a job: 10 ms a chunk).
CHUNK = 200


@dataclass(frozen=True)
class BatchRecord:
    """Hold a batch as stored: its fields, counts by state and counts per model."""

    id: str
    owner: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    total: int
    counts: dict[str, int]
    models: dict[str, int]
    priority: str
    metadata: dict[str, Any]
    cancel_requested: bool
    extra: dict[str, Any]


def _record(raw: dict[str, str]) -> BatchRecord:
    def number(name):
        value = raw.get(name)
        return float(value) if value not in (None, "") else None
    return BatchRecord(
        id=raw["id"], owner=raw["owner"], status=raw.get("status", "queued"),
        created_at=float(raw["created_at"]), started_at=number("started_at"),
        finished_at=number("finished_at"), total=int(raw["total"]),
        counts={state: max(0, int(raw.get(state) or 0)) for state in COUNTED},
        models=json.loads(raw.get("models") or "{}"), priority=raw.get("priority", "batch"),
        metadata=json.loads(raw.get("metadata") or "{}"),
        cancel_requested=bool(raw.get("cancel_requested")),
        extra=json.loads(raw.get("extra") or "{}"))


class BatchStore:
    """Write and read batches; the job records themselves stay in the job store."""

    def __init__(self, jobs: RedisJobStore):
        self._jobs = jobs
        self._redis = jobs.redis
        self._create = self._redis.register_script(scripts.CREATE_BATCH_JOBS)

    def create(self, batch_id: str, owner: str, jobs: list[Job], *, created_at: float,
               priority: str, metadata: dict[str, Any], extra: dict[str, Any] | None = None,
               keep_s: int) -> None:
        """Save a batch and its jobs, held until workers are free, a chunk per script call."""
        models: dict[str, int] = {}
        for job in jobs:
            models[job.model] = models.get(job.model, 0) + 1
        key = names.batch(batch_id)
        pipe = self._redis.pipeline(transaction=False)
        # The record first: the save script counts into it as each job is created.
        pipe.hset(key, mapping={
            "id": batch_id, "owner": owner, "status": "queued", "created_at": repr(created_at),
            "total": len(jobs), "models": json.dumps(models), "priority": priority,
            "metadata": json.dumps(metadata), "extra": json.dumps(extra or {})})
        pipe.expire(key, keep_s)
        pipe.zadd(names.owner_batches(owner), {batch_id: int(created_at * 1000)})
        pipe.sadd(names.ACTIVE_BATCHES, batch_id)
        pipe.hincrby(names.COUNTERS, "batches_submitted", 1)
        pipe.hincrby(names.COUNTERS, "batch_jobs_ingested", len(jobs))
        pipe.expire(names.owner_batches(owner), keep_s)
        pipe.execute()
        for start in range(0, len(jobs), CHUNK):
            self._create_chunk(batch_id, owner, jobs[start:start + CHUNK], start, keep_s)

    def _create_chunk(self, batch_id: str, owner: str, chunk: list[Job], start: int,
                      keep_s: int) -> None:
        """Write a chunk of the batch's new jobs, held in request order, in one script call."""
        models: dict[str, int] = {}
        keys = [names.owner_jobs(owner), names.COUNTERS, names.batch(batch_id),
                names.batch_jobs(batch_id)]
        for job in chunk:
            if job.model not in models:
                models[job.model] = len(models) + 1
                keys += [names.queued_for_model(job.model), names.queued_interactive(job.model),
                         names.held(job.model)]
        args: list[object] = [len(models), len(chunk), EVENTS_CAP, keep_s]
        now = time.time()
        for offset, job in enumerate(chunk):
            keys += [names.job(job.id), names.job_events(job.id)]
            # Oldest batch first, and within a batch the order of its requests.
            args += [job.id, job.to_json(), self._jobs.ttl_for(job, now),
                     int(job.created_at * 1000), held_score(job, start + offset),
                     models[job.model], "interactive" if job.priority == "interactive"
                     else "batch", job.attempts]
        taken = self._create(keys=keys, args=args)
        if taken:
            raise StaleJob(chunk[taken - 1].id)

    def create_failed(self, batch_id: str, owner: str, *, created_at: float,
                      metadata: dict[str, Any], extra: dict[str, Any]) -> None:
        """Save a batch that failed validation: ended as `failed` when made, with no jobs.

        OpenAI's Batches API answers a bad input file with such a batch (its errors in
        `extra`), not with a refusal; it is kept for the batch TTL, like any ended batch.
        """
        key, index = names.batch(batch_id), names.owner_batches(owner)
        keep_s = int(self._jobs.batch_ttl_s)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping={
            "id": batch_id, "owner": owner, "status": "failed", "created_at": repr(created_at),
            "finished_at": repr(created_at), "total": 0, "models": "{}", "priority": "batch",
            "metadata": json.dumps(metadata), "extra": json.dumps(extra)})
        pipe.expire(key, keep_s)
        pipe.zadd(index, {batch_id: int(created_at * 1000)})
        pipe.ttl(index)
        ttl = pipe.execute()[-1]
        if ttl < keep_s:  # never shorten the index's life: it lists live batches too
            self._redis.expire(index, keep_s)

    def get(self, batch_id: str) -> BatchRecord | None:
        """Return a batch, or None if it never existed or has expired."""
        raw = self._redis.hgetall(names.batch(batch_id))
        return _record(raw) if raw.get("id") else None

    def list_owned(self, owner: str | None, *, limit: int,
                   before_ms: int | None = None) -> tuple[list[BatchRecord], int | None]:
        """Return an owner's batches newest first (every owner's for None), and the next cursor."""
        keys = ([names.owner_batches(owner)] if owner is not None else
                list(self._redis.scan_iter(match=names.owner_batches("*"), count=500)))
        high = f"({before_ms}" if before_ms is not None else "+inf"
        entries: list[tuple[str, float]] = []
        for key in keys:
            entries.extend(self._redis.zrevrangebyscore(key, high, "-inf", start=0, num=limit,
                                                        withscores=True))
        entries = sorted(entries, key=lambda item: item[1], reverse=True)[:limit]
        pipe = self._redis.pipeline(transaction=False)
        for batch_id, _ in entries:
            pipe.hgetall(names.batch(batch_id))
        found = [_record(raw) for raw in pipe.execute() if raw.get("id")]
        cursor = int(entries[-1][1]) if len(entries) == limit else None
        return found, cursor

    def job_ids(self, batch_id: str, start: int, count: int) -> list[str]:
        """Return up to `count` of the batch's job ids from position `start`, in request order."""
        return self._redis.lrange(names.batch_jobs(batch_id), start, start + count - 1)

    def final_jobs(self, batch_id: str, start: int = 0,
                   chunk: int = 500) -> Iterator[tuple[int, Job]]:
        """Yield (index, job) in request order from `start`, up to the first job not final."""
        index = start
        while True:
            ids = self.job_ids(batch_id, index, chunk)
            if not ids:
                return
            jobs = {job.id: job for job in self._jobs.get_many(ids)}
            for job_id in ids:
                job = jobs.get(job_id)
                if job is None or not job.status.is_final:
                    return
                yield index, job
                index += 1

    def active_summary(self) -> dict[str, Any]:
        """Return how many batches are in progress and their jobs by state, for status and metrics."""
        ids = list(self._redis.smembers(names.ACTIVE_BATCHES))
        pipe = self._redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hmget(names.batch(batch_id), *COUNTED)
        jobs = dict.fromkeys(COUNTED, 0)
        live = 0
        for values in pipe.execute():
            if values[0] is None and not any(values):
                continue  # expired without ending (its deadline passed long ago)
            live += 1
            for state, value in zip(COUNTED, values):
                jobs[state] += max(0, int(value or 0))
        return {"in_progress": live, "jobs": jobs}

    def bind_key(self, owner: str, key: str, binding: str, keep_s: int) -> str | None:
        """Bind an owner's Idempotency-Key to `binding` if free; else return what it is bound to."""
        name = names.batch_idempotency(owner, key)
        if self._redis.set(name, binding, nx=True, ex=keep_s):
            return None
        return self._redis.get(name) or self.bind_key(owner, key, binding, keep_s)

    def unbind_key(self, owner: str, key: str, binding: str) -> None:
        """Free an Idempotency-Key if it still holds `binding` (its batch was never made)."""
        name = names.batch_idempotency(owner, key)
        if self._redis.get(name) == binding:
            self._redis.delete(name)

    def request_cancel(self, batch_id: str) -> None:
        """Mark the batch as cancelled by its owner: once its jobs end it is `cancelled`."""
        self._redis.hset(names.batch(batch_id), "cancel_requested", "1")

    def unhold(self, jobs: Iterable[Job]) -> None:
        """Drop jobs from the held queues (they were cancelled, or handed to a worker)."""
        pipe = self._redis.pipeline(transaction=False)
        for job in jobs:
            pipe.zrem(names.held(job.model), job.id)
        pipe.execute()
