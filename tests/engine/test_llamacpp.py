"""What only the llamacpp generator does: instances per slot, context limits, truncation, errors."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import ollama
import pytest
import requests

MODEL = "smollm2:135m"


@pytest.fixture
def engine(make_engine):
    return make_engine("llamacpp")


def generate(engine, **body):
    body = {"model": MODEL, "prompt": "Tell me about rivers.", "stream": False, **body}
    with requests.Session() as session:
        return session.post(engine.url + "/api/generate", json=body, timeout=120)


def test_one_model_serializes_its_generations(engine):
    with ThreadPoolExecutor(max_workers=3) as pool:
        replies = list(pool.map(lambda i: generate(engine, prompt=f"Say {i}.", options={"num_predict": 8}), range(3)))
    assert [r.status_code for r in replies] == [200, 200, 200]
    counters = engine.stats()["models"][MODEL]
    assert counters["max_active"] == 1 and counters["completed"] == 3
    assert len(engine.generator._models[MODEL]._all) == 1  # one Llama instance, used in turn


def test_num_parallel_gives_each_slot_its_own_instance(make_engine):
    engine = make_engine("llamacpp", num_parallel=2)
    generate(engine, options={"num_predict": 2})  # load first, so both requests below find it
    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(pool.map(lambda i: generate(engine, prompt=f"Count to {i + 20}.",
                                                   options={"num_predict": 48, "temperature": 0}), range(2)))
    assert all(r.status_code == 200 and r.json()["response"] for r in replies)
    assert 1 <= len(engine.generator._models[MODEL]._all) <= 2
    assert engine.stats()["models"][MODEL]["completed"] == 3


def test_a_full_context_ends_with_length(engine):
    reply = generate(engine, prompt="Count from 1 to 500, one number per line.",
                     options={"num_ctx": 64, "num_predict": 500, "temperature": 0}).json()
    assert reply["done_reason"] == "length" and reply["eval_count"] < 500
    # Every token but the last sampled one takes a place in the context.
    assert reply["prompt_eval_count"] + reply["eval_count"] == 64 + 1


def test_a_prompt_longer_than_the_context_is_truncated(engine):
    long_prompt = "Repeat after me: " + "apple banana cherry " * 100
    reply = generate(engine, prompt=long_prompt, options={"num_ctx": 128, "num_predict": 4}).json()
    assert reply["prompt_eval_count"] == 127 and reply["done"] is True


def test_unload_frees_the_instances(engine):
    generate(engine, options={"num_predict": 2})
    assert MODEL in engine.generator._models
    client = ollama.Client(host=engine.url)
    assert client.generate(model=MODEL, prompt="", keep_alive=0).done_reason == "unload"
    assert MODEL not in engine.generator._models


def test_errors(engine):
    client = ollama.Client(host=engine.url)
    with pytest.raises(ollama.ResponseError) as raised:
        list(client.pull("unknown:7b", stream=True))
    assert raised.value.error == "pull model manifest: file does not exist"
    with requests.Session() as session:
        single = session.post(engine.url + "/api/pull", json={"model": "unknown:7b", "stream": False})
        assert (single.status_code, single.json()) == (500, {"error": "pull model manifest: file does not exist"})
        too_long = session.post(engine.url + "/api/embed", json={
            "model": MODEL, "input": "word " * 300, "truncate": False, "options": {"num_ctx": 128}})
        assert (too_long.status_code, too_long.json()) == (400, {"error": "input exceeds maximum context length"})
        truncated = session.post(engine.url + "/api/embed", json={
            "model": MODEL, "input": "word " * 300, "options": {"num_ctx": 128}}).json()
        assert truncated["prompt_eval_count"] == 128
    bad = generate(engine, options={"temperature": "hot"})
    assert bad.status_code == 500 and "temperature" in bad.json()["error"]
    assert generate(engine, options={"num_predict": 2}).status_code == 200  # the instance was given back


def test_show_reads_the_gguf(engine):
    shown = ollama.Client(host=engine.url).show(MODEL)
    assert "<|im_start|>" in shown.template and shown.license == "apache-2.0"
    info = shown.modelinfo
    assert info["general.architecture"] == "llama" and info["llama.context_length"] == 8192
    assert info["llama.block_count"] == 30 and "tokenizer.chat_template" not in info


def test_every_decode_of_an_instance_runs_on_one_thread_whatever_the_connection(engine):
    # One OpenMP team per instance: decoding on each connection's own thread made a team per
    # keep-alive connection, and with more teams than cores every decode slowed 2.8 times.
    generate(engine, options={"num_predict": 2})  # loaded
    [llm] = engine.generator._models[MODEL]._all
    seen, original = set(), llm.eval

    def eval(tokens):
        seen.add(threading.get_ident())
        return original(tokens)

    llm.eval = eval
    body = {"model": MODEL, "prompt": "Say hi.", "stream": False, "options": {"num_predict": 4}}
    with requests.Session() as first, requests.Session() as second:
        for client in (first, second, first, requests):
            assert client.post(engine.url + "/api/generate", json=body, timeout=120).ok
    assert len(seen) == 1 and threading.get_ident() not in seen
