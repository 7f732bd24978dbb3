"""Fixtures for core tests that need the engine: it runs in-thread, spoken to over HTTP."""

from __future__ import annotations

from functools import partial
from operator import attrgetter

import pytest

from mes.backends.ollama import OllamaClient
from mes.intake.submit import submit_job
from tests.support.dispatcher import RecordingDispatcher

# Core tests compare the ids that were sent.
ListDispatcher = partial(RecordingDispatcher, keep=attrgetter("id"))



@pytest.fixture
def backend(engine):
    engine.faults.clear()
    client = OllamaClient(engine.url, connect_timeout_s=1, read_timeout_s=5)
    yield client
    client.close()


@pytest.fixture
def submit(store, registry, clock):
    def submit(**body):
        body.setdefault("model", "smollm2:135m")
        if "messages" not in body:
            body.setdefault("prompt", "What is the capital of France?")
        job, _ = submit_job(body, owner="alice", store=store, registry=registry,
                            dispatcher=ListDispatcher(), clock=clock, max_timeout_s=600)
        return job
    return submit


