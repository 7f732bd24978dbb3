import pytest

from mes.clock import new_id
from mes.jobs import InvalidTransition, Job, JobKind, JobStatus
from mes.store.jobs import FINAL_CHANNEL, StaleJob


def make_job(clock, owner="alice", model="smollm2:135m", queue="mes.smollm") -> Job:
    now = clock.now()
    return Job(id=new_id("job", now), owner=owner, model=model, queue=queue,
               kind=JobKind.INFERENCE, status=JobStatus.QUEUED, created_at=now,
               deadline_at=now + 30, request={"prompt": "hi"})


def test_create_get_roundtrip(store, clock):
    job = store.create(make_job(clock))
    assert job.version == 1
    loaded = store.get(job.id)
    assert loaded == job
    assert store.get("job_missing") is None


def test_create_refuses_duplicate_id(store, clock):
    job = store.create(make_job(clock))
    with pytest.raises(StaleJob):
        store.create(job)


def test_stale_write_is_refused(store, clock):
    job = store.create(make_job(clock))
    store.save(job.evolve(status=JobStatus.RUNNING))
    with pytest.raises(StaleJob):
        store.save(job.evolve(status=JobStatus.CANCELLED))
    assert store.get(job.id).status is JobStatus.RUNNING


def test_transition_table_forbids_leaving_final(store, clock):
    job = store.create(make_job(clock))
    done = store.save(job.evolve(status=JobStatus.RUNNING))
    done = store.save(done.evolve(status=JobStatus.SUCCEEDED))
    with pytest.raises(InvalidTransition):
        done.evolve(status=JobStatus.RUNNING)
    with pytest.raises(InvalidTransition):
        make_job(clock).evolve(status=JobStatus.SUCCEEDED)


def test_ttl_is_set(store, clock, redis):
    job = store.create(make_job(clock))
    assert 0 < redis.ttl(f"mes:job:{job.id}") <= 3600


def test_indexes_follow_status(store, clock):
    a = store.create(make_job(clock))
    clock.advance(0.01)
    b = store.create(make_job(clock))
    assert store.queue_position(a) == 1 and store.queue_position(b) == 2
    assert store.model_counts(["smollm2:135m"]) == {"smollm2:135m": (2, 0)}
    a = store.save(a.evolve(status=JobStatus.RUNNING))
    assert store.queue_position(b) == 1 and store.queue_position(a) is None
    assert store.model_counts(["smollm2:135m"]) == {"smollm2:135m": (1, 1)}
    store.save(a.evolve(status=JobStatus.FAILED))
    assert store.model_counts(["smollm2:135m"]) == {"smollm2:135m": (1, 0)}


def test_final_state_is_published(store, clock, redis):
    pubsub = redis.pubsub()
    pubsub.subscribe(FINAL_CHANNEL)
    pubsub.get_message(timeout=1)
    job = store.save(store.create(make_job(clock)).evolve(status=JobStatus.RUNNING))
    assert pubsub.get_message(timeout=0.1) is None
    store.save(job.evolve(status=JobStatus.SUCCEEDED))
    message = pubsub.get_message(timeout=1)
    assert message["data"] == job.id


def test_list_owned_is_newest_first_with_cursor(store, clock):
    ids = []
    for _ in range(5):
        ids.append(store.create(make_job(clock)).id)
        clock.advance(1)
    store.create(make_job(clock, owner="bob"))
    page, cursor = store.list_owned("alice", limit=3)
    assert [job.id for job in page] == ids[::-1][:3]
    rest, cursor2 = store.list_owned("alice", limit=3, before_ms=cursor)
    assert [job.id for job in rest] == ids[::-1][3:] and cursor2 is None
    everyone, _ = store.list_owned(None, limit=10)
    assert len(everyone) == 6


def test_last_used(store):
    assert store.last_used(["a"]) == {}
    store.mark_used("a", 12.5)
    assert store.last_used(["a", "b"]) == {"a": 12.5}


def test_counters_count_submissions_and_final_states(store, clock):
    a = store.create(make_job(clock))
    b = store.create(make_job(clock))
    store.save(store.save(a.evolve(status=JobStatus.RUNNING)).evolve(status=JobStatus.SUCCEEDED))
    store.save(b.evolve(status=JobStatus.CANCELLED))
    assert store.counters() == {"jobs_submitted": 2, "jobs_succeeded": 1, "jobs_cancelled": 1}
