"""Keep the short-lived records that say who is working: job leases and model slots.

A lease (one key per job, with a TTL) means a live worker runs the job. A model's slots
are a sorted set of holders scored by expiry: a semaphore whose holders free themselves
when their worker dies. Both are taken inside the store's claim and save scripts; this
module renews, releases and counts them.
"""

from __future__ import annotations

import time

from mes.store import names, scripts


class LeaseStore:
    """Renew, release and read leases and slots."""

    def __init__(self, redis):
        self._redis = redis
        self._renew_lease = redis.register_script(scripts.RENEW_LEASE)
        self._release_lease = redis.register_script(scripts.RELEASE_LEASE)
        self._renew_slot = redis.register_script(scripts.RENEW_SLOT)

    def renew_lease(self, job_id: str, token: str, ttl_ms: int) -> bool:
        """Push our lease's expiry forward; False if it is no longer ours."""
        return bool(self._renew_lease(keys=[names.lease(job_id)], args=[token, ttl_ms]))

    def release_lease(self, job_id: str, token: str) -> None:
        """Drop the lease if it is still ours."""
        self._release_lease(keys=[names.lease(job_id)], args=[token])

    def lease_alive(self, job_id: str) -> bool:
        """Tell whether some worker holds the job's lease now."""
        return bool(self._redis.exists(names.lease(job_id)))

    def renew_slot(self, model_id: str, token: str, ttl_ms: int) -> bool:
        """Push our slot's expiry forward; False if we no longer hold it."""
        return bool(self._renew_slot(keys=[names.slots(model_id)],
                                     args=[token, int(time.time() * 1000) + ttl_ms, ttl_ms]))

    def release_slot(self, model_id: str, token: str) -> None:
        """Give a slot back."""
        self._redis.zrem(names.slots(model_id), token)

    def slots_in_use(self, model_id: str) -> int:
        """Return how many live holders a model's semaphore has."""
        now_ms = int(time.time() * 1000)
        return self._redis.zcount(names.slots(model_id), f"({now_ms}", "+inf")


def release_commands(job_id: str, lease_token: str, model_id: str | None,
                     slot_token: str | None) -> list[tuple]:
    """Return the commands that release a lease (and a slot), to ride along with a save."""
    commands: list[tuple] = [("DELIFEQ", names.lease(job_id), lease_token)]
    if model_id is not None and slot_token is not None:
        commands.append(("ZREM", names.slots(model_id), slot_token))
    return commands
