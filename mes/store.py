"""Keep job records in Redis, with atomic compare-and-set status changes."""

from __future__ import annotations

import dataclasses
from typing import Iterable

from mes.jobs import Job, JobStatus

FINAL_CHANNEL = "mes:events:final"

# Save a job if nobody changed it since we read it, and keep the indexes in step.
# KEYS[1] job hash, KEYS[2] queued zset of its queue, KEYS[3] queued zset of its model,
# KEYS[4] running set of its model, KEYS[5] owner's job index (zset)
# ARGV[1] version read ("" to create), ARGV[2] new status, ARGV[3] record JSON,
# ARGV[4] TTL seconds, ARGV[5] job id, ARGV[6] score (created, ms),
# ARGV[7] channel to publish the id on ("" unless the job became final), ARGV[8] model id,
# ARGV[9] on create only: the model's queue limit ("" for none); returns -2 when reached
# Also counts submissions and final states in the hashes mes:counters and mes:metrics:jobs
# (fixed keys, so this script assumes one Redis, not a cluster).
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'version')
if ARGV[1] == '' then
  if current then return -1 end
  if ARGV[9] ~= '' and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[9]) then return -2 end
elseif current ~= ARGV[1] then
  return -1
end
local version = tonumber(current or '0') + 1
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[3], 'version', version)
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[2] == 'queued' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[5])
end
if ARGV[2] == 'running' then
  redis.call('SADD', KEYS[4], ARGV[5])
else
  redis.call('SREM', KEYS[4], ARGV[5])
end
if ARGV[1] == '' then
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
end
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[7], ARGV[5])
  redis.call('HINCRBY', 'mes:counters', 'jobs_' .. ARGV[2], 1)
  redis.call('HINCRBY', 'mes:metrics:jobs', ARGV[8] .. '|' .. ARGV[2], 1)
end
if ARGV[1] == '' then
  redis.call('HINCRBY', 'mes:counters', 'jobs_submitted', 1)
end
return version
"""


class StaleJob(Exception):
    """Signal that the job changed since it was read."""


class QueueAtLimit(Exception):
    """Signal that the model's queue already holds its limit of jobs."""


def job_key(job_id: str) -> str:
    """Return the Redis key of a job record."""
    return f"mes:job:{job_id}"


class RedisJobStore:
    """Read and write job records; the API reads only this store, never Celery's results."""

    def __init__(self, redis, ttl_s: int):
        self.redis = redis
        self.ttl_s = ttl_s
        self._save = redis.register_script(_SAVE)

    def _keys(self, job: Job) -> list[str]:
        return [job_key(job.id), f"mes:queued:q:{job.queue}", f"mes:queued:m:{job.model}",
                f"mes:running:{job.model}", f"mes:owner:{job.owner}:jobs"]

    def _write(self, job: Job, expected: str, queue_limit: int | None = None) -> Job:
        version = self._save(
            keys=self._keys(job),
            args=[expected, job.status.value, job.to_json(), self.ttl_s, job.id,
                  int(job.created_at * 1000), FINAL_CHANNEL if job.status.is_final else "",
                  job.model, "" if queue_limit is None else queue_limit],
        )
        if version == -1:
            raise StaleJob(job.id)
        if version == -2:
            raise QueueAtLimit(job.model)
        return dataclasses.replace(job, version=int(version))

    def create(self, job: Job, queue_limit: int | None = None) -> Job:
        """Save a new job; fail if the id is taken, or if its model's queue is at the limit."""
        return self._write(job, "", queue_limit)

    def save(self, job: Job) -> Job:
        """Save a changed job read at `job.version`; raise StaleJob if it changed meanwhile."""
        return self._write(job, str(job.version))

    def get(self, job_id: str) -> Job | None:
        """Return the job, or None if it never existed or has expired."""
        data, version = self.redis.hmget(job_key(job_id), "data", "version")
        if data is None:
            return None
        return Job.from_json(data, int(version))

    def get_many(self, job_ids: Iterable[str]) -> list[Job]:
        """Return the jobs that still exist, in the order asked, in one round trip."""
        ids = list(job_ids)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(job_key(job_id), "data", "version")
        return [Job.from_json(data, int(version)) for data, version in pipe.execute()
                if data is not None]

    def queue_position(self, job: Job) -> int | None:
        """Return the 1-based place of a queued job in its queue, best effort."""
        if job.status is not JobStatus.QUEUED:
            return None
        rank = self.redis.zrank(f"mes:queued:q:{job.queue}", job.id)
        return None if rank is None else rank + 1

    def model_counts(self, model_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Return (queued, running) per model in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for model_id in model_ids:
            pipe.zcard(f"mes:queued:m:{model_id}")
            pipe.scard(f"mes:running:{model_id}")
        counts = pipe.execute()
        return {model_id: (counts[2 * i], counts[2 * i + 1]) for i, model_id in enumerate(model_ids)}

    def list_owned(self, owner: str | None, *, limit: int, before_ms: int | None = None,
                   status: str | None = None, model: str | None = None) -> tuple[list[Job], int | None]:
        """Return an owner's jobs newest first (every owner's for None), and the next cursor."""
        if owner is None:
            keys = [key for key in self.redis.scan_iter(match="mes:owner:*:jobs", count=500)]
        else:
            keys = [f"mes:owner:{owner}:jobs"]
        high = f"({before_ms}" if before_ms is not None else "+inf"
        found: list[Job] = []
        cursor = None
        # Filters apply after the index read, so read in pages until the page is full.
        while len(found) < limit:
            batch: list[tuple[str, float]] = []
            for key in keys:
                batch.extend(self.redis.zrevrangebyscore(key, high, "-inf", start=0,
                                                         num=limit * 2, withscores=True))
            if not batch:
                break
            batch.sort(key=lambda item: item[1], reverse=True)
            batch = batch[: limit * 2]
            for job in self.get_many(member for member, _ in batch):
                if status and job.status.value != status:
                    continue
                if model and job.model != model:
                    continue
                found.append(job)
            high = f"({int(batch[-1][1])}"
            if len(found) >= limit:
                break
        if len(found) > limit:
            found = found[:limit]
        if len(found) == limit:
            cursor = int(found[-1].created_at * 1000)
        return found, cursor

    def mark_used(self, model_id: str, ts: float, pipe=None) -> None:
        """Record when a model last served a job, and keep its recent completion times.

        With `pipe`, the commands join the caller's pipeline instead of running now.
        """
        own = pipe is None
        pipe = self.redis.pipeline(transaction=False) if own else pipe
        pipe.hset("mes:models:last_used", model_id, repr(ts))
        pipe.lpush(f"mes:done:{model_id}", repr(ts))
        pipe.ltrim(f"mes:done:{model_id}", 0, 99)
        if own:
            pipe.execute()

    def service_rate(self, model_id: str) -> float:
        """Return the model's recent completions per second (0 when unknown)."""
        times = [float(t) for t in self.redis.lrange(f"mes:done:{model_id}", 0, 99)]
        if len(times) < 2 or max(times) <= min(times):
            return 0.0
        return (len(times) - 1) / (max(times) - min(times))

    def last_used(self, model_ids: list[str]) -> dict[str, float]:
        """Return when each model last served a job, for those that have."""
        if not model_ids:
            return {}
        values = self.redis.hmget("mes:models:last_used", model_ids)
        return {model_id: float(value) for model_id, value in zip(model_ids, values)
                if value is not None}

    def request_cancel(self, job_id: str) -> None:
        """Flag a running job so its worker closes the stream."""
        self.redis.set(f"mes:cancel:{job_id}", "1", ex=self.ttl_s)

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether a cancel was asked for this job."""
        return bool(self.redis.exists(f"mes:cancel:{job_id}"))

    def claim_idempotency_key(self, owner: str, key: str, body_hash: str,
                              job_id: str) -> tuple[str, str] | None:
        """Bind a key to (hash, job id) if it is new; else return what it is bound to."""
        redis_key = f"mes:idem:{owner}:{key}"
        if self.redis.set(redis_key, f"{body_hash}:{job_id}", nx=True, ex=self.ttl_s):
            return None
        bound = self.redis.get(redis_key)
        if bound is None:  # expired between the two calls: claim it again
            return self.claim_idempotency_key(owner, key, body_hash, job_id)
        stored_hash, _, stored_id = bound.partition(":")
        return stored_hash, stored_id

    def discard(self, job: Job) -> None:
        """Delete a job that was saved but never dispatched, with its index entries."""
        keys = self._keys(job)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys[0])
        pipe.zrem(keys[1], job.id)
        pipe.zrem(keys[2], job.id)
        pipe.zrem(keys[4], job.id)
        pipe.execute()

    def counters(self) -> dict[str, int]:
        """Return service-wide counts: jobs submitted, and jobs ended in each final state."""
        return {key: int(value) for key, value in self.redis.hgetall("mes:counters").items()}
