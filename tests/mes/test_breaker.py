"""Check the shared circuit breaker and how the runner waits on it."""

import pytest

from mes.worker.breaker import CircuitBreaker
from mes.errors import BackendRejected, BackendUnavailable, ModelNotFound
from mes.jobs import JobStatus
from tests.support.runner import run_job


@pytest.fixture
def breaker(redis):
    return CircuitBreaker(redis, "test", threshold=3, cooldown_s=10)


def test_opens_after_threshold_and_closes_on_success(breaker):
    for _ in range(2):
        breaker.record(BackendUnavailable("down"), now=100)
    assert breaker.wait_s(100) == 0 and breaker.state(100)["state"] == "closed"
    breaker.record(BackendUnavailable("down"), now=100)
    assert breaker.wait_s(101) == 9 and breaker.state(101)["state"] == "open"
    assert breaker.wait_s(111) == 0  # cooldown over: the next call probes
    breaker.record(BackendUnavailable("still down"), now=111)
    assert breaker.wait_s(111) == 10  # a failed probe opens it again at once
    breaker.record(None, now=112)
    assert breaker.state(112) == {"state": "closed", "failures": 0, "retry_in_s": 0}


def test_caller_errors_do_not_trip(breaker):
    for _ in range(5):
        breaker.record(ModelNotFound("nope"), now=1)
        breaker.record(BackendRejected("bad"), now=1)
    assert breaker.state(1)["failures"] == 0


def test_open_breaker_keeps_job_queued_without_spending_attempts(submit, store, registry, backend,
                                                                 clock, redis, engine):
    breaker = CircuitBreaker(redis, "ollama", threshold=1, cooldown_s=5)
    breaker.record(BackendUnavailable("down"), now=clock.now())
    before = engine.stats()["total_requests"]
    job = submit()
    outcome = run_job(job.id, store=store, registry=registry, backend=backend, clock=clock,
                      max_retries=2, breaker=breaker)
    assert outcome.retry_in_s >= 5 and outcome.job.status is JobStatus.QUEUED
    assert store.get(job.id).attempts == 0 and engine.stats()["total_requests"] == before
    clock.advance(6)
    done = run_job(job.id, store=store, registry=registry, backend=backend, clock=clock,
                   max_retries=2, breaker=breaker).job
    assert done.status is JobStatus.SUCCEEDED and breaker.state(clock.now())["state"] == "closed"


def test_breaker_open_past_deadline_fails_the_job(submit, store, registry, backend, clock, redis):
    breaker = CircuitBreaker(redis, "ollama", threshold=1, cooldown_s=60)
    breaker.record(BackendUnavailable("down"), now=clock.now())
    job = submit(timeout_s=10)
    done = run_job(job.id, store=store, registry=registry, backend=backend, clock=clock,
                   max_retries=2, breaker=breaker).job
    assert done.status is JobStatus.FAILED and done.error["code"] == "backend_unavailable"
