"""Run swap-aware scheduling on the real stack: a backend that holds one model, three families.

The simulated engine takes a second to load a model and holds one at a time; MES holds every
job and grants the backend to one model at a time. Loads are the engine's own counters.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from mes.bench.processes import wait_until
from tests.support.stack import ALICE, PrivateStack

pytestmark = pytest.mark.integration

ROOT = {"Authorization": "Bearer root-secret-4444"}
MODELS = ["alpha:1b", "bravo:1b", "charlie:1b"]
QUANTUM_S = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("scheduling")
    models_file = log_dir / "models.json"
    models_file.write_text(json.dumps({
        "families": {f"f{i}": {"concurrency": 2} for i in range(len(MODELS))},
        "models": [{"id": m, "family": f"f{i}", "timeout_s": 300, "max_tokens": 64}
                   for i, m in enumerate(MODELS)]}))
    engine = [flag for m in MODELS for flag in ("--model", m)]
    stack = PrivateStack(log_dir, engine_args=(
        *engine, "--load-ms", "1000", "--token-ms", "5", "--prompt-ms", "0",
        "--max-loaded", "1", "--num-parallel", "2", "--response-tokens", "8"),
        settings={"MES_SCHEDULER": "on", "MES_MAX_LOADED_MODELS": "1",
                  "MES_SCHED_QUANTUM_S": str(QUANTUM_S), "MES_REAPER_INTERVAL_S": "1",
                  "MES_LEASE_TTL_S": "5"})
    stack.models_file = models_file
    with stack:
        stack.start_redis()
        stack.start_engine()
        for i in range(len(MODELS)):
            stack.start_worker(f"f{i}", concurrency=2, queue=f"mes.f{i}")
        stack.start_beat()
        stack.start_web()
        yield stack


def loads(stack) -> dict[str, int]:
    stats = requests.get(stack.engine_url + "/mes-engine/stats", timeout=5).json()["models"]
    return {m: stats[m]["loads"] for m in MODELS}


def run_batch(stack, lines: list[dict]) -> str:
    created = requests.post(stack.web_url + "/v1/batches", json={"requests": lines},
                            headers=ALICE, timeout=30)
    assert created.status_code == 202, created.text
    return created.json()["id"]


def batch_job_ids(stack, batch_id: str) -> list[str]:
    wait_until(lambda: batch(stack, batch_id)["finished_at"] is not None, 120, "the batch ended")
    lines = requests.get(f"{stack.web_url}/v1/batches/{batch_id}/results", headers=ALICE,
                         timeout=30).text.splitlines()
    return [json.loads(line)["job"]["id"] for line in lines]


def batch(stack, batch_id: str) -> dict:
    return requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=ALICE,
                        timeout=10).json()


def line(model: str, i: int) -> dict:
    return {"custom_id": f"{model}-{i}", "model": model, "prompt": f"q {i}",
            "options": {"max_tokens": 8}}


def test_interleaved_work_loads_each_model_about_once(stack):
    before = loads(stack)
    batch_id = run_batch(stack, [line(m, i) for i in range(10) for m in MODELS])  # A B C A B C
    jobs = stack.jobs(batch_job_ids(stack, batch_id))
    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    paid = {m: loads(stack)[m] - before[m] for m in MODELS}
    # Served in submission order by the engine, nearly every job would load its model.
    assert all(1 <= n <= 2 for n in paid.values()), paid
    assert sum(paid.values()) <= len(MODELS) + 1, paid
    # Each load shows in the record of the job that paid it.
    paid_by_jobs = sum(1 for job in jobs.values() if job["result"]["timings"]["load_ms"] >= 500)
    assert paid_by_jobs == sum(paid.values())


def test_an_interactive_job_for_an_unloaded_model_waits_one_quantum_not_the_whole_batch(stack):
    before = loads(stack)
    batch_id = run_batch(stack, [line("alpha:1b", i) for i in range(120)])
    wait_until(lambda: batch(stack, batch_id)["request_counts"]["succeeded"] >= 4, 60,
               "alpha's batch is being served")
    def scheduling() -> dict:
        return requests.get(stack.web_url + "/v1/status", headers=ROOT,
                            timeout=10).json()["scheduling"]
    # What the backend has loaded is read by the sweep, so it may lag by one sweep.
    wait_until(lambda: scheduling()["loaded"] == ["alpha:1b"], 15, "the sweep saw alpha loaded")
    status = scheduling()
    assert status["grants"]["alpha:1b"]["state"] == "active"
    assert status["loads"]["alpha:1b"] >= 1
    metrics = requests.get(stack.web_url + "/metrics", timeout=10).text
    assert re.search(r'^mes_scheduler_grant\{.*model="alpha:1b",state="active"\} 1\.0$',
                     metrics, re.M), metrics
    assert re.search(r'^mes_model_loads_total\{.*model="alpha:1b"\} [1-9]', metrics, re.M)

    response = requests.post(stack.web_url + "/v1/jobs", headers=ALICE, timeout=10, json={
        "model": "bravo:1b", "prompt": "now", "options": {"max_tokens": 8}})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_until(lambda: stack.jobs([job_id])[job_id]["status"] == "succeeded", 120,
               "the interactive job ended")
    job = stack.jobs([job_id])[job_id]
    assert job["result"]["timings"]["load_ms"] >= 500  # bravo was not loaded: it paid the load
    left = batch(stack, batch_id)["request_counts"]
    # alpha yielded after its quantum: bravo did not wait behind all 120 of alpha's jobs.
    assert left["succeeded"] < 120, (left, job)
    jobs = stack.jobs(batch_job_ids(stack, batch_id))
    assert {j["status"] for j in jobs.values()} == {"succeeded"}
    assert max(j["finished_at"] for j in jobs.values()) > job["finished_at"]
    paid = {m: loads(stack)[m] - before[m] for m in MODELS}
    # alpha, one swap to bravo and back; alpha's next quanta need no load.
    assert paid["bravo:1b"] == 1 and paid["alpha:1b"] <= 2 and paid["charlie:1b"] == 0, paid


def test_a_model_the_backend_unloads_by_itself_is_noticed_and_counted(stack):
    def scheduling() -> dict:
        return requests.get(stack.web_url + "/v1/status", headers=ROOT,
                            timeout=10).json()["scheduling"]
    batch_id = run_batch(stack, [line("charlie:1b", i) for i in range(2)])
    assert {j["status"] for j in stack.jobs(batch_job_ids(stack, batch_id)).values()} == {
        "succeeded"}
    wait_until(lambda: scheduling()["loaded"] == ["charlie:1b"], 30, "the sweep saw charlie")
    before = scheduling()["self_unloads"]
    # Behind MES's back, as the backend's own keep_alive would: MES did not ask for it.
    requests.post(stack.engine_url + "/api/generate", timeout=10,
                  json={"model": "charlie:1b", "keep_alive": 0}).raise_for_status()
    wait_until(lambda: scheduling()["loaded"] == [], 30, "the sweep saw charlie go")
    after = scheduling()
    assert after["self_unloads"].get("charlie:1b", 0) == before.get("charlie:1b", 0) + 1
    # The models MES itself unloaded to make room are counted apart, and timed.
    assert all(after["self_unloads"].get(m, 0) == before.get(m, 0) for m in MODELS[:2])
    assert set(after["unloads"]) <= set(after["unload_s"])
    metrics = requests.get(stack.web_url + "/metrics", timeout=10).text
    assert re.search(r'^mes_model_self_unloads_total\{.*model="charlie:1b"\} [1-9]', metrics,
                     re.M), metrics
