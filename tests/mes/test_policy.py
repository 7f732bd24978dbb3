"""Check residency (LRU eviction under a cap) and the per-model concurrency semaphore."""

from __future__ import annotations

import time

import pytest

from mes.jobs import JobStatus
from mes.store import names
from mes.store.grants import GrantRecords
from mes.store.jobs import SlotBusy, SlotClaim
from mes.engine.config import EngineConfig
from mes.engine.server import EngineServer
from mes.backends.ollama import OllamaClient
from mes.worker.residency import Residency


@pytest.fixture(scope="module")
def roomy_engine():
    # The engine itself would keep 10 models: only MES's cap should evict.
    server = EngineServer(EngineConfig(port=0, max_loaded_models=10,
                                       models=["a:1", "b:1", "c:1", "d:1"])).start()
    yield server
    server.shutdown()


@pytest.fixture
def roomy_backend(roomy_engine):
    roomy_engine.scheduler.reset()
    client = OllamaClient(roomy_engine.url, connect_timeout_s=1, read_timeout_s=5)
    yield client
    client.close()


def loaded(backend):
    return {m["name"] for m in backend.ps()}


def test_lru_model_is_evicted_at_the_cap(store, roomy_backend, clock):
    residency = Residency(store, roomy_backend, "roomy", max_loaded=2)
    for model in ("a:1", "b:1"):
        assert residency.admit(model, clock.now()).admitted
        roomy_backend.load(model, "5m")
        clock.advance(100)  # beyond the loading grace: /api/ps is the truth now
    store.mark_used("a:1", clock.now())  # a was used after b: b is least recently used
    clock.advance(100)
    admission = residency.admit("c:1", clock.now())
    assert admission.admitted and admission.evicted == "b:1"
    assert loaded(roomy_backend) == {"a:1"}
    # Counted and timed, as MES's own unload: the scheduler does not take it for the backend's.
    counters = GrantRecords(store.redis, "roomy").counters()
    assert counters["unloads|b:1"] == 1 and counters["unload_s|b:1"] > 0


def test_a_model_in_use_is_never_evicted(store, roomy_backend, clock, redis):
    residency = Residency(store, roomy_backend, "roomy", max_loaded=2)
    for model in ("a:1", "b:1"):
        residency.admit(model, clock.now())
        roomy_backend.load(model, "5m")
        clock.advance(100)
    far = int(time.time() * 1000) + 60_000
    redis.zadd(names.slots("a:1"), {"worker-a": far})  # a job holds a slot on each model
    redis.zadd(names.slots("b:1"), {"worker-b": far})
    refused = residency.admit("c:1", clock.now())
    assert not refused.admitted and "running" in refused.reason
    redis.zrem(names.slots("a:1"), "worker-a")
    admitted = residency.admit("c:1", clock.now())
    assert admitted.evicted == "a:1"
    assert loaded(roomy_backend) == {"b:1"}


def test_loaded_model_is_admitted_without_eviction(store, roomy_backend, clock):
    residency = Residency(store, roomy_backend, "roomy", max_loaded=1)
    residency.admit("a:1", clock.now())
    roomy_backend.load("a:1", "5m")
    assert residency.admit("a:1", clock.now()) .evicted is None


def _start(store, job, token, ttl_ms=30_000, limit=2):
    return store.save(job.evolve(status=JobStatus.RUNNING),
                      slot=SlotClaim(limit, token, int(time.time() * 1000), ttl_ms))


def test_semaphore_limits_holders_and_frees_on_release(submit, store):
    first, second, third = submit(), submit(), submit()
    _start(store, first, "t1")
    _start(store, second, "t2")
    with pytest.raises(SlotBusy):
        _start(store, third, "t3")
    assert store.get(third.id).status is JobStatus.QUEUED  # refused as a whole
    assert store.leases.slots_in_use(first.model) == 2
    store.leases.release_slot(first.model, "t1")
    _start(store, third, "t3")
    store.leases.release_slot(first.model, "t2")
    store.leases.release_slot(first.model, "t3")
    assert store.leases.slots_in_use(first.model) == 0


def test_dead_holders_slot_expires(submit, store):
    dead, waiting = submit(), submit()
    _start(store, dead, "dead", ttl_ms=300, limit=1)  # the process dies: no renewal, no release
    with pytest.raises(SlotBusy):
        _start(store, waiting, "waiting", limit=1)
    time.sleep(0.4)
    _start(store, waiting, "waiting", limit=1)
    assert store.leases.slots_in_use(dead.model) == 1


def test_a_job_whose_worker_died_does_not_keep_its_model_in(store, roomy_backend, clock, redis):
    residency = Residency(store, roomy_backend, "roomy", max_loaded=1)
    residency.admit("a:1", clock.now())
    roomy_backend.load("a:1", "5m")
    clock.advance(100)
    redis.sadd(names.running("a:1"), "job-of-a-dead-worker")  # running, its slot expired
    assert residency.admit("c:1", clock.now()).evicted == "a:1"
