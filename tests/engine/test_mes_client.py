"""MES's own Ollama client against the engine, for both generators (real SmolLM2 for llamacpp).

The engine shares no code with `mes.backends.ollama`; these tests check that two
independent readings of Ollama's API agree, as test_conformance does with the official client.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from mes.backends.ollama import Completion, OllamaClient
from mes.errors import JobCancelled, ModelNotFound

MODEL = "smollm2:135m"
OPTIONS = {"temperature": 0, "num_predict": 16, "num_ctx": 2048}


@pytest.fixture
def client(any_engine):
    client = OllamaClient(any_engine.url, connect_timeout_s=2, read_timeout_s=60)
    yield client
    client.close()


def check(completion: Completion) -> None:
    assert isinstance(completion, Completion) and completion.text.strip()
    assert completion.done_reason in ("stop", "length")
    assert 0 < completion.eval_count <= 16 and completion.prompt_eval_count > 0
    assert completion.total_duration > 0 and completion.eval_duration > 0 and completion.prompt_eval_duration > 0


def test_version_and_tags(client):
    assert client.version()
    assert MODEL in [m["name"] for m in client.tags()]


def test_generate(client):
    check(client.generate(MODEL, "What is the capital of France?", system="Answer in one sentence.", options=OPTIONS))


def test_chat(client):
    check(client.chat(MODEL, [{"role": "user", "content": "Say hello."}], options=OPTIONS))


def test_load_ps_and_unload(client):
    loaded = client.load(MODEL, "10m", options={"num_ctx": 2048})
    assert loaded.done_reason == "load"
    assert [m["name"] for m in client.ps()] == [MODEL]
    assert client.generate(MODEL, "hi", options=OPTIONS).load_duration == 0  # same runner options: no reload
    assert client.unload(MODEL).done_reason == "unload"
    assert client.ps() == []


def test_structured_output(client):
    schema = {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]}
    reply = client.chat(MODEL, [{"role": "user", "content": "Is Paris in France? Answer in JSON."}],
                        format=schema, options={"temperature": 0, "num_predict": 32})
    jsonschema.validate(json.loads(reply.text), schema)


def test_unknown_model(client):
    with pytest.raises(ModelNotFound):
        client.generate("nope:1b", "hi")


def test_should_stop_cancels_the_generation(client, any_engine, wait_until):
    if any_engine.config.model("phi3:mini") is not None:  # simulated: slow enough to cut
        any_engine.config.token_ms = 20
        any_engine.config.response_tokens = 1000
    checks = []

    def should_stop() -> bool:  # polled every 0.1 s: false once, then true, mid-generation
        checks.append(1)
        return len(checks) > 1

    with pytest.raises(JobCancelled):
        client.generate(MODEL, "Count from 1 to 500, one number per line.",
                        options={"temperature": 0, "num_predict": 1000}, should_stop=should_stop)
    counters = lambda: any_engine.stats()["models"][MODEL]  # noqa: E731
    wait_until(lambda: counters()["cancelled"] == 1, what="the engine to notice the disconnect")
    assert counters()["completed"] == 0 and counters()["tokens"] < 1000
