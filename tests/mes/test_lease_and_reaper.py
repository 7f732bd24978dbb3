"""Check that a job runs once while a worker holds it, and that a dead worker's job comes back."""

from __future__ import annotations

import pytest

from mes.jobs import JobStatus
from mes.store import names
from mes.worker.reaper import reap_family
from tests.support.runner import run_job


@pytest.fixture
def run(store, registry, backend, clock):
    def run(job_id, max_lost=3):
        return run_job(job_id, store=store, registry=registry, backend=backend, clock=clock,
                       max_retries=2, lease_ttl_s=5, max_lost=max_lost)
    return run


def test_lease_is_exclusive_and_released(store):
    first = store.claim("job_1", "first", ttl_s=5, breaker="b")
    second = store.claim("job_1", "second", ttl_s=5, breaker="b")
    assert first.leased and not second.leased
    assert first.job is None and 0 < second.lease_left_s <= 5
    store.leases.release_lease("job_1", "first")
    assert not store.leases.lease_alive("job_1")
    assert store.claim("job_1", "second", ttl_s=5, breaker="b").leased
    store.leases.release_lease("job_1", "second")


def test_release_keeps_someone_elses_lease(store, redis):
    assert store.claim("job_2", "mine", ttl_s=5, breaker="b").leased
    redis.set(names.lease("job_2"), "another-worker")  # ours expired and someone took it
    store.leases.release_lease("job_2", "mine")
    assert redis.get(names.lease("job_2")) == "another-worker"


def test_claim_reads_the_job_the_breaker_and_the_cancel_flag(submit, store, redis):
    job = submit()
    redis.hset(names.breaker("b"), mapping={"failures": 2, "open_until": 99.5})
    store.request_cancel(job.id)
    claim = store.claim(job.id, "tok", ttl_s=5, breaker="b")
    assert claim.leased and claim.job == job
    assert (claim.breaker_failures, claim.breaker_open_until) == (2, 99.5)
    assert claim.cancel_requested


def test_redelivery_while_leased_is_bounced_not_run(submit, run, store, engine):
    job = submit()
    assert store.claim(job.id, "holder", ttl_s=5, breaker="b").leased
    before = engine.stats()["total_requests"]
    outcome = run(job.id)
    store.leases.release_lease(job.id, "holder")
    assert outcome.retry_in_s is not None and outcome.retry_in_s > 1
    assert outcome.job.status is JobStatus.QUEUED and outcome.job.attempts == 0
    assert engine.stats()["total_requests"] == before


def test_a_finished_run_releases_its_lease_and_slot(submit, run, store):
    job = submit()
    assert run(job.id).job.status is JobStatus.SUCCEEDED
    assert not store.leases.lease_alive(job.id)
    assert store.leases.slots_in_use(job.model) == 0


def test_run_after_a_dead_worker_counts_the_loss(submit, run, store):
    job = submit()
    # A worker took it and died: running, attempts 1, lease gone.
    store.save(job.evolve(status=JobStatus.RUNNING, attempts=1))
    done = run(job.id).job
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2 and done.lost_runs == 1


def test_poison_job_fails_as_worker_lost(submit, run, store):
    job = submit()
    store.save(job.evolve(status=JobStatus.RUNNING, attempts=3, lost_runs=2))
    done = run(job.id, max_lost=3).job
    assert done.status is JobStatus.FAILED and done.error["code"] == "worker_lost"
    assert "3 times" in done.error["message"]


def test_reaper_requeues_running_jobs_without_lease(submit, store, registry, clock, redis):
    orphan = store.save(submit().evolve(status=JobStatus.RUNNING, attempts=1,
                                        started_at=clock.now()))
    alive = store.save(submit().evolve(status=JobStatus.RUNNING, attempts=1, started_at=clock.now()))
    assert store.claim(alive.id, "alive-worker", ttl_s=60, breaker="b").leased
    sent = []
    family = registry.get("smollm2:135m").family
    kwargs = dict(store=store, registry=registry, clock=clock, dispatch=sent.append, grace_s=10)
    assert reap_family(family, **kwargs).requeued == 0  # still within the grace period
    clock.advance(11)
    report = reap_family(family, **kwargs)
    assert report.requeued == 1 and [job.id for job in sent] == [orphan.id]


def test_reaper_expires_queued_jobs_past_deadline(submit, store, registry, clock):
    job = submit(timeout_s=5)
    clock.advance(6)
    family = registry.get("smollm2:135m").family
    report = reap_family(family, store=store, registry=registry, clock=clock,
                         dispatch=lambda job: None, grace_s=10)
    assert report.expired == 1 and store.get(job.id).status is JobStatus.EXPIRED


def test_reaper_expires_an_interactive_job_behind_a_long_batch(submit, store, registry, clock):
    from mes.intake.batches import BatchRequest, submit_batch
    from mes.store.batches import BatchStore
    lines = [BatchRequest(f"b-{i}", {"model": "smollm2:135m", "prompt": "Hi"})
             for i in range(250)]
    submit_batch(lines, owner="alice", store=store, batches=BatchStore(store),
                 registry=registry, clock=clock, max_timeout_s=600)
    clock.advance(1)
    late = submit(timeout_s=5)  # newer than the batch's 250 jobs, whose window is 24 h
    clock.advance(6)
    family = registry.get("smollm2:135m").family
    report = reap_family(family, store=store, registry=registry, clock=clock,
                         dispatch=lambda job: None, grace_s=10)
    assert report.expired == 1 and store.get(late.id).status is JobStatus.EXPIRED


def test_reaper_redispatches_queued_jobs_that_idle_workers_never_got(submit, store, registry,
                                                                       clock, redis):
    from mes.store.health import Heartbeats
    stranded = submit()
    waiting = submit()
    store.save(waiting.evolve(not_before=clock.now() + 100))  # a retry that is not due yet
    family = registry.get("smollm2:135m").family
    sent = []
    kwargs = dict(store=store, registry=registry, clock=clock, dispatch=sent.append, grace_s=10)
    clock.advance(11)
    assert reap_family(family, **kwargs).stranded == 0  # no live worker: nothing to conclude
    Heartbeats(redis).beat([family.queue], "w1@host", ttl_s=30)
    assert reap_family(family, **kwargs).stranded == 1
    assert [job.id for job in sent] == [stranded.id]


def test_reaper_promotes_batch_jobs_that_waited_too_long(submit, store, registry, clock):
    from mes.queueing import task_priority
    old_batch = submit(priority="batch", timeout_s=600)
    interactive = submit(timeout_s=600)
    clock.advance(301)
    young_batch = submit(priority="batch", timeout_s=600)
    sent = []
    family = registry.get("smollm2:135m").family
    report = reap_family(family, store=store, registry=registry, clock=clock, dispatch=sent.append,
                         grace_s=1000, batch_max_wait_s=300)
    assert report.promoted == 1 and [job.id for job in sent] == [old_batch.id]
    assert task_priority(sent[0]) == 0 and task_priority(store.get(young_batch.id)) == 9
    assert task_priority(store.get(interactive.id)) == 0
    again = reap_family(family, store=store, registry=registry, clock=clock, dispatch=sent.append,
                        grace_s=1000, batch_max_wait_s=300)
    assert again.promoted == 0  # promoted once only
