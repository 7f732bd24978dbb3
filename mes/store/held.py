"""Keep the jobs MES holds back per model, and measure a family's room to take more."""

from __future__ import annotations

from mes.jobs import Job
from mes.store import names
from mes.store.health import count_workers, queue_depths

LOCK_MS = 5000

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


class HeldQueues:
    """Pop, count and put back held jobs; lock a family while one releaser works on it."""

    def __init__(self, redis):
        self._redis = redis
        self._take = redis.register_script(_TAKE)

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
            pipe.zadd(names.held(job.model), {job.id: 0})
            pipe.zrem(names.queued_in_queue(job.queue), job.id)
        pipe.execute()
