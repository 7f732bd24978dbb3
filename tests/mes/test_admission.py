"""Check that every error of admission (backend, residency lock) defers the job safely."""

from __future__ import annotations

import time

from mes.backends.ollama import OllamaClient
from mes.jobs import JobStatus
from mes.store import names
from mes.worker.breaker import CircuitBreaker
from mes.worker.residency import Residency
from tests.support.runner import run_job


def test_a_backend_down_during_admission_defers_and_trips_the_breaker(submit, store, registry,
                                                                     clock):
    down = OllamaClient("http://127.0.0.1:9", connect_timeout_s=0.5, read_timeout_s=1)
    breaker = CircuitBreaker(store.redis, "down", threshold=1, cooldown_s=30)
    job = submit()
    outcome = run_job(job.id, store=store, registry=registry, backend=down, clock=clock,
                      breaker=breaker, residency=Residency(store, down, "down", max_loaded=1))
    # The task gets a retry time instead of an exception, and the job waits in the queue.
    assert outcome.retry_in_s is not None and outcome.retry_in_s > 0
    assert store.get(job.id).status is JobStatus.QUEUED and store.get(job.id).attempts == 0
    assert breaker.state(clock.now())["failures"] == 1
    assert not store.leases.lease_alive(job.id)


def test_a_residency_lock_that_cannot_be_had_defers_the_job(submit, store, registry, backend,
                                                            clock, redis):
    # Another worker holds the lock for longer than this one waits.
    residency = Residency(store, backend, "busy", max_loaded=1, lock_wait_s=0.2)
    redis.set(names.residency_lock("busy"), "someone-else", ex=30)
    job = submit()
    outcome = run_job(job.id, store=store, registry=registry, backend=backend, clock=clock,
                      residency=residency)
    assert outcome.retry_in_s is not None
    assert store.get(job.id).status is JobStatus.QUEUED and store.get(job.id).attempts == 0


def test_a_busy_model_is_deferred_once_with_its_lease_released(submit, store, registry,
                                                               backend, clock, redis, engine):
    far = int(time.time() * 1000) + 60_000
    redis.zadd(names.slots("smollm2:135m"), {"w1": far, "w2": far})  # its limit is 2
    job = submit()
    before = engine.stats()["total_requests"]
    outcome = run_job(job.id, store=store, registry=registry, backend=backend, clock=clock)
    deferred = store.get(job.id)
    assert outcome.retry_in_s is not None and deferred.status is JobStatus.QUEUED
    assert deferred.attempts == 0 and deferred.not_before > clock.now()
    assert engine.stats()["total_requests"] == before
    assert not store.leases.lease_alive(job.id)
