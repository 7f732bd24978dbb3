"""Keep the residency record of one backend: which models MES let it load, and when."""

from __future__ import annotations

from mes.store import names
from mes.store.leases import LeaseStore


class ResidencyRecords:
    """Read and write one backend's admitted models, its decision lock and model activity."""

    def __init__(self, redis, backend: str, lock_timeout_s: float, lock_wait_s: float = 10):
        self._redis = redis
        self._leases = LeaseStore(redis)
        self._key = names.resident(backend)
        self._lock_name = names.residency_lock(backend)
        self._lock_timeout_s = lock_timeout_s
        self._lock_wait_s = lock_wait_s

    def lock(self):
        """Return the backend's decision lock (a context manager; raises LockError on timeout)."""
        return self._redis.lock(self._lock_name, timeout=self._lock_timeout_s,
                                blocking_timeout=self._lock_wait_s)

    def admitted_since(self, since: float) -> set[str]:
        """Return the models admitted at or after `since`."""
        return set(self._redis.zrangebyscore(self._key, since, "+inf"))

    def admitted(self) -> dict[str, float]:
        """Return every admitted model with when it was last admitted."""
        return dict(self._redis.zrange(self._key, 0, -1, withscores=True))

    def admit(self, model_id: str, now: float, evicted: str | None = None) -> None:
        """Record a model as admitted now, and an evicted one as gone, in one trip."""
        pipe = self._redis.pipeline(transaction=False)
        if evicted is not None:
            pipe.zrem(self._key, evicted)
        pipe.zadd(self._key, {model_id: now})
        pipe.execute()

    def busy(self, model_id: str) -> bool:
        """Tell whether a live job holds a slot on the model.

        Every running job holds a slot, renewed by its worker. Not the running set: a job
        whose worker was killed stays in it until another worker runs it again, and would
        keep its model loaded, and every other model out, while no worker is left to run it.
        """
        return self._leases.slots_in_use(model_id) > 0
