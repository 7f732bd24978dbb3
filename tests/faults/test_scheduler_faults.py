"""Kill with -9 the worker whose model holds the backend's grant: the grant is freed, the other
model gets the backend, and once a worker is back every job has ended, exactly once."""

from __future__ import annotations

import signal

import pytest
import requests

from mes.bench.processes import wait_until
from mes.store import names
from tests.faults.conftest import report
from tests.support.stack import ALICE

pytestmark = pytest.mark.faults

ROOT = {"Authorization": "Bearer root-secret-4444"}
SMOLLM, PHI = "smollm2:135m", "phi3:mini"


def scheduling(stack) -> dict:
    return requests.get(stack.web_url + "/v1/status", headers=ROOT,
                        timeout=10).json()["scheduling"]


def test_worker_killed_while_its_model_holds_the_grant(stack):
    stack.engine_args = ("--model", SMOLLM, "--model", PHI, "--token-ms", "50",
                         "--load-ms", "300", "--max-loaded", "1", "--num-parallel", "2")
    # A long quantum: phi gets the backend only because smollm's worker is gone.
    stack.extra_env = {"MES_SCHEDULER": "on", "MES_MAX_LOADED_MODELS": "1",
                       "MES_SCHED_QUANTUM_S": "600"}
    stack.start_redis()
    stack.start_engine()
    worker = stack.start_worker("smollm", concurrency=2, queue="mes.smollm")
    stack.start_worker("phi", concurrency=1, queue="mes.phi")
    stack.start_beat()
    stack.start_web()
    lines = [{"custom_id": f"{model}-{i}", "model": model, "prompt": f"q {i}",
              "options": {"max_tokens": 16}, "timeout_s": 120}
             for i in range(16) for model in (SMOLLM, PHI) if model == SMOLLM or i < 6]
    created = requests.post(stack.web_url + "/v1/batches", json={"requests": lines},
                            headers=ALICE, timeout=30)
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    ids = stack.redis().lrange(names.batch_jobs(batch_id), 0, -1)

    def jobs_by_model() -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {SMOLLM: [], PHI: []}
        for job in stack.jobs(ids).values():
            found[job["model"]].append(job)
        return found

    def smollm_half_way() -> bool:
        states = [job["status"] for job in jobs_by_model()[SMOLLM]]
        return states.count("succeeded") >= 3 and states.count("running") == 2
    wait_until(smollm_half_way, 60, "smollm's jobs running under its grant")
    assert set(scheduling(stack)["grants"]) == {SMOLLM}
    assert all(job["status"] == "queued" for job in jobs_by_model()[PHI])  # held, waiting
    worker.stop(signal.SIGKILL)

    # Without a live worker, smollm's grant goes, and phi is served while smollm is down.
    wait_until(lambda: all(job["status"] == "succeeded" for job in jobs_by_model()[PHI]), 60,
               "phi's jobs served after smollm's worker died")
    assert SMOLLM not in scheduling(stack)["grants"]
    assert any(job["status"] != "succeeded" for job in jobs_by_model()[SMOLLM])

    stack.start_worker("smollm-2", concurrency=2, queue="mes.smollm")
    wait_until(lambda: requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=ALICE,
                                    timeout=10).json()["status"] == "completed", 120,
               "the batch completed once a smollm worker was back")
    jobs = {job["id"]: job for model_jobs in jobs_by_model().values() for job in model_jobs}
    stats = requests.get(stack.engine_url + "/mes-engine/stats", timeout=5).json()["models"]
    figures = report("worker_killed_holding_the_grant", jobs,
                     stats[SMOLLM]["completed"] + stats[PHI]["completed"],
                     engine_loads={SMOLLM: stats[SMOLLM]["loads"], PHI: stats[PHI]["loads"]})
    assert figures["submitted"] == 22 and figures["lost"] == 0 and figures["succeeded"] == 22
    assert figures["executed_twice"] == 0
    assert figures["reruns_after_worker_death"] >= 1  # it was killed with jobs running
