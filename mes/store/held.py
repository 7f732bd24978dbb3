"""Keep the jobs MES holds back per model, and measure a family's room to take more."""

from __future__ import annotations

import dataclasses

from mes.jobs import Job, JobStatus
from mes.store import names
from mes.store.health import count_workers, queue_depths

LOCK_MS = 5000
# A held job's score is its creation time (ms) plus, for batch work, this offset: one sorted
# set per model then yields interactive work first and each lane oldest first. It is larger
# than any epoch in ms and small enough to stay exact in a double.
BATCH_OFFSET = 2 ** 42


def held_score(job: Job, order: int = 0) -> int:
    """Return a job's place in its model's held queue (`order` keeps a batch's own order)."""
    base = int(job.created_at * 1000) + order
    return base if job.priority == "interactive" else base + BATCH_OFFSET

# Take a model's oldest held jobs and enter them in their family's queue index in one step,
# so a releaser that dies before sending them leaves queued jobs the reaper will send.
# KEYS[1] the model's held zset, KEYS[2] the family's queued zset; ARGV[1] how many.
_TAKE = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local ids = {}
for i = 1, #popped, 2 do
  redis.call('ZADD', KEYS[2], popped[i + 1], popped[i])
  ids[#ids + 1] = popped[i]
end
return ids
"""

# Give a job the deadline it runs under, if it is still queued and unchanged since it was read.
# KEYS[1] the job's hash; ARGV[1] the version read, ARGV[2] its record JSON. Returns the new
# version, or -1 if the job changed meanwhile.
_RESTAMP = """
local current, status = unpack(redis.call('HMGET', KEYS[1], 'version', 'status'))
if current ~= ARGV[1] or status ~= 'queued' then return -1 end
local version = tonumber(current) + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version)
return version
"""


class HeldQueues:
    """Pop, count and put back held jobs; lock a family while one releaser works on it."""

    def __init__(self, redis):
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._restamp = redis.register_script(_RESTAMP)

    def lock(self, queue: str, token: str) -> bool:
        """Take the family's release lock if free (it expires by itself)."""
        return bool(self._redis.set(names.release_lock(queue), token, nx=True, px=LOCK_MS))

    def unlock(self, queue: str, token: str) -> None:
        """Give the lock back if it is still ours."""
        key = names.release_lock(queue)
        if self._redis.get(key) == token:
            self._redis.delete(key)

    def counts(self, model_ids: list[str]) -> dict[str, int]:
        """Return how many jobs each model has held, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for model_id in model_ids:
            pipe.zcard(names.held(model_id))
        return dict(zip(model_ids, (int(n) for n in pipe.execute())))

    def lanes(self, model_ids: list[str]) -> dict[str, dict[str, tuple[int, float | None]]]:
        """Return per model and lane (interactive, batch): held jobs and the oldest's creation (s)."""
        pipe = self._redis.pipeline(transaction=False)
        for model_id in model_ids:
            key = names.held(model_id)
            pipe.zcount(key, "-inf", f"({BATCH_OFFSET}")
            pipe.zrangebyscore(key, "-inf", f"({BATCH_OFFSET}", start=0, num=1, withscores=True)
            pipe.zcount(key, BATCH_OFFSET, "+inf")
            pipe.zrangebyscore(key, BATCH_OFFSET, "+inf", start=0, num=1, withscores=True)
        replies = pipe.execute()
        found = {}
        for i, model_id in enumerate(model_ids):
            n_i, first_i, n_b, first_b = replies[4 * i:4 * i + 4]
            found[model_id] = {
                "interactive": (int(n_i), first_i[0][1] / 1000 if first_i else None),
                "batch": (int(n_b), (first_b[0][1] - BATCH_OFFSET) / 1000 if first_b else None)}
        return found

    def room(self, queue: str, model_ids: list[str], concurrency: int, prefetch: int) -> int:
        """Return how many more jobs the family's live workers can take soon."""
        workers = count_workers(self._redis, [queue])[queue]
        pipe = self._redis.pipeline(transaction=False)
        for model_id in model_ids:
            pipe.scard(names.running(model_id))
        running = sum(int(n) for n in pipe.execute())
        waiting = queue_depths(self._redis, [queue])[queue]["depth"]
        return workers * concurrency * prefetch - running - waiting

    def take(self, model_id: str, queue: str, count: int) -> list[str]:
        """Take up to `count` of a model's oldest held job ids, entering them in the queue."""
        return list(self._take(keys=[names.held(model_id), names.queued_in_queue(queue)],
                               args=[count]))

    def put_back(self, jobs: list[Job]) -> None:
        """Hold jobs again (their release failed), at the front of their model's queue."""
        pipe = self._redis.pipeline(transaction=False)
        for job in jobs:
            pipe.zadd(names.held(job.model), {job.id: held_score(job)})
            pipe.zrem(names.queued_in_queue(job.queue), job.id)
        pipe.execute()

    def start_clocks(self, jobs: list[Job], now: float) -> list[Job]:
        """Count each batch job's timeout from `now`, as it is handed over; return the jobs.

        A job that changed since it was read (cancelled, say) comes back as it now is.
        """
        stamped = [(i, job.evolve(deadline_at=job.run_deadline(now)))
                   for i, job in enumerate(jobs) if job.status is JobStatus.QUEUED
                   and job.run_deadline(now) != job.deadline_at]
        if not stamped:
            return jobs
        pipe = self._redis.pipeline(transaction=False)
        for _, job in stamped:
            self._restamp(keys=[names.job(job.id)], args=[job.version, job.to_json()],
                          client=pipe)
        found = list(jobs)
        stale = []
        for (i, job), version in zip(stamped, pipe.execute()):
            if int(version) < 0:
                stale.append(i)
            else:
                found[i] = dataclasses.replace(job, version=int(version))
        if stale:
            pipe = self._redis.pipeline(transaction=False)
            for i in stale:
                pipe.hmget(names.job(jobs[i].id), "data", "version")
            for i, (data, version) in zip(stale, pipe.execute()):
                found[i] = jobs[i] if data is None else Job.from_json(data, int(version))
        return found
