"""Run one job to its end: the logic behind the `mes.jobs.execute` task.

On the plain path a job costs three Redis round trips here: the claim (lease, job, breaker
and cancel flag), the start (a model slot and the running save), and the end (the final
save, with the bookkeeping and the releases riding along). Cancels arrive by pub/sub.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from redis.exceptions import RedisError

from mes.backends.ollama import OllamaClient
from mes.clock import SystemClock
from mes.errors import (BackendError, BackendUnavailable, JobCancelled, JobExpired, JobTimeout,
                        MESError, WorkerLost)
from mes.jobs import Job, JobKind, JobStatus
from mes.registry import ModelRegistry, ModelSpec
from mes.services import Services, connect_redis
from mes.store.grants import GrantRecords
from mes.store.jobs import Effects, RedisJobStore, SlotBusy, SlotClaim, StaleJob
from mes.store.metrics import MetricsRecorder
from mes.worker.breaker import CircuitBreaker
from mes.worker.execution import call_backend
from mes.worker.lease import Holdings
from mes.worker.renewer import Renewer
from mes.worker.residency import Residency
from mes.worker.stopcheck import CancelListener, StopCheck
from mes.worker.tokens import TokenWriter

log = logging.getLogger("mes.jobs")

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0


@dataclass(frozen=True)
class RunOutcome:
    """Tell the task what happened, and when to try again if the job goes back in the queue."""

    job: Job | None
    retry_in_s: float | None = None


def backoff_s(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Return an exponential backoff with full jitter, capped."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1)) * (0.5 + rng() / 2)


def log_state(job: Job, **extra: Any) -> None:
    """Log one line for a job's state change, with its ids as fields; never the prompt or output."""
    fields = {"request_id": job.request_id, "job_id": job.id, "model": job.model,
              "queue": job.queue, "state": job.status.value, "attempt": job.attempts, **extra}
    log.info(" ".join(f"{key}={value}" for key, value in fields.items() if value is not None),
             extra=fields)


@dataclass
class JobRunner:
    """Run jobs with their dependencies and policy passed in."""

    store: RedisJobStore
    registry: ModelRegistry
    backend: OllamaClient
    clock: SystemClock
    breaker: CircuitBreaker
    cancels: CancelListener
    residency: Residency | None = None
    max_retries: int = 5
    lease_ttl_s: float = 30
    max_lost: int = 3
    metrics: MetricsRecorder | None = None
    renewer: Renewer = field(init=False)

    def __post_init__(self) -> None:
        # Built once per process: one renewer thread and the scripts, not one per job.
        self.renewer = Renewer(interval_s=self.lease_ttl_s / 3)

    def run(self, job_id: str) -> RunOutcome:
        """Run a job once under its lease; a job already final, or gone, is left alone."""
        held = Holdings(self.store.leases, self.renewer, job_id, self.lease_ttl_s)
        claim = self.store.claim(job_id, held.lease_token, self.lease_ttl_s, self.breaker.name)
        job = claim.job
        if not claim.leased:
            # A live worker runs it (or one died moments ago): look again once its lease is over.
            if job is None or job.status.is_final:
                return RunOutcome(job)
            log_state(job, event="lease_held")
            return RunOutcome(job, retry_in_s=claim.lease_left_s + 1)
        held.lease_taken()
        self.breaker.observe(claim.breaker_failures, claim.breaker_open_until)
        try:
            return self._run_leased(job, held)
        finally:
            self.cancels.unwatch(job_id)
            held.release()

    def _run_leased(self, job: Job | None, held: Holdings) -> RunOutcome:
        # Read under the lease: whatever we see now, no other run changes until we let go.
        if job is None or job.status.is_final:
            return RunOutcome(job)
        now = self.clock.now()
        if job.status is JobStatus.RUNNING:
            # Running, yet nobody holds its lease: the worker of the last attempt died.
            job = dataclasses.replace(job, lost_runs=job.lost_runs + 1)
            log_state(job, event="worker_lost", lost_runs=job.lost_runs)
            if job.lost_runs >= self.max_lost:
                return RunOutcome(self._finish(job, JobStatus.FAILED, held, error=WorkerLost(
                    f"the job's worker died {job.lost_runs} times in a row while running it",
                    {"lost_runs": job.lost_runs}).to_dict()))
        if now >= job.deadline_at:
            return RunOutcome(self._finish(job, JobStatus.EXPIRED, held,
                                           error=JobExpired().to_dict()))
        wait_s = self.breaker.wait_s(now)
        if wait_s > 0:
            # The backend is known to be down: wait in the queue without spending an attempt.
            if now + wait_s >= job.deadline_at:
                return RunOutcome(self._finish(job, JobStatus.FAILED, held, error=BackendUnavailable(
                    "the backend stayed unavailable until the job's deadline",
                    {"breaker": "open"}).to_dict()))
            return self._defer(job, wait_s + backoff_s(1) / 2, "breaker_open")
        spec = self.registry.get(job.model)
        if self.residency is not None:
            refused = self._admit(spec, now)
            if refused is not None:
                return self._defer(job, backoff_s(2), refused)
        self.cancels.watch(job.id)
        try:
            job = self.store.save(
                job.evolve(status=JobStatus.RUNNING, attempts=job.attempts + 1,
                           started_at=job.started_at or now, error=None),
                slot=SlotClaim(spec.concurrency_limit, held.slot_token, int(now * 1000),
                               held.ttl_ms),
                # A new attempt after one that ran: readers drop the text it streamed.
                restart=job.attempts > 0)
        except SlotBusy:
            # Every slot is taken: back to the queue once, no polling for a free one.
            return self._defer(job, backoff_s(1) / 2, "model_busy")
        except StaleJob:
            # Someone (a cancel, another worker) changed it first; let their change stand.
            return RunOutcome(self.store.get(job.id))
        held.slot_taken(spec.id)
        log_state(job)
        return self._execute(job, spec, held)

    def _admit(self, spec: ModelSpec, now: float) -> str | None:
        """Ask residency for room; return why not, with every error turned into a deferral."""
        try:
            admission = self.residency.admit(spec.id, now)
        except MESError as exc:
            # The backend's /api/ps failed: count it like any failed call, then wait.
            self.breaker.record(exc, self.clock.now())
            log.warning("event=admission_failed model=%s error=%s", spec.id, exc.code)
            return f"admission_failed:{exc.code}"
        except RedisError as exc:  # the residency lock timed out or Redis is restarting
            log.warning("event=admission_failed model=%s error=%s", spec.id,
                        exc.__class__.__name__)
            return f"admission_failed:{exc.__class__.__name__}"
        return None if admission.admitted else "no_room_to_load"

    def _execute(self, job: Job, spec: ModelSpec, held: Holdings) -> RunOutcome:
        stop = StopCheck(job, self.store, self.clock, self.cancels)
        tokens = TokenWriter(self.store.events, job.id, self.clock.monotonic)
        held.tokens = tokens
        try:
            result = call_backend(job, spec, self.backend, self.clock, stop, on_text=tokens,
                                  on_restart=tokens.restart)
        except JobCancelled:
            if stop.reason == "cancelled":
                # The cancel already saved the job as cancelled; report what is stored.
                return RunOutcome(self.store.get(job.id))
            return RunOutcome(self._finish(job, JobStatus.FAILED, held, error=JobTimeout(
                "the job ran past its deadline and was stopped").to_dict()))
        except MESError as exc:
            self.breaker.record(exc, self.clock.now())
            if self.metrics and isinstance(exc, BackendError):
                self.metrics.backend_error(exc.code)
            return self._handle_failure(job, exc, held)
        self.breaker.record(None, self.clock.now())
        finished = self.clock.now()
        result["timings"]["queue_ms"] = round((job.started_at - job.created_at) * 1000)
        result["timings"]["total_ms"] = round((finished - job.created_at) * 1000)
        # The bookkeeping rides along with the final save: one round trip for all of it.
        bookkeeping = self.store.usage_commands(job.model, finished)
        # What the job paid to load its model, and its run time: the scheduler's costs.
        grant_records = GrantRecords(self.store.redis, self.breaker.name)
        bookkeeping += grant_records.cost_commands(job.model, result["timings"],
                                                   wall_s=finished - job.started_at)
        if job.kind is JobKind.UNLOAD:
            # Asked for, not the backend's own doing: the scheduler must not count it as that.
            bookkeeping += grant_records.requested_unload_commands(job.model)
        if self.metrics:
            bookkeeping += self.metrics.job_ran_commands(
                job.model, queue_wait_s=job.started_at - job.created_at,
                run_s=finished - job.started_at, tokens=result["usage"]["completion_tokens"])
        return RunOutcome(self._finish(job, JobStatus.SUCCEEDED, held, result=result,
                                       bookkeeping=bookkeeping))

    def _defer(self, job: Job, delay: float, reason: str) -> RunOutcome:
        """Put the job back in the queue for `delay` seconds without spending an attempt."""
        try:
            job = self.store.save(job.evolve(status=JobStatus.QUEUED,
                                             not_before=self.clock.now() + delay))
        except StaleJob:
            return RunOutcome(self.store.get(job.id))
        log_state(job, event=reason, retry_in_s=round(delay, 2))
        return RunOutcome(job, retry_in_s=delay)

    def _handle_failure(self, job: Job, exc: MESError, held: Holdings) -> RunOutcome:
        now = self.clock.now()
        error = exc.to_dict()
        if exc.retryable and job.attempts <= self.max_retries:
            delay = backoff_s(job.attempts)
            if now + delay < job.deadline_at:
                try:
                    requeued = self.store.save(
                        job.evolve(status=JobStatus.QUEUED, error=error, lost_runs=0,
                                   not_before=now + delay),
                        effects=Effects(always=held.release_commands()))
                except StaleJob:
                    return RunOutcome(self.store.get(job.id))
                finally:
                    held.released = True
                log_state(requeued, error=exc.code, retry_in_s=round(delay, 2))
                return RunOutcome(requeued, retry_in_s=delay)
        if exc.retryable and now >= job.deadline_at:
            error = JobTimeout(f"the deadline passed while retrying: {exc.message}",
                               {"last_error": exc.code}).to_dict()
        return RunOutcome(self._finish(job, JobStatus.FAILED, held, error=error))

    def _finish(self, job: Job, status: JobStatus, held: Holdings | None = None, *,
                result: dict | None = None, error: dict | None = None,
                bookkeeping: list | None = None) -> Job | None:
        effects = Effects(always=held.release_commands() if held else [],
                          on_saved=bookkeeping or [])
        if held is not None:
            held.stop_renewing()
            held.released = True
        return finish(self.store, job, status, self.clock.now(), result=result, error=error,
                      effects=effects)


def finish(store: RedisJobStore, job: Job, status: JobStatus, now: float, *,
           result: dict | None = None, error: dict | None = None,
           effects: Effects | None = None) -> Job | None:
    """Save a job's final state, unless someone else already ended it."""
    try:
        job = store.save(job.evolve(status=status, finished_at=now, result=result, error=error),
                         effects=effects)
    except StaleJob:
        return store.get(job.id)
    log_state(job, error=(error or {}).get("code"))
    return job


def abandon_job(job_id: str, error: MESError, *, store: RedisJobStore,
                clock: SystemClock) -> Job | None:
    """End a running job with an error raised outside the runner (a worker time limit)."""
    job = store.get(job_id)
    if job is None or job.status.is_final:
        return job
    return finish(store, job, JobStatus.FAILED, clock.now(), error=error.to_dict())


def build_runner(services: Services) -> JobRunner:
    """Build a worker process's job runner from its Services and the configured policy."""
    s = services.settings
    pinned = frozenset(spec.id for spec in services.registry.models if spec.resident)
    residency = (Residency(services.store, services.backend, services.backend_name,
                           s.max_loaded_models, pinned=pinned)
                 if s.max_loaded_models > 0 else None)
    return JobRunner(
        store=services.store, registry=services.registry, backend=services.backend,
        clock=services.clock,
        # One breaker per backend: worker groups on other backends are not held back.
        breaker=CircuitBreaker(services.redis, services.backend_name,
                               threshold=s.breaker_threshold, cooldown_s=s.breaker_cooldown_s),
        cancels=CancelListener(lambda: connect_redis(s.redis_url)),
        residency=residency, max_retries=s.backend_max_retries, lease_ttl_s=s.lease_ttl_s,
        max_lost=s.max_worker_lost, metrics=MetricsRecorder(services.redis))
