"""Count the worker's Redis round trips per job on the plain path (no residency cap, no key)."""

from __future__ import annotations


from mes.jobs import JobStatus
from mes.store.jobs import RedisJobStore
from mes.intake.submit import submit_job
from tests.mes.conftest import ListDispatcher
from tests.support.runner import make_runner

WORKER_BUDGET = 4


def test_a_job_costs_the_worker_at_most_four_round_trips(counting, registry, backend, clock):
    store = RedisJobStore(counting, ttl_s=3600)
    runner = make_runner(store=store, registry=registry, backend=backend, clock=clock)

    def submit():
        job, _ = submit_job({"model": "smollm2:135m", "prompt": "Hi"}, owner="alice",
                            store=store, registry=registry, dispatcher=ListDispatcher(),
                            clock=clock, max_timeout_s=600)
        return job

    try:
        runner.run(submit().id)  # loads the scripts and subscribes the cancel listener once
        job = submit()
        counting.count_from_here()
        outcome = runner.run(job.id)
        calls = list(counting.calls)
    finally:
        runner.cancels.close()
    assert outcome.job.status is JobStatus.SUCCEEDED
    assert len(calls) <= WORKER_BUDGET, calls
    # The final state, its bookkeeping and the releases all went in the last trip.
    assert not store.leases.lease_alive(job.id)
    assert store.leases.slots_in_use(job.model) == 0
    assert store.last_used([job.model])[job.model] > 0
