"""Run one job to its end: the logic behind the `mes.jobs.execute` task."""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable

from mes.backends.ollama import Completion, OllamaClient
from mes.clock import SystemClock
from mes.errors import BackendUnavailable, JobCancelled, JobTimeout, MESError, OutputInvalid, WorkerLost
from mes.jobs import Job, JobKind, JobStatus
from mes.registry import ModelRegistry, ModelSpec
from mes.breaker import CircuitBreaker
from mes.cancel import StopCheck
from mes.lease import JobLease
from mes.store import RedisJobStore, StaleJob
from mes import structured

log = logging.getLogger("mes.jobs")

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class RunOutcome:
    """Tell the task what happened, and when to try again if the job goes back in the queue."""

    job: Job | None
    retry_in_s: float | None = None


def backoff_s(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Return an exponential backoff with full jitter, capped."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1)) * (0.5 + rng() / 2)


def log_state(job: Job, **extra: Any) -> None:
    """Log one key=value line for a job's state change; never the prompt or output."""
    fields = {"job_id": job.id, "model": job.model, "queue": job.queue,
              "state": job.status.value, "attempt": job.attempts,
              "request_id": job.request_id, **extra}
    log.info(" ".join(f"{key}={value}" for key, value in fields.items() if value is not None))


def run_job(job_id: str, *, store: RedisJobStore, registry: ModelRegistry, backend: OllamaClient,
            clock: SystemClock, max_retries: int, lease_ttl_s: float = 30,
            max_lost: int = 3, breaker: CircuitBreaker | None = None) -> RunOutcome:
    """Run a job once under its lease; a job already final, or gone, is left alone."""
    job = store.get(job_id)
    if job is None or job.status.is_final:
        return RunOutcome(job)
    lease = JobLease(store.redis, job_id, lease_ttl_s)
    if not lease.acquire():
        # A live worker runs it (or one died moments ago): look again once its lease is over.
        log_state(job, event="lease_held")
        return RunOutcome(job, retry_in_s=lease.remaining_s() + 1)
    with lease:
        return _run_leased(job_id, store=store, registry=registry, backend=backend, clock=clock,
                           max_retries=max_retries, max_lost=max_lost, breaker=breaker)


def _run_leased(job_id: str, *, store: RedisJobStore, registry: ModelRegistry,
                backend: OllamaClient, clock: SystemClock, max_retries: int,
                max_lost: int, breaker: CircuitBreaker | None) -> RunOutcome:
    job = store.get(job_id)  # read again: it may have finished before we held the lease
    if job is None or job.status.is_final:
        return RunOutcome(job)
    now = clock.now()
    lost_runs = job.lost_runs
    if job.status is JobStatus.RUNNING:
        # Running, yet nobody holds its lease: the worker of the last attempt died.
        lost_runs += 1
        log_state(job, event="worker_lost", lost_runs=lost_runs)
        if lost_runs >= max_lost:
            job = dataclasses.replace(job, lost_runs=lost_runs)
            return RunOutcome(_finish(store, job, JobStatus.FAILED, now, error=WorkerLost(
                f"the job's worker died {lost_runs} times in a row while running it",
                {"lost_runs": lost_runs}).to_dict()))
    if now >= job.deadline_at:
        return RunOutcome(_finish(store, job, JobStatus.EXPIRED, now, error={
            "code": "expired", "message": "the deadline passed before the job could start",
            "details": {}}))
    wait_s = breaker.wait_s(now) if breaker else 0.0
    if wait_s > 0:
        # The backend is known to be down: wait in the queue without spending an attempt.
        if now + wait_s >= job.deadline_at:
            return RunOutcome(_finish(store, job, JobStatus.FAILED, now, error=BackendUnavailable(
                "the backend stayed unavailable until the job's deadline",
                {"breaker": "open"}).to_dict()))
        delay = wait_s + backoff_s(1) / 2
        if job.status is JobStatus.RUNNING:
            job = store.save(job.evolve(status=JobStatus.QUEUED, lost_runs=lost_runs,
                                        not_before=now + delay))
        return RunOutcome(job, retry_in_s=delay)
    try:
        job = store.save(job.evolve(status=JobStatus.RUNNING, attempts=job.attempts + 1,
                                    started_at=job.started_at or now, error=None,
                                    lost_runs=lost_runs))
    except StaleJob:
        # Someone (a cancel, another worker) changed it first; let their change stand.
        return RunOutcome(store.get(job_id))
    log_state(job)
    spec = registry.get(job.model)
    stop = StopCheck(job, store, clock)
    try:
        result = _execute(job, spec, backend, clock, stop)
    except JobCancelled:
        if stop.reason == "cancelled":
            # The cancel already saved the job as cancelled; report what is stored.
            return RunOutcome(store.get(job.id))
        return RunOutcome(_finish(store, job, JobStatus.FAILED, clock.now(), error=JobTimeout(
            "the job ran past its deadline and was stopped").to_dict()))
    except MESError as exc:
        if breaker:
            breaker.record(exc, clock.now())
        return _handle_failure(store, job, exc, clock, max_retries)
    if breaker:
        breaker.record(None, clock.now())
    result["timings"]["queue_ms"] = round((job.started_at - job.created_at) * 1000)
    finished = clock.now()
    result["timings"]["total_ms"] = round((finished - job.created_at) * 1000)
    store.mark_used(job.model, finished)
    return RunOutcome(_finish(store, job, JobStatus.SUCCEEDED, finished, result=result))


def _execute(job: Job, spec: ModelSpec, backend: OllamaClient, clock: SystemClock,
             should_stop: StopCheck) -> dict:
    """Call the backend for the job's kind and shape the result."""
    if job.kind is JobKind.LOAD:
        return _result(backend.load(spec.id, spec.keep_alive, options=dict(spec.runner_options)))
    if job.kind is JobKind.UNLOAD:
        return _result(backend.unload(spec.id))
    request = job.request
    fmt = request.get("format")
    system = request.get("system")
    native_format = fmt
    if fmt is not None and spec.json_mode == "prompt":
        # The model has no reliable native JSON mode: ask in the system prompt instead.
        native_format = None
        system = "\n\n".join(filter(None, [system, structured.prompt_instructions(fmt)]))
    remaining = job.deadline_at - clock.now()
    if remaining <= 0:
        raise JobTimeout("the job ran past its deadline")
    common = dict(options=backend_options(spec, request.get("options") or {}),
                  format=native_format, keep_alive=spec.keep_alive,
                  read_timeout_s=min(backend.read_timeout_s, remaining),
                  should_stop=should_stop,
                  request_id=job.request_id)
    if request.get("messages"):
        messages = list(request["messages"])
        if system:
            messages.insert(0, {"role": "system", "content": system})
        completion = backend.chat(spec.id, messages, **common)
    else:
        completion = backend.generate(spec.id, request.get("prompt", ""), system=system,
                                      **common)
    result = _result(completion)
    if fmt is not None:
        checked = structured.check_output(completion.text, fmt)
        result.update(json=checked.value, schema_valid=checked.valid, format_attempts=1)
        if not checked.valid:
            raise OutputInvalid("the model's output does not match the requested format",
                                {"errors": list(checked.errors), "text": completion.text})
    return result


def backend_options(spec: ModelSpec, requested: dict[str, Any]) -> dict[str, Any]:
    """Merge model defaults, the job's sampling options and the model's fixed runner options."""
    options = dict(spec.options)
    for key, value in requested.items():
        if key == "max_tokens":
            options["num_predict"] = min(int(value), spec.max_tokens)
        else:
            options[key] = value
    options.setdefault("num_predict", spec.max_tokens)
    # Runner options last: a job must never make the backend reload the model.
    options.update(spec.runner_options)
    return options


def _result(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "done_reason": completion.done_reason,
        "usage": {"prompt_tokens": completion.prompt_eval_count,
                  "completion_tokens": completion.eval_count},
        "timings": {"queue_ms": 0,
                    "load_ms": round(completion.load_duration / NS_PER_MS),
                    "prompt_ms": round(completion.prompt_eval_duration / NS_PER_MS),
                    "generate_ms": round(completion.eval_duration / NS_PER_MS),
                    "total_ms": round(completion.total_duration / NS_PER_MS)},
    }


def _handle_failure(store: RedisJobStore, job: Job, exc: MESError, clock: SystemClock,
                    max_retries: int) -> RunOutcome:
    now = clock.now()
    error = exc.to_dict()
    if exc.retryable and job.attempts <= max_retries:
        delay = backoff_s(job.attempts)
        if now + delay < job.deadline_at:
            try:
                requeued = store.save(job.evolve(status=JobStatus.QUEUED, error=error,
                                                 lost_runs=0, not_before=now + delay))
            except StaleJob:
                return RunOutcome(store.get(job.id))
            log_state(requeued, error=exc.code, retry_in_s=round(delay, 2))
            return RunOutcome(requeued, retry_in_s=delay)
    if exc.retryable and now >= job.deadline_at:
        error = JobTimeout(f"the deadline passed while retrying: {exc.message}",
                           {"last_error": exc.code}).to_dict()
    return RunOutcome(_finish(store, job, JobStatus.FAILED, now, error=error))


def _finish(store: RedisJobStore, job: Job, status: JobStatus, now: float, *,
            result: dict | None = None, error: dict | None = None) -> Job | None:
    try:
        job = store.save(job.evolve(status=status, finished_at=now, result=result, error=error))
    except StaleJob:
        return store.get(job.id)
    log_state(job, error=(error or {}).get("code"))
    return job


def abandon_job(job_id: str, error: MESError, *, store: RedisJobStore, clock: SystemClock) -> Job | None:
    """End a running job with an error raised outside the runner (a worker time limit)."""
    job = store.get(job_id)
    if job is None or job.status.is_final:
        return job
    return _finish(store, job, JobStatus.FAILED, clock.now(), error=error.to_dict())
