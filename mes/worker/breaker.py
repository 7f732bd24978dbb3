"""Share one circuit breaker per backend across every worker, in Redis.

After `threshold` failures in a row that point at a broken backend (unreachable, timing
out, 5xx), the breaker opens for `cooldown_s`: jobs wait in the queue instead of spending
their attempts on a backend that is down. After the cooldown the next call probes it; a
success closes the breaker, a failure opens it again at once.
"""

from __future__ import annotations

import time

from mes.errors import BackendServerError, BackendTimeout, BackendUnavailable, MESError
from mes.store import names
from mes.store.health import breaker_state

TRIPPING = (BackendUnavailable, BackendTimeout, BackendServerError)

# Count a failure and open the breaker at the threshold.
# KEYS[1] breaker hash; ARGV[1] threshold, ARGV[2] now (s), ARGV[3] cooldown (s)
_FAIL = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'open_until', tonumber(ARGV[2]) + tonumber(ARGV[3]))
end
redis.call('EXPIRE', KEYS[1], 86400)
return failures
"""


CACHE_S = 0.5


class CircuitBreaker:
    """Open after repeated backend failures; close on the first success."""

    def __init__(self, redis, name: str, *, threshold: int, cooldown_s: float):
        self._redis = redis
        self.name = name
        self.key = names.breaker(name)
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._fail = redis.register_script(_FAIL)
        self._cached: tuple[float, int, float] | None = None  # (read at, failures, open_until)

    def _state(self) -> tuple[int, float]:
        # Every job asks before calling the backend; half a second of staleness costs at
        # most a few calls to a backend that just broke, and saves a round trip per job.
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > CACHE_S:
            failures, open_until = self._redis.hmget(self.key, "failures", "open_until")
            self._cached = (now, int(failures or 0), float(open_until or 0))
        return self._cached[1], self._cached[2]

    def observe(self, failures: int, open_until: float) -> None:
        """Take a state read elsewhere (the claim script reads it in passing) as fresh."""
        self._cached = (time.monotonic(), failures, open_until)

    def wait_s(self, now: float) -> float:
        """Return how long calls must wait (0 when the breaker lets them through)."""
        return max(0.0, self._state()[1] - now)

    def record(self, error: MESError | None, now: float) -> None:
        """Count a call's outcome: None for success, else the error it raised."""
        if error is None:
            # Most calls succeed with the breaker closed: write only when failures are stored.
            if self._state()[0]:
                self._redis.delete(self.key)
                self._cached = None
        elif isinstance(error, TRIPPING):
            self._fail(keys=[self.key], args=[self.threshold, now, self.cooldown_s])
            self._cached = None

    def state(self, now: float) -> dict:
        """Describe the breaker for /ready and /v1/status."""
        return breaker_state(self._redis, self.name, now)
