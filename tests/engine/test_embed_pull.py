"""/api/embed, the legacy /api/embeddings and /api/pull with the simulated generator, over raw HTTP."""

from __future__ import annotations

import json
import math

import pytest

MODEL = "gemma:2b"


def embed(engine, http, **body):
    return http.post(engine.url + "/api/embed", json={"model": MODEL, **body})


def test_embed_one_and_many(engine, http):
    one = embed(engine, http, input="Why is the sky blue?")
    assert one.status_code == 200
    body = one.json()
    assert list(body) == ["model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"]
    (vector,) = body["embeddings"]
    assert len(vector) == 768 and math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-6)
    assert body["prompt_eval_count"] == 5 and body["load_duration"] > 0
    many = embed(engine, http, input=["Why is the sky blue?", "Why is the grass green?"]).json()
    assert many["embeddings"][0] == vector and many["embeddings"][1] != vector
    assert many["load_duration"] == 0 and many["prompt_eval_count"] == 10


def test_embed_dimensions_and_empty_input(engine, http):
    short = embed(engine, http, input="abc", dimensions=8).json()["embeddings"][0]
    assert len(short) == 8 and math.isclose(sum(v * v for v in short), 1.0, rel_tol=1e-6)
    empty = embed(engine, http, input=[], keep_alive="1m")
    assert empty.json() == {"model": MODEL, "embeddings": []}
    assert [m["name"] for m in http.get(engine.url + "/api/ps").json()["models"]] == [MODEL]  # it loaded


@pytest.mark.parametrize("body, status, error", [
    ({"input": "x"}, 400, "model is required"),
    ({"model": MODEL, "input": 5}, 400, "invalid input type"),
    ({"model": MODEL, "input": ["a", 5]}, 400, "invalid input type"),
    ({"model": "nope:1b", "input": "x"}, 404, "model 'nope:1b' not found"),
])
def test_embed_errors(engine, http, body, status, error):
    response = http.post(engine.url + "/api/embed", json=body)
    assert (response.status_code, response.json()) == (status, {"error": error})


def test_legacy_embeddings(engine, http):
    body = http.post(engine.url + "/api/embeddings", json={"model": MODEL, "prompt": "hello"}).json()
    assert list(body) == ["embedding"] and len(body["embedding"]) == 768
    assert http.post(engine.url + "/api/embeddings", json={"model": MODEL}).json() == {"embedding": []}


def test_pull_streams_progress_and_adds_the_model(engine, http):
    assert http.post(engine.url + "/api/generate", json={"model": "tinyllama:1.1b", "prompt": "hi"}).status_code == 404
    response = http.post(engine.url + "/api/pull", json={"model": "tinyllama:1.1b"}, stream=True)
    assert response.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[0] == {"status": "pulling manifest"}
    downloads = [line for line in lines if line["status"].startswith("pulling ") and "digest" in line]
    assert downloads and downloads[-1]["completed"] == downloads[-1]["total"]
    assert downloads[0]["status"] == "pulling " + downloads[0]["digest"][7:19]
    assert [line["status"] for line in lines[-4:]] == [
        "verifying sha256 digest", "writing manifest", "removing any unused layers", "success"]
    names = [m["name"] for m in http.get(engine.url + "/api/tags").json()["models"]]
    assert "tinyllama:1.1b" in names
    reply = http.post(engine.url + "/api/generate", json={"model": "tinyllama:1.1b", "prompt": "hi", "stream": False})
    assert reply.status_code == 200 and reply.json()["done"] is True


def test_pull_without_streaming_and_errors(engine, http):
    assert http.post(engine.url + "/api/pull", json={"model": MODEL, "stream": False}).json() == {"status": "success"}
    bad = http.post(engine.url + "/api/pull", json={"model": ""})
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid model name"})


def test_raw_mode_rejects_system(engine, http):
    response = http.post(engine.url + "/api/generate", json={"model": MODEL, "prompt": "x", "raw": True, "system": "s"})
    assert (response.status_code, response.json()) == (
        400, {"error": "raw mode does not support template, system, or context"})
