"""Every endpoint through the official `ollama` client, streaming and not, for both generators.

`any_engine` runs each test twice: with the simulated generator and with llamacpp on the
real SmolLM2-135M (small num_predict keeps it quick). Assertions hold for both: types,
shapes, counts and Ollama's behaviour, not particular words.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import jsonschema
import ollama
import pytest
import requests

from mes.engine.simulated import SimulatedGenerator

MODEL = "smollm2:135m"
GREEDY = {"temperature": 0, "seed": 7, "num_predict": 16}
STATS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "is_capital": {"type": "boolean"}},
    "required": ["city", "is_capital"],
}


@pytest.fixture
def client(any_engine):
    return ollama.Client(host=any_engine.url)


def test_root_version_and_head(any_engine, http):
    assert http.get(any_engine.url).text == "Ollama is running"
    assert http.head(any_engine.url).status_code == 200
    assert ollama.Client(host=any_engine.url)._client.get("/api/version").json()["version"]


def test_generate_without_streaming(client):
    reply = client.generate(model=MODEL, prompt="What is the capital of France?", options=GREEDY, stream=False)
    assert isinstance(reply, ollama.GenerateResponse)
    assert reply.model == MODEL and reply.done is True and reply.done_reason in ("stop", "length")
    assert isinstance(reply.response, str) and reply.response.strip()
    assert 0 < reply.eval_count <= 16 and reply.prompt_eval_count > 0
    assert all(getattr(reply, key) > 0 for key in STATS)
    assert reply.context and all(isinstance(t, int) for t in reply.context)
    datetime.fromisoformat(reply.created_at)


def test_generate_streaming_matches_the_single_reply(client):
    whole = client.generate(model=MODEL, prompt="Name three colours.", options=GREEDY, stream=False)
    parts = list(client.generate(model=MODEL, prompt="Name three colours.", options=GREEDY, stream=True))
    assert all(isinstance(p, ollama.GenerateResponse) for p in parts)
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.response == "" and last.done_reason == whole.done_reason and last.eval_count == whole.eval_count
    assert "".join(p.response for p in parts) == whole.response


def test_chat_streaming_and_not(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    reply = client.chat(model=MODEL, messages=messages, options=GREEDY, stream=False)
    assert isinstance(reply, ollama.ChatResponse)
    assert reply.message.role == "assistant" and reply.message.content.strip()
    assert reply.done_reason in ("stop", "length") and reply.prompt_eval_count > 0
    parts = list(client.chat(model=MODEL, messages=messages, options=GREEDY, stream=True))
    assert all(isinstance(p, ollama.ChatResponse) and p.message.role == "assistant" for p in parts)
    assert "".join(p.message.content for p in parts) == reply.message.content
    assert parts[-1].done and parts[-1].message.content == "" and parts[-1].eval_count == reply.eval_count


def test_num_predict_and_stop(client):
    short = client.generate(model=MODEL, prompt="Tell me a long story about a dragon.",
                            options={**GREEDY, "num_predict": 5})
    assert short.done_reason == "length" and short.eval_count == 5
    full = client.generate(model=MODEL, prompt="Tell me a long story about a dragon.", options=GREEDY)
    assert full.response.startswith(short.response)
    word = full.response.split()[3]
    cut = client.generate(model=MODEL, prompt="Tell me a long story about a dragon.", options={**GREEDY, "stop": [word]})
    assert cut.done_reason == "stop" and cut.response == full.response[: full.response.index(word)]


def test_raw_prompt_skips_the_template(client, any_engine):
    templated = client.generate(model=MODEL, prompt="The capital of France is", options=GREEDY)
    raw = client.generate(model=MODEL, prompt="The capital of France is", raw=True, options=GREEDY)
    assert raw.done and raw.response.strip() and raw.context is None and templated.context
    if not isinstance(any_engine.generator, SimulatedGenerator):
        assert raw.prompt_eval_count == 5 < templated.prompt_eval_count  # no template tokens


def test_same_seed_same_reply(client):
    options = {"temperature": 0.9, "seed": 123, "num_predict": 12}
    first = client.generate(model=MODEL, prompt="Write a poem.", options=options).response
    client.generate(model=MODEL, prompt="Something else entirely.", options={"num_predict": 3})
    assert client.generate(model=MODEL, prompt="Write a poem.", options=options).response == first


def test_load_and_unload_with_empty_prompt_and_messages(client):
    loaded = client.generate(model=MODEL, prompt="")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    assert [m.model for m in client.ps().models] == [MODEL]
    assert client.generate(model=MODEL, prompt="", keep_alive=0).done_reason == "unload"
    assert client.ps().models == []
    assert client.chat(model=MODEL, messages=[]).done_reason == "load"
    assert client.chat(model=MODEL, messages=[], keep_alive=0).done_reason == "unload"
    assert client.ps().models == []


def test_list_show_and_ps(client):
    listed = client.list()
    assert MODEL in [m.model for m in listed.models]
    entry = next(m for m in listed.models if m.model == MODEL)
    assert entry.size > 0 and len(entry.digest) == 64 and isinstance(entry.modified_at, datetime)
    assert entry.details.format == "gguf" and entry.details.family == "llama"
    shown = client.show(MODEL)
    assert shown.details.format == "gguf" and "completion" in shown.capabilities
    client.generate(model=MODEL, prompt="hi", keep_alive="1h", options={"num_predict": 2})
    (running,) = client.ps().models
    assert running.model == MODEL and running.size_vram == running.size
    left = running.expires_at - datetime.now(timezone.utc)
    assert timedelta(minutes=50) < left <= timedelta(hours=1)


def test_changing_num_ctx_reloads(client):
    first = client.generate(model=MODEL, prompt="hi", options={"num_predict": 2})
    same = client.generate(model=MODEL, prompt="hi", options={"num_predict": 2, "num_ctx": 2048})
    bigger = client.generate(model=MODEL, prompt="hi", options={"num_predict": 2, "num_ctx": 1024})
    assert first.load_duration > 0 and same.load_duration == 0
    assert bigger.load_duration > 0
    assert client.ps().models[0].model == MODEL


def test_unknown_model_is_a_404_response_error(client):
    with pytest.raises(ollama.ResponseError) as raised:
        client.generate(model="nope:1b", prompt="hi", stream=False)
    assert raised.value.status_code == 404
    assert raised.value.error == 'model "nope:1b" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as raised:
        list(client.chat(model="nope:1b", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert raised.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as raised:
        client.embed(model="nope:1b", input="hi")
    assert raised.value.status_code == 404


@pytest.mark.parametrize("stream", [False, True])
def test_structured_output_validates(client, stream):
    messages = [{"role": "user", "content": "Paris is the capital of France. Answer in JSON."}]
    reply = client.chat(model=MODEL, messages=messages, format=SCHEMA, stream=stream, options={"temperature": 0})
    text = "".join(p.message.content for p in reply) if stream else reply.message.content
    jsonschema.validate(json.loads(text), SCHEMA)
    json_mode = client.generate(model=MODEL, prompt="Is Paris in France? Answer in JSON.", format="json",
                                options={"temperature": 0, "num_predict": 48})
    if json_mode.done_reason == "stop":
        assert isinstance(json.loads(json_mode.response), dict)
    else:  # cut by num_predict: still JSON as far as it went
        assert json_mode.response.lstrip().startswith("{")


def test_bad_json_fault_breaks_structured_replies(client, any_engine):
    any_engine.faults.update({"bad_json_next": 1, "bad_json_kind": "fenced"})
    reply = client.generate(model=MODEL, prompt="Paris, capital of France. JSON please.", format=SCHEMA,
                            options={"temperature": 0})
    assert "```json" in reply.response
    inner = reply.response.split("```json\n", 1)[1].split("\n```", 1)[0]
    jsonschema.validate(json.loads(inner), SCHEMA)


def test_embed_one_and_many(client):
    one = client.embed(model=MODEL, input="Why is the sky blue?")
    assert isinstance(one, ollama.EmbedResponse) and len(one.embeddings) == 1
    vector = one.embeddings[0]
    assert len(vector) > 100 and abs(sum(v * v for v in vector) - 1.0) < 1e-3
    assert one.prompt_eval_count > 0 and one.total_duration > 0
    many = client.embed(model=MODEL, input=["Why is the sky blue?", "Why is the grass green?"])
    assert len(many.embeddings) == 2 and many.embeddings[0] != many.embeddings[1]
    assert max(abs(a - b) for a, b in zip(many.embeddings[0], vector)) < 1e-3
    assert len(client.embed(model=MODEL, input="abc", dimensions=32).embeddings[0]) == 32
    legacy = client.embeddings(model=MODEL, prompt="Why is the sky blue?")
    assert len(legacy.embedding) == len(vector)


def test_pull_streaming_and_not(client):
    lines = list(client.pull(MODEL, stream=True))
    assert all(isinstance(line, ollama.ProgressResponse) for line in lines)
    assert lines[0].status == "pulling manifest" and lines[-1].status == "success"
    downloads = [line for line in lines if line.digest]
    assert downloads and downloads[-1].completed == downloads[-1].total > 0
    assert client.pull(MODEL).status == "success"


def test_in_band_stream_error_raises(client, any_engine):
    any_engine.faults.update({"error_mid_stream": 1})
    parts = []
    with pytest.raises(ollama.ResponseError) as raised:
        for part in client.generate(model=MODEL, prompt="Tell me a story.", stream=True, options={"num_predict": 12}):
            parts.append(part)
    assert raised.value.error == "simulated mid-stream failure"
    assert len(parts) == 3 and not any(p.done for p in parts)


def test_disconnect_stops_generation(any_engine, wait_until):
    body = {"model": MODEL, "prompt": "Count from 1 to 500, one number per line.",
            "options": {"num_predict": 1000, "temperature": 0}}
    if "phi3:mini" in [m.name for m in any_engine.config.models]:  # simulated: make it slow enough to cut
        any_engine.config.token_ms = 20
        any_engine.config.response_tokens = 1000
    with requests.Session() as session:
        response = session.post(any_engine.url + "/api/generate", json=body, stream=True)
        lines = response.iter_lines()
        assert json.loads(next(lines))["done"] is False
        response.close()
    counters = lambda: any_engine.stats()["models"][MODEL]  # noqa: E731
    wait_until(lambda: counters()["cancelled"] == 1, timeout=20, what="generation to notice the disconnect")
    assert counters()["active"] == 0 and counters()["completed"] == 0 and counters()["tokens"] < 1000
