"""A batch's bulk create writes exactly what creating its jobs one SAVE each writes."""

from __future__ import annotations

import fakeredis
import pytest

from mes.jobs import Job, JobKind, JobStatus
from mes.store import batches as batch_module
from mes.store import names
from mes.store.batches import BatchStore
from mes.store.held import held_score
from mes.store.jobs import RedisJobStore, StaleJob

NOW = 1_700_000_000.0
BATCH = "batch_1"


def batch_jobs(n: int, priority: str) -> list[Job]:
    """Return n batch jobs over two models, one with a retried attempt and rich fields."""
    return [Job(id=f"job_{i:04d}", owner="alice",
                model="smollm2:135m" if i % 3 else "phi3:mini",
                queue="mes.smollm" if i % 3 else "mes.phi", kind=JobKind.INFERENCE,
                status=JobStatus.QUEUED, created_at=NOW, deadline_at=NOW + 30 + i % 2,
                request={"prompt": f"Say hello {i}", "options": {"max_tokens": 8}},
                priority=priority, metadata={"i": i} if i % 2 else {},
                request_id="req_1", batch_id=BATCH, custom_id=f"line-{i}")
            for i in range(n)]


def per_job_ingest(store: RedisJobStore, jobs: list[Job], keep_s: int) -> None:
    """Ingest as the batch path did before the bulk script: one SAVE a job, then held and list."""
    batches = BatchStore(store)
    batches.create(BATCH, "alice", [], created_at=NOW, priority=jobs[0].priority,
                   metadata={}, keep_s=keep_s)
    redis = store.redis
    # The record's total and models as the real create writes them.
    models: dict[str, int] = {}
    for job in jobs:
        models[job.model] = models.get(job.model, 0) + 1
    redis.hset(names.batch(BATCH), mapping={"total": len(jobs), "models": __import__(
        "json").dumps(models)})
    redis.hincrby(names.COUNTERS, "batch_jobs_ingested", len(jobs))
    for index, job in enumerate(jobs):
        store.create(job)  # the single-job path: one SAVE
        redis.zadd(names.held(job.model), {job.id: held_score(job, index)})
    redis.rpush(names.batch_jobs(BATCH), *[job.id for job in jobs])
    redis.expire(names.batch_jobs(BATCH), keep_s)


def dump(redis) -> dict[str, tuple]:
    """Return every key's type, value and TTL (streams by their entries' fields, not ids)."""
    found = {}
    for key in sorted(redis.keys("*")):
        kind = redis.type(key)
        if kind == "hash":
            value = redis.hgetall(key)
        elif kind == "zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = redis.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(redis.smembers(key))
        elif kind == "stream":
            value = [fields for _, fields in redis.xrange(key)]
        else:
            value = redis.get(key)
        found[key] = (kind, value, redis.ttl(key))
    return found


@pytest.mark.parametrize("priority", ["batch", "interactive"])
def test_bulk_create_writes_what_one_save_per_job_writes(priority, monkeypatch):
    monkeypatch.setattr(batch_module, "CHUNK", 7)  # several chunks, one of them short
    jobs = batch_jobs(20, priority)
    keep_s = 7 * 86400 + 3600
    single, bulk = (fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
                    for _ in range(2))
    per_job_ingest(RedisJobStore(single, ttl_s=3600), jobs, keep_s)
    BatchStore(RedisJobStore(bulk, ttl_s=3600)).create(
        BATCH, "alice", jobs, created_at=NOW, priority=priority, metadata={}, keep_s=keep_s)
    want, got = dump(single), dump(bulk)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key][:2] == want[key][:2], key
        assert abs(got[key][2] - want[key][2]) <= 2, key  # TTLs count from a moment apart
    assert len(want) > 2 * len(jobs)  # every job's hash and stream were compared


def test_bulk_create_writes_nothing_of_a_chunk_whose_id_is_taken():
    redis = fakeredis.FakeRedis(decode_responses=True)
    store = RedisJobStore(redis, ttl_s=3600)
    jobs = batch_jobs(3, "batch")
    store.create(jobs[1])
    before = dump(redis)
    with pytest.raises(StaleJob):
        BatchStore(store)._create_chunk(BATCH, "alice", jobs, 0, 3600)
    assert dump(redis) == before
