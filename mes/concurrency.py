"""Limit how many jobs of one model run at once across every worker and host.

Queue routing bounds a family's concurrency per worker; this semaphore bounds a model's
concurrency globally. Each holder has a lease with a TTL in a sorted set (score = expiry);
the process's Renewer renews it, so the slot of a worker killed with -9 frees itself when its lease
runs out.
"""

from __future__ import annotations

import time

from mes.lease import worker_token
from mes.renewer import Renewer

# Take a slot if one is free, after dropping expired holders.
# KEYS[1] the model's holder zset; ARGV[1] limit, ARGV[2] token, ARGV[3] now (ms), ARGV[4] TTL (ms)
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
"""

# Push our expiry forward if we still hold a slot.
# KEYS[1] the model's holder zset; ARGV[1] token, ARGV[2] new expiry (ms), ARGV[3] TTL (ms)
_RENEW = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return 1
end
return 0
"""


def holders_key(model_id: str) -> str:
    """Return the Redis key of a model's slot holders."""
    return f"mes:slots:{model_id}"


class SlotScripts:
    """Hold the semaphore scripts, registered once per Redis client."""

    def __init__(self, redis):
        self.redis = redis
        self.acquire = redis.register_script(_ACQUIRE)
        self.renew = redis.register_script(_RENEW)


class ModelSlot:
    """Hold one of a model's concurrency slots, kept renewed until released."""

    def __init__(self, scripts: SlotScripts, renewer: Renewer, model_id: str, limit: int,
                 ttl_s: float):
        self._scripts = scripts
        self._redis = scripts.redis
        self._renewer = renewer
        self.key = holders_key(model_id)
        self.limit = limit
        self.ttl_ms = int(ttl_s * 1000)
        self.token = worker_token()
        self._handle: int | None = None

    def try_acquire(self) -> bool:
        """Take a slot now if one is free."""
        now_ms = int(time.time() * 1000)
        if not self._scripts.acquire(keys=[self.key],
                                     args=[self.limit, self.token, now_ms, self.ttl_ms]):
            return False
        self._handle = self._renewer.add(self._renew_once)
        return True

    def acquire(self, wait_s: float, poll_s: float = 0.05) -> bool:
        """Take a slot, waiting up to wait_s for one to free."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.try_acquire():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)

    def _renew_once(self) -> bool:
        return bool(self._scripts.renew(
            keys=[self.key], args=[self.token, int(time.time() * 1000) + self.ttl_ms, self.ttl_ms]))

    def release(self) -> None:
        """Give the slot back."""
        if self._handle is not None:
            self._renewer.remove(self._handle)
        try:
            self._redis.zrem(self.key, self.token)
        except Exception:  # noqa: BLE001 - the lease expires by itself
            pass


def slots_in_use(redis, model_id: str) -> int:
    """Return how many live holders a model's semaphore has."""
    now_ms = int(time.time() * 1000)
    return redis.zcount(holders_key(model_id), f"({now_ms}", "+inf")
