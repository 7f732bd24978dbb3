"""Scheduler behaviour: keep_alive, eviction, slots, the pending queue and exact counters."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests

from mes.engine.config import EngineConfig
from mes.engine.scheduler import Cancelled, QueueFull, Scheduler

MODEL = "phi3:mini"


def post(engine, http, path="/api/generate", **body):
    body = {"model": MODEL, "prompt": "hello", "stream": False, **body}
    return http.post(engine.url + path, json=body)


def ps_names(engine, http):
    return [m["name"] for m in http.get(engine.url + "/api/ps").json()["models"]]


def test_keep_alive_sets_expires_at(engine, http):
    post(engine, http, keep_alive="1h")
    (entry,) = http.get(engine.url + "/api/ps").json()["models"]
    left = datetime.fromisoformat(entry["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=55) < left <= timedelta(hours=1)
    post(engine, http, keep_alive=-1)
    (entry,) = http.get(engine.url + "/api/ps").json()["models"]
    assert datetime.fromisoformat(entry["expires_at"]).year > 2200
    post(engine, http, keep_alive=90)
    (entry,) = http.get(engine.url + "/api/ps").json()["models"]
    left = datetime.fromisoformat(entry["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(seconds=60) < left <= timedelta(seconds=90)


def test_default_keep_alive_comes_from_config(make_engine, http):
    engine = make_engine(keep_alive=600.0)
    post(engine, http)
    (entry,) = http.get(engine.url + "/api/ps").json()["models"]
    left = datetime.fromisoformat(entry["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=9) < left <= timedelta(minutes=10)


def test_expired_model_disappears_from_ps(engine, http, wait_until):
    post(engine, http, keep_alive="200ms")
    wait_until(lambda: ps_names(engine, http) == [], what="model to expire")
    counters = engine.stats()["models"][MODEL]
    assert counters["loads"] == 1 and counters["unloads"] == 1 and not counters["loaded"]


def test_keep_alive_zero_unloads_after_the_request(engine, http):
    assert post(engine, http, keep_alive=0).json()["done"] is True
    assert ps_names(engine, http) == []
    assert post(engine, http, keep_alive="0s").json()["load_duration"] > 0  # loaded again


def test_lru_idle_model_is_evicted_over_max_loaded(make_engine, http):
    engine = make_engine(max_loaded_models=2)
    for model in ("llama3.1:8b", "mistral:7b", "llama3.1:8b", "gemma:2b"):
        assert post(engine, http, model=model).status_code == 200
    assert sorted(ps_names(engine, http)) == ["gemma:2b", "llama3.1:8b"]
    models = engine.stats()["models"]
    assert models["mistral:7b"]["unloads"] == 1 and models["llama3.1:8b"]["unloads"] == 0
    assert engine.stats()["loaded_models"] == ["gemma:2b", "llama3.1:8b"]


def test_counters_are_exact_under_concurrency(make_engine):
    engine = make_engine(num_parallel=2, token_ms=5, response_tokens=8)

    def one(i):
        with requests.Session() as session:
            return post(engine, session, prompt=f"request {i}").status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(one, range(10)))
    assert statuses == [200] * 10
    stats = engine.stats()
    counters = stats["models"][MODEL]
    assert 1 <= counters["max_active"] <= 2
    assert counters["active"] == 0 and counters["waiting"] == 0
    assert (counters["requests"], counters["completed"], counters["failed"], counters["loads"]) == (10, 10, 0, 1)
    assert counters["tokens"] == 80 and stats["total_requests"] == 10


def test_num_parallel_slots_and_queue_limit(make_engine, http, wait_until):
    engine = make_engine(num_parallel=2, max_queue=1, faults={"hang": True})
    results = []

    def one(i):
        with requests.Session() as session:
            results.append(post(engine, session, prompt=f"r{i}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: (lambda m: m.get("active") == 2 and m.get("waiting") == 1)(
        engine.stats()["models"].get(MODEL, {})), what="2 running + 1 waiting")
    busy = post(engine, http, prompt="one too many")
    assert busy.status_code == 503
    assert busy.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    assert http.delete(engine.url + "/mes-engine/faults").json()["hang"] is False
    for t in threads:
        t.join(10)
    assert [r.status_code for r in results] == [200, 200, 200]
    counters = engine.stats()["models"][MODEL]
    assert counters["max_active"] == 2 and counters["completed"] == 3 and counters["failed"] == 1


def test_reset_zeroes_counters_and_unloads(engine, http):
    post(engine, http)
    stats = http.post(engine.url + "/mes-engine/reset").json()
    assert stats["loaded_models"] == [] and stats["total_requests"] == 0
    counters = stats["models"][MODEL]
    assert all(counters[k] == 0 for k in ("requests", "completed", "loads", "unloads", "max_active"))
    assert ps_names(engine, http) == []


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_scheduler(**config):
    events = []
    clock = FakeClock()
    scheduler = Scheduler(EngineConfig(**config), lambda m, runner: events.append(("load", m)),
                          lambda m: events.append(("unload", m)), clock=clock)
    return scheduler, clock, events


def never():
    return False


def test_unit_expiry_follows_the_clock():
    scheduler, clock, events = make_scheduler()
    lease = scheduler.acquire("a:1", 30.0, never)
    assert lease.load_ns > 0 and events == [("load", "a:1")]
    clock.now += 100  # an active model never expires
    assert [name for name, _ in scheduler.loaded()] == ["a:1"]
    scheduler.release(lease, "completed", tokens=4)
    clock.now += 29
    assert scheduler.loaded()[0][0] == "a:1"
    clock.now += 2
    assert scheduler.loaded() == [] and events[-1] == ("unload", "a:1")


def test_unit_busy_models_are_not_evicted_and_queue_overflows():
    scheduler, clock, events = make_scheduler(max_loaded_models=1, max_queue=0)
    lease = scheduler.acquire("a:1", 60.0, never)
    with pytest.raises(QueueFull):  # b:1 needs a:1's memory, a:1 is busy, nobody may wait
        scheduler.acquire("b:1", 60.0, never)
    scheduler.release(lease, "completed")
    scheduler.acquire("b:1", 60.0, never)
    assert events == [("load", "a:1"), ("unload", "a:1"), ("load", "b:1")]


def test_unit_waiter_gives_up_when_told_to():
    scheduler, _, _ = make_scheduler(num_parallel=1)
    scheduler.acquire("a:1", 60.0, never)
    with pytest.raises(Cancelled):
        scheduler.acquire("a:1", 60.0, lambda: True)
    assert scheduler.stats()["waiting"] == 0


def test_unit_unload_request_waits_for_running_generation():
    scheduler, _, events = make_scheduler()
    lease = scheduler.acquire("a:1", 60.0, never)
    scheduler.unload("a:1")
    assert scheduler.stats()["loaded_models"] == ["a:1"]
    scheduler.release(lease, "completed")
    assert scheduler.stats()["loaded_models"] == [] and events[-1] == ("unload", "a:1")


def test_changing_num_ctx_reloads_the_model(engine, http):
    first = post(engine, http, options={"num_ctx": 2048})  # the default: no reload
    again = post(engine, http)
    assert first.json()["load_duration"] > 0 and again.json()["load_duration"] == 0
    bigger = post(engine, http, options={"num_ctx": 4096})
    assert bigger.json()["load_duration"] > 0
    assert post(engine, http, options={"num_ctx": 4096, "temperature": 0.1}).json()["load_duration"] == 0
    counters = engine.stats()["models"][MODEL]
    assert (counters["loads"], counters["unloads"]) == (2, 1)
    post(engine, http, options={"num_thread": 1})
    post(engine, http, options={"num_batch": 64})
    assert engine.stats()["models"][MODEL]["loads"] == 4


def test_unit_reload_waits_for_running_generations_and_is_not_starved():
    scheduler, _, events = make_scheduler(num_parallel=4)
    old = scheduler.acquire("a:1", 60.0, never, runner="ctx2k")
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("lease", scheduler.acquire(
        "a:1", 60.0, never, runner="ctx4k")))
    waiter.start()
    deadline = datetime.now() + timedelta(seconds=5)
    while scheduler.stats()["waiting"] != 1:
        assert datetime.now() < deadline
    late = []  # same runner as the loaded one, but a reload is pending: it must wait too
    latecomer = threading.Thread(target=lambda: late.append(scheduler.acquire("a:1", 60.0, never, runner="ctx2k")))
    latecomer.start()
    while scheduler.stats()["waiting"] != 2:
        assert datetime.now() < deadline
    assert events == [("load", "a:1")]
    scheduler.release(old, "completed")
    waiter.join(5)
    assert events == [("load", "a:1"), ("unload", "a:1"), ("load", "a:1")] and "lease" in result
    scheduler.release(result["lease"], "completed")
    latecomer.join(5)
    assert len(late) == 1 and events[-2:] == [("unload", "a:1"), ("load", "a:1")]
