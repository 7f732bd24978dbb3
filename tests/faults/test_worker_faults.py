"""Kill workers with -9 mid-job and check that no job is lost and none runs twice."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mes.bench.processes import wait_until
from tests.faults.conftest import report

pytestmark = pytest.mark.faults
SLOW = ("--token-ms", "60", "--load-ms", "5", "--num-parallel", "8")  # about 1 s per job


def running_with_lease(stack, ids):
    jobs = stack.jobs(ids)
    return [job_id for job_id, job in jobs.items()
            if job and job["status"] == "running" and stack.lease_pid(job_id)]


def test_child_killed_mid_job_completes_elsewhere(stack):
    stack.engine_args = SLOW
    stack.start_redis()
    stack.start_engine()
    stack.start_worker("w1", concurrency=2)
    stack.start_web()
    ids = stack.submit(6, prefix="child-kill")
    wait_until(lambda: running_with_lease(stack, ids), 30, "a running job")
    victim = running_with_lease(stack, ids)[0]
    os.kill(stack.lease_pid(victim), signal.SIGKILL)
    jobs = stack.settle(ids, 60)
    figures = report("child_killed", jobs, stack.engine_stats()["completed"])
    assert figures["lost"] == 0 and figures["succeeded"] == 6
    assert jobs[victim]["attempts"] == 2 and jobs[victim]["lost_runs"] == 1
    assert figures["executed_twice"] == 0


def test_whole_worker_killed_jobs_finish_on_a_new_worker(stack):
    stack.engine_args = SLOW
    stack.start_redis()
    stack.start_engine()
    worker = stack.start_worker("w1", concurrency=2)
    stack.start_beat()
    stack.start_web()
    ids = stack.submit(6, prefix="worker-kill")
    wait_until(lambda: len(running_with_lease(stack, ids)) == 2, 30, "two running jobs")
    worker.stop(signal.SIGKILL)  # the whole process group: main process and children
    restarted = time.monotonic()
    stack.start_worker("w2", concurrency=2)
    jobs = stack.settle(ids, 90)
    recovery_s = round(time.monotonic() - restarted, 1)
    figures = report("worker_killed", jobs, stack.engine_stats()["completed"], recovery_s=recovery_s)
    assert figures["lost"] == 0 and figures["succeeded"] == 6
    assert figures["reruns_after_worker_death"] == 2
    assert figures["executed_twice"] == 0


def test_poison_job_ends_worker_lost_and_others_succeed(stack):
    stack.engine_args = SLOW
    stack.start_redis()
    stack.start_engine()
    stack.start_worker("w1", concurrency=2)
    stack.start_beat()
    stack.start_web()
    poison = stack.submit(1, prefix="poison")[0]
    others = stack.submit(4, prefix="healthy")
    kills, killed_attempt = 0, 0
    deadline = time.monotonic() + 90
    # Every attempt of the poison job kills its process once it runs: it must stop coming back.
    while time.monotonic() < deadline:
        job = stack.jobs([poison])[poison]
        if job["status"] in ("succeeded", "failed", "cancelled", "expired"):
            break
        pid = stack.lease_pid(poison)
        if job["status"] == "running" and job["attempts"] > killed_attempt and pid:
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
                killed_attempt = job["attempts"]
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    jobs = stack.settle([poison, *others], 60)
    figures = report("poison_job", jobs, stack.engine_stats()["completed"], kills=kills)
    assert jobs[poison]["status"] == "failed" and jobs[poison]["error"]["code"] == "worker_lost"
    assert all(jobs[job_id]["status"] == "succeeded" for job_id in others)
    assert figures["lost"] == 0 and kills == 3 and jobs[poison]["lost_runs"] == 3
