"""Break the engine (refused connections, hangs) and cancel mid-stream; count what survives."""

from __future__ import annotations

import signal
import time

import pytest
import requests

from mes.bench.processes import wait_until
from tests.faults.conftest import ALICE, report

pytestmark = pytest.mark.faults


def test_engine_refusing_connections_for_10s_loses_nothing(stack):
    stack.engine_args = ("--token-ms", "1", "--load-ms", "5", "--num-parallel", "8")
    stack.start_redis()
    stack.start_engine()
    stack.start_worker("w1", concurrency=4)
    stack.start_beat()
    stack.start_web()
    ids = stack.submit(100, prefix="before")
    # Hold new generations and let those under way end, so that no job completes between
    # this count and the kill (the count dies with the engine): the held ones are cut by it.
    requests.post(stack.engine_url + "/mes-engine/faults", json={"hang": True},
                  timeout=5).raise_for_status()
    time.sleep(0.5)
    completed_before = stack.engine_stats()["completed"]
    stack.engine.stop(signal.SIGKILL)  # connections are now refused
    down_at = time.monotonic()
    ids += stack.submit(100, prefix="during")
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
    stack.start_engine()
    jobs = stack.settle(ids, 120)
    completed = completed_before + stack.engine_stats()["completed"]
    breaker = requests.get(stack.web_url + "/ready", timeout=5).json().get("breaker")
    figures = report("engine_refused_10s", jobs, completed,
                     attempts_max=max(job["attempts"] for job in jobs.values()),
                     breaker_after=breaker["state"] if breaker else None)
    assert figures["submitted"] == 200 and figures["succeeded"] == 200 and figures["lost"] == 0
    assert figures["executed_twice"] == 0


def test_hanging_engine_fails_job_with_timeout_and_frees_the_slot(stack):
    stack.start_redis()
    stack.start_engine()
    stack.start_worker("w1", concurrency=1)
    stack.start_web()
    requests.post(stack.engine_url + "/mes-engine/faults", json={"hang": True}, timeout=5)
    hung = stack.submit(1, prefix="hang", timeout_s=3)
    jobs = stack.settle(hung, 30)
    requests.delete(stack.engine_url + "/mes-engine/faults", timeout=5)
    after = stack.submit(1, prefix="after")  # the one worker slot must be free again
    jobs.update(stack.settle(after, 30))
    stats = stack.engine_stats()
    figures = report("engine_hangs", jobs, stats["completed"], engine_active=stats["active"])
    assert jobs[hung[0]]["status"] == "failed" and jobs[hung[0]]["error"]["code"] == "timeout"
    assert jobs[after[0]]["status"] == "succeeded"
    assert stats["active"] == 0 and figures["lost"] == 0


def test_cancel_closes_the_engine_stream(stack):
    stack.start_redis()
    stack.start_engine()
    stack.start_worker("w1", concurrency=1)
    stack.start_web()
    requests.post(stack.engine_url + "/mes-engine/faults", json={"hang": True}, timeout=5)
    job_id = stack.submit(1, prefix="cancel")[0]
    wait_until(lambda: stack.jobs([job_id])[job_id]["status"] == "running", 30, "job running")
    wait_until(lambda: stack.engine_stats()["active"] == 1, 30, "engine busy")
    asked = time.monotonic()
    response = requests.delete(f"{stack.web_url}/v1/jobs/{job_id}", headers=ALICE, timeout=10)
    wait_until(lambda: stack.engine_stats()["cancelled"] == 1, 10, "engine sees the disconnect")
    seen_s = round(time.monotonic() - asked, 3)
    jobs = stack.settle([job_id], 10)
    figures = report("cancel_running", jobs, stack.engine_stats()["completed"],
                     disconnect_seen_after_s=seen_s)
    assert response.status_code == 200 and jobs[job_id]["status"] == "cancelled"
    assert figures["lost"] == 0
