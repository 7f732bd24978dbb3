"""Check residency (LRU eviction under a cap) and the per-model concurrency semaphore."""

from __future__ import annotations

import pytest

from mes.concurrency import ModelSlot, SlotScripts, slots_in_use
from mes.renewer import Renewer
from mes.engine.config import EngineConfig
from mes.engine.server import EngineServer
from mes.backends.ollama import OllamaClient
from mes.residency import Residency


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
    residency = Residency(store, roomy_backend, max_loaded=2)
    for model in ("a:1", "b:1"):
        assert residency.admit(model, clock.now()).admitted
        roomy_backend.load(model, "5m")
        clock.advance(100)  # beyond the loading grace: /api/ps is the truth now
    store.mark_used("a:1", clock.now())  # a was used after b: b is least recently used
    clock.advance(100)
    admission = residency.admit("c:1", clock.now())
    assert admission.admitted and admission.evicted == "b:1"
    assert loaded(roomy_backend) == {"a:1"}


def test_a_model_in_use_is_never_evicted(store, roomy_backend, clock, redis):
    residency = Residency(store, roomy_backend, max_loaded=2)
    for model in ("a:1", "b:1"):
        residency.admit(model, clock.now())
        roomy_backend.load(model, "5m")
        clock.advance(100)
    busy_a = ModelSlot(SlotScripts(redis), Renewer(0.1), "a:1", limit=1, ttl_s=30)
    busy_b = ModelSlot(SlotScripts(redis), Renewer(0.1), "b:1", limit=1, ttl_s=30)
    assert busy_a.try_acquire() and busy_b.try_acquire()
    refused = residency.admit("c:1", clock.now())
    assert not refused.admitted and "running" in refused.reason
    busy_a.release()
    admitted = residency.admit("c:1", clock.now())
    busy_b.release()
    assert admitted.evicted == "a:1"
    assert loaded(roomy_backend) == {"b:1"}


def test_loaded_model_is_admitted_without_eviction(store, roomy_backend, clock):
    residency = Residency(store, roomy_backend, max_loaded=1)
    residency.admit("a:1", clock.now())
    roomy_backend.load("a:1", "5m")
    assert residency.admit("a:1", clock.now()) .evicted is None


def test_semaphore_limits_holders_and_frees_on_release(redis):
    first, second, third = (ModelSlot(SlotScripts(redis), Renewer(0.1), "m:1", limit=2, ttl_s=30)
                            for _ in range(3))
    assert first.try_acquire() and second.try_acquire()
    assert not third.try_acquire()
    assert slots_in_use(redis, "m:1") == 2
    first.release()
    assert third.acquire(wait_s=1)
    second.release()
    third.release()
    assert slots_in_use(redis, "m:1") == 0


def test_dead_holders_slot_expires(redis):
    dead = ModelSlot(SlotScripts(redis), Renewer(0.1), "m:2", limit=1, ttl_s=0.3)
    assert dead.try_acquire()
    dead._renewer.remove(dead._handle)  # the process died: no more renewals, no release
    waiting = ModelSlot(SlotScripts(redis), Renewer(0.1), "m:2", limit=1, ttl_s=30)
    assert waiting.acquire(wait_s=3)
    waiting.release()
