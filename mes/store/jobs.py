"""Keep job records in Redis, with atomic compare-and-set status changes."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from mes.jobs import Job, JobStatus
from mes.store import names, scripts
from mes.store.events import EVENTS_CAP, EventLog
from mes.store.held import held_score
from mes.store.leases import LeaseStore
from mes.store.residency import ResidencyRecords
from mes.store.names import FINAL_CHANNEL  # noqa: F401 - the waiter and tests listen on it

log = logging.getLogger(__name__)

Command = Sequence[object]


class StaleJob(Exception):
    """Signal that the job changed since it was read."""


class QueueAtLimit(Exception):
    """Signal that the model's queue already holds its limit of jobs."""


class SlotBusy(Exception):
    """Signal that every concurrency slot of the job's model is taken."""


class KeyBound(Exception):
    """Signal that an Idempotency-Key is already bound; `.body_hash` and `.job_id` say to what."""

    def __init__(self, body_hash: str, job_id: str):
        super().__init__(body_hash, job_id)
        self.body_hash = body_hash
        self.job_id = job_id


@dataclass(frozen=True)
class SlotClaim:
    """Ask a save to take one of a model's concurrency slots first."""

    limit: int
    token: str
    now_ms: int
    ttl_ms: int


@dataclass(frozen=True)
class Claim:
    """Say what a lease claim found: whether we hold the lease, the job, and its backend's breaker."""

    leased: bool
    job: Job | None
    lease_left_s: float
    breaker_failures: int
    breaker_open_until: float
    cancel_requested: bool


@dataclass
class Effects:
    """Commands that ride along with a save: releases always, bookkeeping only on success."""

    always: list[Command] = field(default_factory=list)
    on_saved: list[Command] = field(default_factory=list)


def job_key(job_id: str) -> str:
    """Return the Redis key of a job record."""
    return names.job(job_id)


class RedisJobStore:
    """Read and write job records; the API reads only this store, never Celery's results."""

    def __init__(self, redis, ttl_s: int, batch_ttl_s: int = 7 * 86400):
        self.redis = redis
        self.ttl_s = ttl_s
        self.batch_ttl_s = batch_ttl_s
        self._save = redis.register_script(scripts.SAVE)
        self._claim = redis.register_script(scripts.CLAIM)
        self.leases = LeaseStore(redis)
        self.events = EventLog(redis)

    def _keys(self, job: Job) -> list[str]:
        return [names.job(job.id), names.queued_in_queue(job.queue),
                names.queued_for_model(job.model), names.running(job.model),
                names.owner_jobs(job.owner), names.COUNTERS, names.METRICS_JOBS,
                names.idempotency(job.owner, ""), names.slots(job.model),
                names.job_events(job.id), names.queued_interactive(job.model),
                names.batch(job.batch_id or ""), names.held(job.model),
                names.batch_jobs(job.batch_id or ""), names.ACTIVE_BATCHES]

    def ttl_for(self, job: Job, now: float) -> int:
        """Return how long to keep a job: a batch's jobs outlive their batch's retention."""
        if job.batch_id is None:
            return self.ttl_s
        # A batch ends by its jobs' deadline at the latest, and is kept batch_ttl_s after.
        return int(self.batch_ttl_s + max(0.0, job.deadline_at - now) + 3600)

    def _write(self, job: Job, expected: str, *, queue_limit: int | None = None,
               idempotency: tuple[str, str] | None = None, slot: SlotClaim | None = None,
               effects: Effects | None = None, restart: bool = False,
               hold: bool = False) -> Job:
        keys, args = self._save_call(job, expected, queue_limit=queue_limit,
                                     idempotency=idempotency, slot=slot, effects=effects,
                                     restart=restart, hold=hold)
        return self._saved(job, self._save(keys=keys, args=args))

    def _save_call(self, job: Job, expected: str, *, queue_limit: int | None = None,
                   idempotency: tuple[str, str] | None = None, slot: SlotClaim | None = None,
                   effects: Effects | None = None, restart: bool = False, hold: bool = False
                   ) -> tuple[list[str], list[object]]:
        keys = self._keys(job)
        if idempotency is not None:
            keys[7] = names.idempotency(job.owner, idempotency[0])
        effects = effects or Effects()
        now = time.time()
        args: list[object] = [
            expected, job.status.value, job.to_json(), self.ttl_for(job, now), job.id,
            int(job.created_at * 1000), FINAL_CHANNEL if job.status.is_final else "", job.model,
            "" if queue_limit is None else queue_limit,
            "" if idempotency is None else idempotency[1],
            "" if slot is None else slot.limit, slot.token if slot else "",
            slot.now_ms if slot else 0, slot.ttl_ms if slot else 0,
            EVENTS_CAP, "1" if restart else "", job.attempts, (job.error or {}).get("code", ""),
            len(effects.always), len(effects.on_saved),
            "interactive" if job.priority == "interactive" else "batch",
            "1" if job.batch_id else "", repr(now), self.batch_ttl_s, job.batch_id or "",
            "1" if hold else "", held_score(job)]
        for command in [*effects.always, *effects.on_saved]:
            args.append(len(command))
            args.extend(command)
        return keys, args

    def _saved(self, job: Job, reply) -> Job:
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, list):  # {-4, binding}: the Idempotency-Key is taken
            body_hash, _, job_id = reply[1].partition(":")
            raise KeyBound(body_hash, job_id)
        if reply == -1:
            raise StaleJob(job.id)
        if reply == -2:
            raise QueueAtLimit(job.model)
        if reply == -3:
            raise SlotBusy(job.model)
        return dataclasses.replace(job, version=int(reply))

    def create(self, job: Job, queue_limit: int | None = None,
               idempotency: tuple[str, str] | None = None, door: str | None = None,
               hold: bool = False) -> Job:
        """Save a new job in one round trip.

        Fail if the id is taken (StaleJob), if `idempotency` = (key, body hash) is already
        bound (KeyBound: checked first, so a replay never meets a full queue), or if the
        model's queue is at `queue_limit` (QueueAtLimit). The key is bound only to a new job.
        """
        effects = Effects(on_saved=[("HINCRBY", names.METRICS_DOORS, door, 1)]) if door else None
        return self._write(job, "", queue_limit=queue_limit, idempotency=idempotency,
                           effects=effects, hold=hold)

    def save(self, job: Job, *, slot: SlotClaim | None = None, effects: Effects | None = None,
             restart: bool = False) -> Job:
        """Save a changed job read at `job.version`; raise StaleJob if it changed meanwhile.

        With `slot`, take one of the model's slots in the same step (SlotBusy if none is free).
        With `restart`, the event log first tells readers to drop the text streamed so far.
        """
        return self._write(job, str(job.version), slot=slot, effects=effects, restart=restart)

    def claim(self, job_id: str, token: str, ttl_s: float, breaker: str) -> Claim:
        """Take a job's lease if free, and read the job, its cancel flag and the breaker."""
        leased, data, version, pttl, failures, open_until, cancel = self._claim(
            keys=[names.lease(job_id), names.job(job_id), names.breaker(breaker),
                  names.cancel_flag(job_id)], args=[token, int(ttl_s * 1000)])
        return Claim(leased=bool(leased),
                     job=None if data is None else Job.from_json(data, int(version)),
                     lease_left_s=max(0.0, int(pttl) / 1000), breaker_failures=int(failures or 0),
                     breaker_open_until=float(open_until or 0), cancel_requested=bool(cancel))

    def residency(self, backend: str, lock_timeout_s: float,
                  lock_wait_s: float) -> ResidencyRecords:
        """Return the residency record of one backend."""
        return ResidencyRecords(self.redis, backend, lock_timeout_s, lock_wait_s)

    def get(self, job_id: str) -> Job | None:
        """Return the job, or None if it never existed or has expired."""
        data, version = self.redis.hmget(names.job(job_id), "data", "version")
        if data is None:
            return None
        return Job.from_json(data, int(version))

    def get_many(self, job_ids: Iterable[str]) -> list[Job]:
        """Return the jobs that still exist, in the order asked, in one round trip."""
        ids = list(job_ids)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(names.job(job_id), "data", "version")
        return [Job.from_json(data, int(version)) for data, version in pipe.execute()
                if data is not None]

    def queue_position(self, job: Job) -> int | None:
        """Return the 1-based place of a queued job in its queue, best effort."""
        if job.status is not JobStatus.QUEUED:
            return None
        rank = self.redis.zrank(names.queued_in_queue(job.queue), job.id)
        return None if rank is None else rank + 1

    def queued_in_queue(self, queue: str, limit: int) -> list[Job]:
        """Return up to `limit` of a family queue's queued jobs, oldest first."""
        return self.get_many(self.redis.zrange(names.queued_in_queue(queue), 0, limit - 1))

    def queued_for_model(self, model_id: str, limit: int, interactive: bool = False) -> list[Job]:
        """Return up to `limit` of a model's queued jobs (or its interactive lane's), oldest first."""
        key = (names.queued_interactive if interactive else names.queued_for_model)(model_id)
        return self.get_many(self.redis.zrange(key, 0, limit - 1))

    def running_ids(self, model_id: str) -> set[str]:
        """Return the ids the model's running index holds."""
        return set(self.redis.smembers(names.running(model_id)))

    def forget_running(self, model_id: str, job_id: str) -> None:
        """Drop an id from a model's running index (its record is gone or no longer running)."""
        self.redis.srem(names.running(model_id), job_id)

    def model_counts(self, model_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Return (queued, running) per model in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for model_id in model_ids:
            pipe.zcard(names.queued_for_model(model_id))
            pipe.scard(names.running(model_id))
        counts = pipe.execute()
        return {model_id: (counts[2 * i], counts[2 * i + 1]) for i, model_id in enumerate(model_ids)}

    def list_owned(self, owner: str | None, *, limit: int, before_ms: int | None = None,
                   status: str | None = None, model: str | None = None) -> tuple[list[Job], int | None]:
        """Return an owner's jobs newest first (every owner's for None), and the next cursor."""
        if owner is None:
            keys = list(self.redis.scan_iter(match=names.OWNER_JOBS_PATTERN, count=500))
        else:
            keys = [names.owner_jobs(owner)]
        high = f"({before_ms}" if before_ms is not None else "+inf"
        found: list[Job] = []
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
            found.extend(job for job in self.get_many(member for member, _ in batch)
                         if (not status or job.status.value == status)
                         and (not model or job.model == model))
            high = f"({int(batch[-1][1])}"
        found = found[:limit]
        cursor = int(found[-1].created_at * 1000) if len(found) == limit else None
        return found, cursor

    def usage_commands(self, model_id: str, ts: float) -> list[Command]:
        """Return the commands that record a model's use at `ts`, to ride along with a save."""
        return [("HSET", names.LAST_USED, model_id, repr(ts)),
                ("LPUSH", names.done_times(model_id), repr(ts)),
                ("LTRIM", names.done_times(model_id), 0, 99)]

    def mark_used(self, model_id: str, ts: float) -> None:
        """Record a model's use at `ts` on its own (a job's last save does it in passing)."""
        self.run(self.usage_commands(model_id, ts))

    def run(self, commands: list[Command]) -> None:
        """Run commands in one pipelined round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()

    def service_rate(self, model_id: str) -> float:
        """Return the model's recent completions per second (0 when unknown)."""
        times = [float(t) for t in self.redis.lrange(names.done_times(model_id), 0, 99)]
        if len(times) < 2 or max(times) <= min(times):
            return 0.0
        return (len(times) - 1) / (max(times) - min(times))

    def last_used(self, model_ids: list[str]) -> dict[str, float]:
        """Return when each model last served a job, for those that have."""
        if not model_ids:
            return {}
        values = self.redis.hmget(names.LAST_USED, model_ids)
        return {model_id: float(value) for model_id, value in zip(model_ids, values)
                if value is not None}

    def request_cancel(self, job_id: str) -> None:
        """Flag a running job and tell the workers, so its worker closes the stream at once."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(names.cancel_flag(job_id), "1", ex=self.ttl_s)
        pipe.publish(names.CANCEL_CHANNEL, job_id)
        pipe.execute()

    def cancel_requested(self, job_id: str) -> bool:
        """Tell whether a cancel was asked for this job."""
        return bool(self.redis.exists(names.cancel_flag(job_id)))

    def counters(self) -> dict[str, int]:
        """Return service-wide counts: jobs submitted, and jobs ended in each final state."""
        return {key: int(value) for key, value in self.redis.hgetall(names.COUNTERS).items()}
