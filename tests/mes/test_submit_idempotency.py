"""Check that an Idempotency-Key is bound in the same step that creates the job."""

from __future__ import annotations

import json

import pytest

from mes.errors import IdempotencyMismatch, QueueFull
from mes.intake.submit import submit_job
from mes.registry import ModelRegistry
from tests.conftest import MODELS_FILE
from tests.mes.conftest import ListDispatcher


@pytest.fixture
def small_queue() -> ModelRegistry:
    data = json.loads(MODELS_FILE.read_text())
    data["models"][0]["max_queue"] = 1
    return ModelRegistry.from_dict(data)


@pytest.fixture
def send(store, small_queue, clock):
    dispatcher = ListDispatcher()

    def send(body, key=None):
        return submit_job(body, owner="alice", store=store, registry=small_queue,
                          dispatcher=dispatcher, clock=clock, max_timeout_s=600,
                          idempotency_key=key)
    send.dispatcher = dispatcher
    return send


BODY = {"model": "smollm2:135m", "prompt": "Hi"}


def test_a_replay_while_the_queue_is_full_gives_the_first_job(send):
    first, created = send(BODY, key="k-1")
    assert created
    # The queue (limit 1) is now full: a new request is refused...
    with pytest.raises(QueueFull):
        send({**BODY, "prompt": "another"})
    # ...but the replay of the accepted one is not: it gets its first job back.
    again, created_again = send(BODY, key="k-1")
    assert again.id == first.id and not created_again
    assert send.dispatcher.sent == [first.id]


def test_replays_are_not_counted_as_submissions(send, store):
    send(BODY, key="k-2")
    for _ in range(3):
        send(BODY, key="k-2")
    assert store.counters()["jobs_submitted"] == 1
    assert store.model_counts(["smollm2:135m"])["smollm2:135m"] == (1, 0)


def test_a_refused_submission_does_not_bind_its_key(send, store):
    send(BODY)  # fills the queue
    with pytest.raises(QueueFull):
        send({**BODY, "prompt": "later"}, key="k-3")
    store.redis.flushall()  # the queue drains; the key must still be free
    job, created = send({**BODY, "prompt": "later"}, key="k-3")
    assert created


def test_the_same_key_with_another_body_is_refused(send):
    send(BODY, key="k-4")
    with pytest.raises(IdempotencyMismatch):
        send({**BODY, "prompt": "something else"}, key="k-4")
