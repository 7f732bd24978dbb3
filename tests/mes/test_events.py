"""Check each job's event log: state changes from the save script, text from the worker."""

from __future__ import annotations

import pytest

from mes.jobs import JobStatus
from mes.store.events import valid_id
from mes.worker import tokens as tokens_module
from mes.worker.tokens import TokenWriter
from tests.support.runner import run_job


@pytest.fixture
def run(store, registry, backend, clock):
    def run(job_id):
        return run_job(job_id, store=store, registry=registry, backend=backend, clock=clock,
                       max_retries=2)
    return run


def text_of(events):
    """Return the text a reader keeps: everything after the last restart."""
    kept = []
    for event in events:
        if event.type == "restart":
            kept = []
        elif event.type == "token":
            kept.append(event.data["text"])
    return "".join(kept)


def test_a_job_logs_its_states_and_its_text_in_order(submit, run, store):
    job = submit()
    done = run(job.id).job
    events = store.events.read(job.id)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["status", "status"] and kinds[-2:] == ["status", "done"]
    assert events[0].data == {"status": "queued", "attempt": 0, "position": 1}
    assert events[1].data == {"status": "running", "attempt": 1}
    assert events[-2].data == {"status": "succeeded", "attempt": 1}
    assert set(kinds[2:-2]) == {"token"}
    assert text_of(events) == done.result["text"]
    assert all(valid_id(event.id) for event in events)
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_reading_after_an_id_resumes_without_gaps_or_repeats(submit, run, store):
    job = submit()
    run(job.id)
    events = store.events.read(job.id)
    for cut in range(len(events)):
        assert store.events.read(job.id, after=events[cut].id) == events[cut + 1:]
    assert store.events.read(job.id) == events  # stable on a second read


def test_a_retried_job_logs_a_restart_before_its_new_attempt(submit, run, store, engine):
    engine.faults.update({"error_mid_stream": 1})  # fails after some tokens have streamed
    job = submit()
    first = run(job.id)
    assert first.job.status is JobStatus.QUEUED
    done = run(job.id).job
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
    events = store.events.read(job.id)
    kinds = [event.type for event in events]
    restart = kinds.index("restart")
    assert "token" in kinds[:restart]  # the failed attempt had streamed text
    assert events[restart - 1].data["status"] == "queued"
    assert events[restart - 1].data["error"] == "backend_error"
    assert events[restart + 1].data == {"status": "running", "attempt": 2}
    assert text_of(events) == done.result["text"]


def test_the_log_expires_with_the_job(submit, run, store, redis):
    from mes.store import names
    job = submit()
    run(job.id)
    assert 0 < redis.ttl(names.job_events(job.id)) <= store.ttl_s


class Recorder:
    def __init__(self):
        self.texts = []

    def append_text(self, job_id, text):
        self.texts.append(text)


def test_the_writer_sends_the_first_piece_at_once_then_coalesces():
    now = [0.0]
    log = Recorder()
    writer = TokenWriter(log, "job_1", lambda: now[0])
    writer("a")
    assert log.texts == ["a"]  # the first token is not held back
    for _ in range(tokens_module.FLUSH_PIECES - 1):
        writer("b")
    assert log.texts == ["a"]  # gathering: too few pieces, too little time
    writer("c")
    assert log.texts == ["a", "b" * (tokens_module.FLUSH_PIECES - 1) + "c"]
    writer("d")
    now[0] += tokens_module.FLUSH_S
    writer("e")
    assert log.texts[-1] == "de"  # time runs out before the piece count
    writer("f")
    assert [command[-1] for command in writer.rest_commands()] == ['{"text":"f"}']
    assert writer.rest_commands() == []
