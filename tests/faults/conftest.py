"""Give each fault test its own private stack, and print its figures."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.support.stack import ALICE, FINAL, MODEL, PrivateStack  # noqa: F401 - ALICE, MODEL for tests

pytestmark = pytest.mark.faults


def report(name: str, jobs: dict[str, dict], completed_generations: int, **extra) -> dict:
    """Print the suite's figures for one test and return them."""
    statuses = Counter(job["status"] if job else "lost" for job in jobs.values())
    failed = Counter(job["error"]["code"] for job in jobs.values() if job and job["status"] == "failed")
    not_final = sum(1 for job in jobs.values() if not job or job["status"] not in FINAL)
    reruns = sum(job["lost_runs"] for job in jobs.values() if job)
    figures = {"submitted": len(jobs), "succeeded": statuses.get("succeeded", 0),
               "failed_by_code": dict(failed), "lost": not_final,
               "executed_twice": completed_generations - statuses.get("succeeded", 0),
               "reruns_after_worker_death": reruns, **extra}
    if not_final:
        figures["not_final"] = {job_id: (job or {}).get("status") for job_id, job in jobs.items()
                                if not job or job["status"] not in FINAL}
    print(f"\nFAULT {name}: " + json.dumps(figures))
    return figures


@pytest.fixture
def stack(tmp_path):
    s = PrivateStack(tmp_path)
    yield s
    s.stop()
