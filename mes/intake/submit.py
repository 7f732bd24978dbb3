"""Accept a job: check it, save it as queued, then hand it to its family's queue."""

from __future__ import annotations

import hashlib
import logging
import math
import json
from typing import Any, Callable, Protocol

from redis.exceptions import RedisError

from mes.clock import SystemClock, new_id
from mes.errors import BackendUnavailable, IdempotencyMismatch, InvalidRequest, QueueFull
from mes.jobs import Job, JobKind, JobStatus
from mes.registry import ModelRegistry, ModelSpec
from mes.store.jobs import KeyBound, QueueAtLimit, RedisJobStore, StaleJob
from mes.structured import formats as structured

log = logging.getLogger("mes.submit")

REQUEST_FIELDS = ("prompt", "messages", "system", "options", "format", "input", "truncate",
                  "dimensions")


class Dispatcher(Protocol):
    """Send a job id to a queue; the web side implements it with Celery's send_task."""

    def send(self, job: Job) -> None:
        """Queue the job for a worker."""


def request_hash(body: dict[str, Any]) -> str:
    """Return a stable hash of a request body, for Idempotency-Key checks."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def queue_full(spec: ModelSpec, store: RedisJobStore) -> QueueFull:
    """Build the refusal for a full queue, saying when to come back."""
    queued, _ = store.model_counts([spec.id])[spec.id]
    rate = store.service_rate(spec.id)
    # Time for one place to free up at the observed rate; without data, a short guess.
    retry_after = math.ceil((queued - spec.max_queue + 1) / rate) if rate > 0 else 5
    return QueueFull(f"the queue of {spec.id} is full ({queued} waiting, limit {spec.max_queue})",
                     {"model": spec.id, "queued": queued, "max_queue": spec.max_queue},
                     retry_after_s=max(1, min(retry_after, 300)))


def request_timeout(body: dict[str, Any], spec: ModelSpec, max_timeout_s: int) -> int:
    """Check what the core checks of a request (its format, its deadline); return the deadline."""
    structured.check_format(body.get("format"))
    timeout_s = body.get("timeout_s") or spec.timeout_s
    if timeout_s > max_timeout_s:
        raise InvalidRequest(f"timeout_s may be at most {max_timeout_s}",
                             {"fields": {"timeout_s": [f"must be at most {max_timeout_s}"]}})
    return timeout_s


def submit_job(body: dict[str, Any], *, owner: str, store: RedisJobStore,
               registry: ModelRegistry, dispatcher: Dispatcher, clock: SystemClock,
               max_timeout_s: int, request_id: str | None = None,
               kind: JobKind = JobKind.INFERENCE,
               idempotency_key: str | None = None, door: str = "native",
               schedule: Callable[[], object] | None = None) -> tuple[Job, bool]:
    """Save a validated request as a queued job and dispatch it.

    Return the job and whether it is new: a replayed Idempotency-Key gives the first job.
    With `schedule` (swap-aware scheduling is on), a job that runs on the model is held in
    MES instead, and `schedule()` decides what the backend serves next.
    """
    held = schedule is not None and kind in (JobKind.INFERENCE, JobKind.EMBED)
    spec = registry.get(body["model"])
    timeout_s = request_timeout(body, spec, max_timeout_s)
    now = clock.now()
    job_id = new_id("job" if kind in (JobKind.INFERENCE, JobKind.EMBED) else "op", now)
    job = Job(
        id=job_id,
        owner=owner, model=spec.id, queue=spec.queue, kind=kind, status=JobStatus.QUEUED,
        created_at=now, deadline_at=now + timeout_s,
        request={key: body[key] for key in REQUEST_FIELDS if body.get(key) is not None},
        priority=body.get("priority", "interactive"), metadata=body.get("metadata") or {},
        request_id=request_id,
    )
    body_hash = None if idempotency_key is None else request_hash({**body, "_kind": kind.value})
    try:
        # One script binds the key, checks the queue limit and saves: no race, one round trip.
        job = store.create(job, spec.max_queue if kind in (JobKind.INFERENCE, JobKind.EMBED) else None,
                           None if idempotency_key is None else (idempotency_key, body_hash),
                           door=door, hold=held)
    except QueueAtLimit:
        raise queue_full(spec, store) from None
    except KeyBound as bound:
        return replayed(bound, body_hash, idempotency_key, store), False
    if held:
        try:
            schedule()
        except Exception as exc:  # noqa: BLE001 - it stays held: beat's sweep releases it
            log.warning("event=schedule_failed job_id=%s error=%s", job.id, exc.__class__.__name__)
        return job, True
    try:
        dispatcher.send(job)
    except Exception as exc:  # noqa: BLE001 - any broker failure means the job was not queued
        # Say so in the record too, so a client that saw the id learns why it never ran.
        error = BackendUnavailable(f"the job could not be queued: {exc.__class__.__name__}")
        try:
            store.save(job.evolve(status=JobStatus.FAILED, finished_at=clock.now(),
                                  error=error.to_dict()))
        except (StaleJob, RedisError) as save_exc:  # the broker and store share Redis
            log.warning("event=undispatched_job_not_saved job_id=%s error=%s", job.id,
                        save_exc.__class__.__name__)
        raise error from exc
    return job, True


def replayed(bound: KeyBound, body_hash: str, idempotency_key: str,
             store: RedisJobStore) -> Job:
    """Return the job an Idempotency-Key is bound to, if the body is the same one."""
    if bound.body_hash != body_hash:
        raise IdempotencyMismatch("this Idempotency-Key was used with a different body",
                                  {"idempotency_key": idempotency_key})
    first = store.get(bound.job_id)
    if first is None:
        raise IdempotencyMismatch("this Idempotency-Key's job has expired; use a new key",
                                  {"idempotency_key": idempotency_key})
    return first
