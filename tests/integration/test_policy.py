"""Check the queueing policy on a private stack: slots, residency, lanes, limits, warm-ups."""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis as redis_lib
import requests

from mes.store.leases import LeaseStore
from mes.bench.processes import wait_until
from tests.support.stack import ALICE, PrivateStack

pytestmark = pytest.mark.integration
SLOW = ("--token-ms", "25", "--load-ms", "5", "--num-parallel", "8", "--max-loaded", "10")


def models_file(tmp_path, **overrides):
    """Write a models file: one family 'small' holding smollm2:135m and phi3:mini."""
    smollm = {"id": "smollm2:135m", "family": "small", "timeout_s": 120, "max_tokens": 64,
              **overrides.pop("smollm", {})}
    phi = {"id": "phi3:mini", "family": "small", "timeout_s": 120, "max_tokens": 64,
           **overrides.pop("phi", {})}
    data = {"families": {"small": {"concurrency": overrides.pop("concurrency", 2)}},
            "models": [smollm, phi], **overrides}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def stack(tmp_path):
    s = PrivateStack(tmp_path, engine_args=SLOW)
    yield s
    s.stop()


def start(stack, workers=(("w1", 2),), beat=False):
    stack.start_redis()
    stack.start_engine()
    for name, concurrency in workers:
        stack.start_worker(name, concurrency=concurrency, queue="mes.small")
    if beat:
        stack.start_beat()
    stack.start_web()


def test_model_limit_holds_across_two_worker_processes(stack, tmp_path):
    stack.models_file = models_file(tmp_path, smollm={"max_concurrency": 2})
    start(stack, workers=(("w1", 2), ("w2", 2)))
    ids = stack.submit(20, prefix="limit")
    jobs = stack.settle(ids, 120)
    stats = stack.engine_stats()
    print(f"\nPOLICY model_limit: jobs=20 limit=2 worker_processes=4 engine_max_active={stats['max_active']}")
    assert all(job["status"] == "succeeded" for job in jobs.values())
    assert stats["max_active"] <= 2
    assert stats["max_active"] == 2  # and the limit was actually reached


def test_slot_of_a_killed_worker_comes_back_within_the_lease_ttl(stack, tmp_path):
    stack.models_file = models_file(tmp_path, smollm={"max_concurrency": 2})
    start(stack, workers=(("w1", 2),), beat=True)  # beat's reaper re-sends the killed jobs
    client = redis_lib.Redis.from_url(stack.redis_url)
    ids = stack.submit(4, prefix="slot")
    wait_until(lambda: LeaseStore(client).slots_in_use("smollm2:135m") == 2, 30, "two slots held")
    stack.procs[0].stop(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: LeaseStore(client).slots_in_use("smollm2:135m") == 0, 10, "slots freed")
    freed_s = round(time.monotonic() - killed, 2)
    print(f"\nPOLICY slot_after_kill: lease_ttl_s=3 slots_free_after_s={freed_s}")
    stack.start_worker("w2", concurrency=2, queue="mes.small")
    jobs = stack.settle(ids, 60)
    assert all(job["status"] == "succeeded" for job in jobs.values())


def test_late_interactive_job_starts_before_earlier_batch_jobs(stack, tmp_path):
    stack.models_file = models_file(tmp_path, concurrency=1)
    start(stack, workers=(("w1", 1),))
    requests.post(stack.engine_url + "/mes-engine/faults", json={"hang": True}, timeout=5)
    blocker = stack.submit(1, prefix="blocker")
    wait_until(lambda: stack.jobs(blocker)[blocker[0]]["status"] == "running", 30, "blocker running")
    batch = stack.submit(3, prefix="batch", priority="batch")
    interactive = stack.submit(1, prefix="interactive")[0]
    requests.delete(stack.engine_url + "/mes-engine/faults", timeout=5)
    jobs = stack.settle(blocker + batch + [interactive], 60)
    order = sorted(jobs, key=lambda job_id: jobs[job_id]["started_at"])
    print(f"\nPOLICY lanes: start order = {[jobs[j]['priority'] for j in order]}")
    assert order[0] == blocker[0] and order[1] == interactive
    assert all(job["status"] == "succeeded" for job in jobs.values())


def test_queue_full_answers_429_with_retry_after(stack, tmp_path):
    stack.models_file = models_file(tmp_path, concurrency=1, phi={"max_queue": 3})
    start(stack, workers=(("w1", 1),))
    requests.post(stack.engine_url + "/mes-engine/faults", json={"hang": True}, timeout=5)
    first = requests.post(stack.web_url + "/v1/jobs", headers=ALICE, timeout=10,
                          json={"model": "phi3:mini", "prompt": "fill 0"}).json()["id"]
    # The first one holds the only slot (the engine hangs) before the queue fills behind it.
    wait_until(lambda: stack.jobs([first])[first]["status"] == "running", 30, "the first job running")
    accepted, refused = [first], None
    for i in range(1, 6):
        response = requests.post(stack.web_url + "/v1/jobs", headers=ALICE, timeout=10,
                                 json={"model": "phi3:mini", "prompt": f"fill {i}"})
        if response.status_code == 429:
            refused = response
            break
        accepted.append(response.json()["id"])
    requests.delete(stack.engine_url + "/mes-engine/faults", timeout=5)
    assert refused is not None and refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(accepted) == 4  # one running plus three queued
    assert all(job["status"] == "succeeded" for job in stack.settle(accepted, 60).values())


def test_lru_residency_unloads_the_idle_model(stack, tmp_path):
    stack.models_file = models_file(tmp_path)
    stack.extra_env = {"MES_MAX_LOADED_MODELS": "1"}
    start(stack)
    first = stack.submit(1, prefix="first")
    stack.settle(first, 30)
    second = stack.submit(1, prefix="second", model="phi3:mini")
    jobs = stack.settle(second, 30)
    loaded = {m["name"] for m in requests.get(stack.engine_url + "/api/ps", timeout=5).json()["models"]}
    assert jobs[second[0]]["status"] == "succeeded"
    assert loaded == {"phi3:mini"} and stack.engine_stats()["unloads"] == 1


def test_beat_fires_a_warmup_and_workers_warm_on_start(stack, tmp_path):
    stack.models_file = models_file(tmp_path, phi={"warmup": "every 2s", "keep_alive": "10m"},
                                    warmup_on_start=["smollm2:135m"])
    start(stack, beat=True)

    def loaded():
        return {m["name"] for m in requests.get(stack.engine_url + "/api/ps", timeout=5).json()["models"]}
    wait_until(lambda: "smollm2:135m" in loaded(), 30, "warm-up on worker start")
    wait_until(lambda: "phi3:mini" in loaded(), 30, "scheduled warm-up")
    assert stack.engine_stats("phi3:mini")["loads"] >= 1
    assert stack.engine_stats("phi3:mini")["completed"] == 0  # loaded by warm-ups alone, no job
