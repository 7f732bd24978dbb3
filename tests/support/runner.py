"""Build job runners for tests from the objects a test already has."""

from __future__ import annotations

from mes.worker.breaker import CircuitBreaker
from mes.worker.runner import JobRunner, RunOutcome
from mes.worker.stopcheck import CancelListener


def make_runner(*, store, breaker: CircuitBreaker | None = None, **deps) -> JobRunner:
    """Return a JobRunner with a breaker and a cancel listener on the store's Redis."""
    breaker = breaker or CircuitBreaker(store.redis, "test-backend", threshold=3, cooldown_s=5)
    return JobRunner(store=store, breaker=breaker, cancels=CancelListener(lambda: store.redis),
                     **deps)


def run_job(job_id: str, **deps) -> RunOutcome:
    """Run one job with a runner built for this call, and stop its listener after."""
    runner = make_runner(**deps)
    try:
        return runner.run(job_id)
    finally:
        runner.cancels.close()
