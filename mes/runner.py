"""Run one job to its end: the logic behind the `mes.jobs.execute` task."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from mes.backends.ollama import OllamaClient
from mes.breaker import CircuitBreaker
from mes.cancel import StopCheck
from mes.clock import SystemClock
from mes.concurrency import ModelSlot, SlotScripts
from mes.errors import BackendError, BackendUnavailable, JobCancelled, JobTimeout, MESError, WorkerLost
from mes.execution import backend_options, execute  # noqa: F401 - backend_options re-exported
from mes.jobs import Job, JobStatus
from mes.lease import JobLease, LeaseScripts
from mes.metrics import MetricsRecorder
from mes.registry import ModelRegistry
from mes.renewer import Renewer
from mes.residency import Residency
from mes.store import RedisJobStore, StaleJob

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
    breaker: CircuitBreaker | None = None
    residency: Residency | None = None
    max_retries: int = 5
    lease_ttl_s: float = 30
    max_lost: int = 3
    slot_wait_s: float = 2.0
    metrics: MetricsRecorder | None = None
    renewer: Renewer = field(init=False)

    def __post_init__(self) -> None:
        # Built once per process: one renewer thread and the scripts, not one per job.
        self.renewer = Renewer(interval_s=self.lease_ttl_s / 3)
        self._lease_scripts = LeaseScripts(self.store.redis)
        self._slot_scripts = SlotScripts(self.store.redis)

    def run(self, job_id: str) -> RunOutcome:
        """Run a job once under its lease; a job already final, or gone, is left alone."""
        lease = JobLease(self._lease_scripts, self.renewer, job_id, self.lease_ttl_s)
        if not lease.acquire():
            # A live worker runs it (or one died moments ago): look again once its lease is over.
            job = self.store.get(job_id)
            if job is None or job.status.is_final:
                return RunOutcome(job)
            log_state(job, event="lease_held")
            return RunOutcome(job, retry_in_s=lease.remaining_s() + 1)
        with lease:
            return self._run_leased(job_id)

    def _run_leased(self, job_id: str) -> RunOutcome:
        # Read under the lease: whatever we see now, no other run changes until we let go.
        job = self.store.get(job_id)
        if job is None or job.status.is_final:
            return RunOutcome(job)
        now = self.clock.now()
        if job.status is JobStatus.RUNNING:
            # Running, yet nobody holds its lease: the worker of the last attempt died.
            job = dataclasses.replace(job, lost_runs=job.lost_runs + 1)
            log_state(job, event="worker_lost", lost_runs=job.lost_runs)
            if job.lost_runs >= self.max_lost:
                return RunOutcome(self._finish(job, JobStatus.FAILED, error=WorkerLost(
                    f"the job's worker died {job.lost_runs} times in a row while running it",
                    {"lost_runs": job.lost_runs}).to_dict()))
        if now >= job.deadline_at:
            return RunOutcome(self._finish(job, JobStatus.EXPIRED, error={
                "code": "expired", "message": "the deadline passed before the job could start",
                "details": {}}))
        wait_s = self.breaker.wait_s(now) if self.breaker else 0.0
        if wait_s > 0:
            # The backend is known to be down: wait in the queue without spending an attempt.
            if now + wait_s >= job.deadline_at:
                return RunOutcome(self._finish(job, JobStatus.FAILED, error=BackendUnavailable(
                    "the backend stayed unavailable until the job's deadline",
                    {"breaker": "open"}).to_dict()))
            return self._defer(job, wait_s + backoff_s(1) / 2, "breaker_open")
        spec = self.registry.get(job.model)
        slot = ModelSlot(self._slot_scripts, self.renewer, spec.id, spec.concurrency_limit,
                         self.lease_ttl_s)
        if not slot.acquire(self.slot_wait_s):
            return self._defer(job, backoff_s(1) / 2, "model_busy")
        try:
            if self.residency is not None:
                admission = self.residency.admit(spec.id, now)
                if not admission.admitted:
                    return self._defer(job, backoff_s(2), "no_room_to_load")
            return self._start(job, spec)
        finally:
            slot.release()

    def _start(self, job: Job, spec) -> RunOutcome:
        now = self.clock.now()
        try:
            job = self.store.save(job.evolve(status=JobStatus.RUNNING, attempts=job.attempts + 1,
                                             started_at=job.started_at or now, error=None))
        except StaleJob:
            # Someone (a cancel, another worker) changed it first; let their change stand.
            return RunOutcome(self.store.get(job.id))
        log_state(job)
        stop = StopCheck(job, self.store, self.clock)
        try:
            result = execute(job, spec, self.backend, self.clock, stop)
        except JobCancelled:
            if stop.reason == "cancelled":
                # The cancel already saved the job as cancelled; report what is stored.
                return RunOutcome(self.store.get(job.id))
            return RunOutcome(self._finish(job, JobStatus.FAILED, error=JobTimeout(
                "the job ran past its deadline and was stopped").to_dict()))
        except MESError as exc:
            if self.breaker:
                self.breaker.record(exc, self.clock.now())
            if self.metrics and isinstance(exc, BackendError):
                self.metrics.backend_error(exc.code)
            return self._handle_failure(job, exc)
        if self.breaker:
            self.breaker.record(None, self.clock.now())
        finished = self.clock.now()
        result["timings"]["queue_ms"] = round((job.started_at - job.created_at) * 1000)
        result["timings"]["total_ms"] = round((finished - job.created_at) * 1000)
        done = self._finish(job, JobStatus.SUCCEEDED, result=result)
        # The record is saved (and waiters woken) first; the bookkeeping follows in one trip.
        pipe = self.store.redis.pipeline(transaction=False)
        self.store.mark_used(job.model, finished, pipe)
        if self.metrics:
            self.metrics.job_ran(job.model, queue_wait_s=job.started_at - job.created_at,
                                 run_s=finished - job.started_at,
                                 tokens=result["usage"]["completion_tokens"], pipe=pipe)
        pipe.execute()
        return RunOutcome(done)

    def _defer(self, job: Job, delay: float, reason: str) -> RunOutcome:
        """Put the job back in the queue for `delay` seconds without spending an attempt."""
        try:
            job = self.store.save(job.evolve(status=JobStatus.QUEUED,
                                             not_before=self.clock.now() + delay))
        except StaleJob:
            return RunOutcome(self.store.get(job.id))
        log_state(job, event=reason, retry_in_s=round(delay, 2))
        return RunOutcome(job, retry_in_s=delay)

    def _handle_failure(self, job: Job, exc: MESError) -> RunOutcome:
        now = self.clock.now()
        error = exc.to_dict()
        if exc.retryable and job.attempts <= self.max_retries:
            delay = backoff_s(job.attempts)
            if now + delay < job.deadline_at:
                try:
                    requeued = self.store.save(job.evolve(status=JobStatus.QUEUED, error=error,
                                                          lost_runs=0, not_before=now + delay))
                except StaleJob:
                    return RunOutcome(self.store.get(job.id))
                log_state(requeued, error=exc.code, retry_in_s=round(delay, 2))
                return RunOutcome(requeued, retry_in_s=delay)
        if exc.retryable and now >= job.deadline_at:
            error = JobTimeout(f"the deadline passed while retrying: {exc.message}",
                               {"last_error": exc.code}).to_dict()
        return RunOutcome(self._finish(job, JobStatus.FAILED, error=error))

    def _finish(self, job: Job, status: JobStatus, *, result: dict | None = None,
                error: dict | None = None) -> Job | None:
        return finish(self.store, job, status, self.clock.now(), result=result, error=error)


def finish(store: RedisJobStore, job: Job, status: JobStatus, now: float, *,
           result: dict | None = None, error: dict | None = None) -> Job | None:
    """Save a job's final state, unless someone else already ended it."""
    try:
        job = store.save(job.evolve(status=status, finished_at=now, result=result, error=error))
    except StaleJob:
        return store.get(job.id)
    log_state(job, error=(error or {}).get("code"))
    return job


def run_job(job_id: str, **deps: Any) -> RunOutcome:
    """Run one job with a JobRunner built from keyword arguments."""
    return JobRunner(**deps).run(job_id)


def abandon_job(job_id: str, error: MESError, *, store: RedisJobStore,
                clock: SystemClock) -> Job | None:
    """End a running job with an error raised outside the runner (a worker time limit)."""
    job = store.get(job_id)
    if job is None or job.status.is_final:
        return job
    return finish(store, job, JobStatus.FAILED, clock.now(), error=error.to_dict())
