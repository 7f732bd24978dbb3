"""Conformance through the official `ollama` Python client: its typed models must parse our replies."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import jsonschema
import ollama
import pytest

from mes.engine.config import DEFAULT_MODELS

MODEL = "llama3.1:8b"


@pytest.fixture
def client(engine):
    return ollama.Client(host=engine.url)


def test_generate_without_streaming(client):
    reply = client.generate(model=MODEL, prompt="Why is the sky blue?", stream=False)
    assert isinstance(reply, ollama.GenerateResponse)
    assert reply.model == MODEL and reply.done is True and reply.done_reason == "stop"
    assert len(reply.response.split()) == 16
    assert reply.eval_count == 16 and reply.prompt_eval_count == 5
    assert reply.context and all(isinstance(t, int) for t in reply.context)
    assert reply.total_duration > 0 and reply.eval_duration > 0 and reply.load_duration > 0
    datetime.fromisoformat(reply.created_at)


def test_generate_streaming_matches_the_single_reply(client):
    parts = list(client.generate(model=MODEL, prompt="Why is the sky blue?", stream=True))
    assert all(isinstance(p, ollama.GenerateResponse) for p in parts)
    assert [p.done for p in parts] == [False] * 16 + [True]
    assert parts[-1].response == "" and parts[-1].done_reason == "stop" and parts[-1].eval_count == 16
    whole = client.generate(model=MODEL, prompt="Why is the sky blue?", stream=False).response
    assert "".join(p.response for p in parts) == whole
    assert all(p.response.startswith(" ") for p in parts[:-1])


def test_chat_streaming_and_not(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    reply = client.chat(model=MODEL, messages=messages, stream=False)
    assert isinstance(reply, ollama.ChatResponse)
    assert reply.message.role == "assistant" and reply.done_reason == "stop"
    assert reply.prompt_eval_count == 4
    parts = list(client.chat(model=MODEL, messages=messages, stream=True))
    assert all(p.message.role == "assistant" for p in parts)
    assert "".join(p.message.content for p in parts) == reply.message.content
    assert parts[-1].done and parts[-1].message.content == "" and parts[-1].eval_count == 16


def test_load_and_unload_with_empty_prompt(client):
    loaded = client.generate(model=MODEL, prompt="")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    assert [m.model for m in client.ps().models] == [MODEL]
    unloaded = client.generate(model=MODEL, prompt="", keep_alive=0)
    assert unloaded.done and unloaded.done_reason == "unload"
    assert client.ps().models == []


def test_load_and_unload_with_empty_messages(client, engine):
    loaded = client.chat(model="phi3:mini", messages=[])
    assert loaded.done_reason == "load" and loaded.message.role == "assistant" and loaded.message.content == ""
    assert [m.name for m in client.ps().models] == ["phi3:mini"]
    assert client.chat(model="phi3:mini", messages=[], keep_alive=0).done_reason == "unload"
    assert client.ps().models == []
    counters = engine.stats()["models"]["phi3:mini"]
    assert (counters["loads"], counters["unloads"], counters["completed"]) == (1, 1, 0)


def test_list_show_and_ps(client):
    listed = client.list()
    assert [m.model for m in listed.models] == list(DEFAULT_MODELS)
    first = listed.models[0]
    assert first.details.family == "llama" and first.details.parameter_size == "8.0B"
    assert first.size > 0 and len(first.digest) == 64 and isinstance(first.modified_at, datetime)
    shown = client.show(MODEL)
    assert shown.details.format == "gguf" and shown.modelinfo["general.architecture"] == "llama"
    assert "completion" in shown.capabilities
    client.generate(model=MODEL, prompt="hi", keep_alive="1h")
    (running,) = client.ps().models
    assert running.model == MODEL and running.size_vram == running.size
    left = running.expires_at - datetime.now(timezone.utc)
    assert timedelta(minutes=50) < left <= timedelta(hours=1)


def test_unknown_model_is_a_404_response_error(client):
    with pytest.raises(ollama.ResponseError) as raised:
        client.generate(model="nope:1b", prompt="hi", stream=False)
    assert raised.value.status_code == 404
    assert raised.value.error == 'model "nope:1b" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as raised:
        list(client.chat(model="nope:1b", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert raised.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as raised:
        client.show("nope:1b")
    assert raised.value.status_code == 404


def test_structured_output_through_the_client(client):
    schema = {
        "type": "object",
        "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
        "required": ["age", "available"],
    }
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "Ollama is 22"}], format=schema)
    jsonschema.validate(json.loads(reply.message.content), schema)
    assert isinstance(json.loads(client.generate(model=MODEL, prompt="x", format="json").response), dict)


def test_in_band_stream_error_raises(client, engine):
    engine.faults.update({"error_mid_stream": 1})
    parts = []
    with pytest.raises(ollama.ResponseError) as raised:
        for part in client.generate(model=MODEL, prompt="hi", stream=True):
            parts.append(part)
    assert raised.value.error == "simulated mid-stream failure"
    assert len(parts) == 3 and not any(p.done for p in parts)
