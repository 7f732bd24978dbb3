"""Hold a per-job lease in Redis while a worker runs it, renewed by a heartbeat.

Renewal runs at a third of the TTL, so two missed beats still keep the lease.
A live lease means a live worker is running the job, so a redelivered message must not
start it again. A lease whose worker died (-9, OOM, lost host) expires within its TTL,
and the job can then run again.
"""

from __future__ import annotations

import os
import socket
import uuid

from mes.renewer import Renewer

# Renew only our own lease. KEYS[1] lease key; ARGV[1] our token, ARGV[2] TTL in ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Release only our own lease. KEYS[1] lease key; ARGV[1] our token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(job_id: str) -> str:
    """Return the Redis key of a job's lease."""
    return f"mes:lease:{job_id}"


def worker_token() -> str:
    """Return a token naming this process and one run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseScripts:
    """Hold the lease scripts, registered once per Redis client."""

    def __init__(self, redis):
        self.redis = redis
        self.renew = redis.register_script(_RENEW)
        self.release = redis.register_script(_RELEASE)


class JobLease:
    """Acquire, keep renewed (through the process's Renewer), and release one job's lease."""

    def __init__(self, scripts: LeaseScripts, renewer: Renewer, job_id: str, ttl_s: float):
        self._scripts = scripts
        self._redis = scripts.redis
        self._renewer = renewer
        self.key = lease_key(job_id)
        self.ttl_ms = int(ttl_s * 1000)
        self.token = worker_token()
        self._handle: int | None = None
        self.lost = False

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; keep it renewed until released."""
        if not self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self._handle = self._renewer.add(self._renew_once)
        return True

    def remaining_s(self) -> float:
        """Return how long the current holder's lease still runs."""
        return max(0.0, self._redis.pttl(self.key) / 1000)

    def _renew_once(self) -> bool:
        if not self._scripts.renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            self.lost = True  # expired under us (a long stall); someone may rerun it
            return False
        return True

    def release(self) -> None:
        """Stop renewing and drop the lease if it is still ours."""
        if self._handle is not None:
            self._renewer.remove(self._handle)
        try:
            self._scripts.release(keys=[self.key], args=[self.token])
        except Exception:  # noqa: BLE001 - it expires by itself
            pass

    def __enter__(self) -> "JobLease":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def lease_alive(redis, job_id: str) -> bool:
    """Tell whether some worker holds the job's lease now."""
    return bool(redis.exists(lease_key(job_id)))
