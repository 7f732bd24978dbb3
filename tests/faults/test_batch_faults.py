"""Kill a worker with -9 in the middle of a batch: every job still ends, exactly once."""

from __future__ import annotations

import json
import signal

import pytest
import requests

from mes.bench.processes import wait_until
from tests.faults.conftest import report
from tests.support.stack import ALICE

pytestmark = pytest.mark.faults


def test_worker_killed_mid_batch_every_job_ends_once(stack):
    stack.engine_args = ("--token-ms", "20", "--load-ms", "5", "--num-parallel", "8")
    stack.extra_env = {"MES_REAPER_INTERVAL_S": "1"}
    stack.start_redis()
    stack.start_engine()
    worker = stack.start_worker("w1", concurrency=2)
    stack.start_beat()
    stack.start_web()
    body = {"requests": [{"custom_id": f"f-{i}", "model": "smollm2:135m", "prompt": f"q {i}",
                          "options": {"max_tokens": 16}, "timeout_s": 120} for i in range(30)]}
    created = requests.post(stack.web_url + "/v1/batches", json=body, headers=ALICE, timeout=30)
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]

    def counts():
        return requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=ALICE,
                            timeout=10).json()["request_counts"]
    wait_until(lambda: counts()["succeeded"] >= 5 and counts()["running"] > 0, 60,
               "the batch half way, with jobs running")
    worker.stop(signal.SIGKILL)
    stack.start_worker("w2", concurrency=2)
    wait_until(lambda: requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=ALICE,
                                    timeout=10).json()["status"] == "completed", 120,
               "the batch completed after the kill")
    lines = requests.get(f"{stack.web_url}/v1/batches/{batch_id}/results", headers=ALICE,
                         timeout=30).text.splitlines()
    ids = [json.loads(line)["job"]["id"] for line in lines]
    jobs = stack.jobs(ids)
    figures = report("worker_killed_mid_batch", jobs, stack.engine_stats()["completed"])
    assert len(ids) == 30 and figures["lost"] == 0 and figures["succeeded"] == 30
    assert figures["executed_twice"] == 0
    assert counts()["succeeded"] == 30  # the batch's own counts agree with its jobs
