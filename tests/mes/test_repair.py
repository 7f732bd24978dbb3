"""Check structured output: native mode, prompt fallback, repair prompts and the final contract."""

from __future__ import annotations

import pytest

from mes.backends.ollama import Completion
from mes.errors import OutputInvalid
from mes.jobs import JobStatus
from mes.structured.repair import generate_structured
from tests.support.runner import run_job

SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}


class Scripted:
    """Answer each call with the next scripted text, recording what was asked."""

    def __init__(self, *texts):
        self.texts = list(texts)
        self.calls = []

    def __call__(self, messages, fmt):
        self.calls.append((messages, fmt))
        return Completion(text=self.texts.pop(0), done_reason="stop", prompt_eval_count=10,
                          eval_count=5, total_duration=7, load_duration=1,
                          prompt_eval_duration=2, eval_duration=4)


def test_native_success_takes_one_attempt():
    call = Scripted('{"age": 3}')
    final, value, attempts, _ = generate_structured(
        {"prompt": "age?", "format": SCHEMA}, "native", 3, call)
    assert value == {"age": 3} and len(attempts) == 1
    messages, fmt = call.calls[0]
    assert fmt == SCHEMA and messages[1] == {"role": "user", "content": "age?"}
    assert messages[0]["role"] == "system" and "JSON" in messages[0]["content"]


def test_failed_native_attempt_falls_back_to_prompt_mode_with_the_errors():
    call = Scripted('{"age": "three"}', '{"age": 3}')
    _, value, attempts, completions = generate_structured(
        {"prompt": "age?", "system": "Be exact.", "format": SCHEMA}, "native", 3, call)
    assert value == {"age": 3} and [a.mode for a in attempts] == ["native", "prompt"]
    messages, fmt = call.calls[1]
    assert fmt is None  # prompt mode: no native format
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Be exact.")
    assert '"required":["age"]' in messages[0]["content"]  # the schema is in the system prompt
    assert messages[-2] == {"role": "assistant", "content": '{"age": "three"}'}
    assert "age: 'three' is not of type 'integer'" in messages[-1]["content"]
    assert len(completions) == 2


def test_non_json_under_native_counts_as_format_ignored():
    call = Scripted("I am a teapot.", '```json\n{"age": 4}\n```')
    _, value, attempts, _ = generate_structured({"prompt": "age?", "format": SCHEMA}, "native", 3, call)
    assert value == {"age": 4}
    assert "the backend ignored format: the output is not JSON" in attempts[0].errors


def test_prompt_mode_model_never_gets_native_format():
    call = Scripted('Sure: {"age": 5} hope it helps')
    _, value, attempts, _ = generate_structured({"messages": [{"role": "user", "content": "age?"}],
                                                 "format": SCHEMA}, "prompt", 3, call)
    assert value == {"age": 5} and call.calls[0][1] is None and attempts[0].mode == "prompt"


def test_all_attempts_invalid_raises_with_everything_kept():
    call = Scripted('{"age": ', "nope", '{"age": 1.5}')
    with pytest.raises(OutputInvalid) as info:
        generate_structured({"prompt": "age?", "format": SCHEMA}, "native", 3, call)
    details = info.value.details
    assert details["text"] == '{"age": 1.5}' and details["format_attempts"] == 3
    assert [a["text"] for a in details["attempts"]] == ['{"age": ', "nope", '{"age": 1.5}']
    assert details["usage"] == {"prompt_tokens": 30, "completion_tokens": 15}
    assert any("integer" in error for error in details["errors"])


@pytest.fixture
def run(store, registry, backend, clock):
    def run(job_id):
        return run_job(job_id, store=store, registry=registry, backend=backend, clock=clock,
                       max_retries=0)
    return run


@pytest.mark.parametrize("kind,attempts", [("invalid", 2), ("prose", 2), ("truncated", 2), ("fenced", 1)])
def test_engine_bad_json_is_repaired(submit, run, engine, kind, attempts):
    engine.faults.update({"bad_json_next": 1, "bad_json_kind": kind})
    done = run(submit(format=SCHEMA).id).job
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result["schema_valid"] is True and isinstance(done.result["json"]["age"], int)
    assert done.result["format_attempts"] == attempts


def test_usage_adds_up_over_attempts(submit, run, engine):
    one = run(submit(format=SCHEMA, prompt="same").id).job
    engine.faults.update({"bad_json_next": 1, "bad_json_kind": "invalid"})
    two = run(submit(format=SCHEMA, prompt="same").id).job
    assert two.result["format_attempts"] == 2
    assert two.result["usage"]["prompt_tokens"] > one.result["usage"]["prompt_tokens"]
    assert two.result["usage"]["completion_tokens"] > one.result["usage"]["completion_tokens"]


def test_engine_output_that_never_validates_fails_output_invalid(submit, run, engine):
    engine.faults.update({"bad_json_next": 5, "bad_json_kind": "truncated"})
    done = run(submit(format=SCHEMA).id).job
    assert done.status is JobStatus.FAILED and done.error["code"] == "output_invalid"
    assert done.error["details"]["format_attempts"] == 3 and done.error["details"]["text"]
    assert len(done.error["details"]["attempts"]) == 3
