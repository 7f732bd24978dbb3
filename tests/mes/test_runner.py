"""Run jobs through mes.worker.runner against the real engine over HTTP, with a fakeredis store."""

from __future__ import annotations

import pytest

from mes.jobs import JobStatus
from mes.worker.execution import backend_options
from mes.worker.runner import backoff_s
from tests.support.runner import run_job


@pytest.fixture
def run(store, registry, backend, clock):
    def run(job_id, max_retries=2):
        return run_job(job_id, store=store, registry=registry, backend=backend, clock=clock,
                       max_retries=max_retries)
    return run


def test_job_succeeds_with_engine_text_and_usage(submit, run, backend, registry):
    job = submit(options={"seed": 3, "max_tokens": 6})
    outcome = run(job.id)
    done = outcome.job
    assert outcome.retry_in_s is None
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1
    direct = backend.generate("smollm2:135m", "What is the capital of France?",
                              options=backend_options(registry.get("smollm2:135m"),
                                                      {"seed": 3, "max_tokens": 6}))
    assert done.result["text"] == direct.text
    assert done.result["usage"]["completion_tokens"] == 6 and done.result["done_reason"] == "length"
    assert done.started_at is not None and done.finished_at is not None


def test_chat_job_succeeds(submit, run):
    job = submit(messages=[{"role": "user", "content": "hi"}], system="be brief")
    assert run(job.id).job.status is JobStatus.SUCCEEDED


def test_final_job_is_left_alone(submit, run, store):
    job = submit()
    first = run(job.id).job
    again = run(job.id).job
    assert again.version == first.version and again.attempts == 1


def test_missing_job_is_ignored(run):
    assert run("job_gone").job is None


def test_job_past_deadline_expires_without_running(submit, run, clock, engine):
    before = engine.stats()["total_requests"]
    job = submit(timeout_s=5)
    clock.advance(6)
    done = run(job.id).job
    assert done.status is JobStatus.EXPIRED and done.error["code"] == "expired"
    assert engine.stats()["total_requests"] == before


def test_model_missing_on_backend_fails_at_once(submit, run):
    job = submit(model="ghost:1b")
    outcome = run(job.id)
    assert outcome.retry_in_s is None
    assert outcome.job.status is JobStatus.FAILED
    assert outcome.job.error["code"] == "model_not_found" and "ghost:1b" in outcome.job.error["message"]


def test_healable_failure_requeues_then_succeeds(submit, run, engine):
    engine.faults.update({"fail_next": 1})
    job = submit()
    first = run(job.id)
    assert first.retry_in_s is not None and first.job.status is JobStatus.QUEUED
    second = run(job.id)
    assert second.job.status is JobStatus.SUCCEEDED and second.job.attempts == 2


def test_retries_run_out(submit, run, engine):
    engine.faults.update({"fail_next": 5})
    job = submit()
    outcome = run(job.id, max_retries=0)
    assert outcome.job.status is JobStatus.FAILED
    assert outcome.job.error["code"] == "backend_error"
    assert "simulated failure" in outcome.job.error["message"]


def test_schema_output_is_validated(submit, run):
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    done = run(submit(format=schema).id).job
    assert done.status is JobStatus.SUCCEEDED
    assert done.result["schema_valid"] is True and isinstance(done.result["json"]["age"], int)
    assert done.result["format_attempts"] == 1


def test_prompt_mode_model_gets_json_from_the_system_prompt(submit, run):
    # phi3:mini has json_mode "prompt": the schema goes in the system prompt, not as format.
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    done = run(submit(model="phi3:mini", format=schema).id).job
    assert done.status is JobStatus.SUCCEEDED and isinstance(done.result["json"]["n"], int)


def test_backend_options_keep_runner_options_fixed(registry):
    spec = registry.get("smollm2:135m")
    options = backend_options(spec, {"max_tokens": 10_000, "temperature": 0.9, "seed": 1})
    assert options == {"temperature": 0.9, "seed": 1, "num_predict": 64, "num_ctx": 2048}


def test_backoff_grows_and_is_capped():
    assert backoff_s(1, rng=lambda: 1.0) == 1.0
    assert backoff_s(3, rng=lambda: 1.0) == 4.0
    assert backoff_s(30, rng=lambda: 1.0) == 30.0
    assert backoff_s(2, rng=lambda: 0.0) == 1.0


def test_cancel_during_generation_stops_the_stream(submit, run, store, clock, engine):
    import threading

    from mes.intake.cancel import cancel_job
    engine.faults.update({"hang": True})
    job = submit()
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("o", run(job.id)))
    thread.start()
    running = None
    for _ in range(200):
        running = store.get(job.id)
        if running.status is JobStatus.RUNNING:
            break
        threading.Event().wait(0.02)
    cancel_job(running, store=store, clock=clock)
    thread.join(10)
    engine.faults.clear()
    assert not thread.is_alive()
    assert outcome["o"].job.status is JobStatus.CANCELLED
    assert store.get(job.id).error["code"] == "cancelled"


def test_deadline_during_generation_fails_with_timeout(submit, run, store, clock, engine):
    import threading
    engine.faults.update({"hang": True})
    job = submit(timeout_s=5)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("o", run(job.id)))
    thread.start()
    for _ in range(200):
        if store.get(job.id).status is JobStatus.RUNNING:
            break
        threading.Event().wait(0.02)
    clock.advance(6)
    thread.join(10)
    engine.faults.clear()
    assert outcome["o"].job.status is JobStatus.FAILED
    assert outcome["o"].job.error["code"] == "timeout"
