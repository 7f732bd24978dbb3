"""Restart Redis (AOF on) in the middle of a batch: nothing accepted may be lost."""

from __future__ import annotations


import pytest
import requests

from tests.faults.conftest import ALICE, MODEL, report

pytestmark = pytest.mark.faults


def test_redis_restart_with_aof_loses_no_accepted_job(stack):
    stack.engine_args = ("--token-ms", "5", "--load-ms", "5", "--num-parallel", "8")
    stack.start_redis(appendonly=True)
    stack.start_engine()
    stack.start_worker("w1", concurrency=2)
    stack.start_beat()
    stack.start_web()
    accepted, refused = [], 0
    for i in range(150):
        if i == 50:
            stack.restart_redis(appendonly=True)
        try:
            response = requests.post(stack.web_url + "/v1/jobs", headers=ALICE, timeout=15,
                                     json={"model": MODEL, "prompt": f"restart {i}", "timeout_s": 120})
        except requests.RequestException:
            refused += 1
            continue
        if response.status_code == 202:
            accepted.append(response.json()["id"])
        else:
            refused += 1
    jobs = stack.settle(accepted, 120)
    figures = report("redis_restart_aof", jobs, stack.engine_stats()["completed"], refused=refused)
    assert figures["lost"] == 0 and figures["succeeded"] == len(accepted)
    assert len(accepted) >= 140  # web and workers came back without help
    # Web and the worker's heartbeat both reconnected by themselves.
    ready = requests.get(stack.web_url + "/ready", timeout=10).json()
    assert ready["redis"] == "ok" and ready["workers"]["smollm"] == 1, ready
