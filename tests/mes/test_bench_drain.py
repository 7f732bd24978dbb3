"""The bench's drain counts ended jobs only, not the batch ingest's counters."""

from __future__ import annotations

import fakeredis
import pytest

from mes.bench.scenarios import _drain, ended_jobs
from mes.store import names


class CountersOnly:
    """Stand in for a BenchStack: all _drain reads is its Redis."""

    def __init__(self, redis):
        self._redis = redis

    def redis(self):
        return self._redis


@pytest.fixture
def stack(redis):
    # A stack that took a batch of 10 jobs, 3 of which have ended, and 2 single jobs.
    redis.hset(names.COUNTERS, mapping={"jobs_submitted": 12, "batches_submitted": 1,
                                        "batch_jobs_ingested": 10, "jobs_succeeded": 2,
                                        "jobs_failed": 1})
    return CountersOnly(redis)


def test_ended_jobs_counts_the_final_states_only(stack):
    assert ended_jobs(stack.redis()) == 3
    stack.redis().hincrby(names.COUNTERS, "jobs_cancelled", 1)
    stack.redis().hincrby(names.COUNTERS, "jobs_expired", 1)
    assert ended_jobs(stack.redis()) == 5


def test_drain_does_not_end_early_on_a_stack_that_took_a_batch(stack):
    # Before, batches_submitted + batch_jobs_ingested (11) counted as ended jobs here.
    with pytest.raises(RuntimeError):
        _drain(stack, 4, timeout_s=0.1)
    stack.redis().hincrby(names.COUNTERS, "jobs_succeeded", 1)
    assert _drain(stack, 4, timeout_s=1) > 0
