"""Exact wire shapes over raw HTTP: NDJSON framing, chunked encoding, field sets and errors."""

from __future__ import annotations

import http.client
import json
from datetime import datetime

import pytest

MODEL = "llama3.1:8b"
STATS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def ndjson(response):
    return [json.loads(line) for line in response.iter_lines() if line]


def test_root_version_and_head(engine, http):
    root = http.get(engine.url + "/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert root.headers["Content-Type"].startswith("text/plain")
    head = http.head(engine.url + "/")
    assert head.status_code == 200 and head.text == "" and head.headers["Content-Length"] == "17"
    assert http.get(engine.url + "/api/version").json() == {"version": "0.6.5"}


def test_tags_and_ps_shapes(engine, http):
    models = http.get(engine.url + "/api/tags").json()["models"]
    assert set(models[0]) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert set(models[0]["details"]) == {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}
    assert http.get(engine.url + "/api/ps").json() == {"models": []}
    http.post(engine.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False})
    (entry,) = http.get(engine.url + "/api/ps").json()["models"]
    assert {"name", "model", "size", "digest", "details", "expires_at", "size_vram"} <= set(entry)
    datetime.fromisoformat(entry["expires_at"])


def test_streaming_generate_is_chunked_ndjson(engine, http):
    response = http.post(engine.url + "/api/generate", json={"model": MODEL, "prompt": "Why is the sky blue?"}, stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert response.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in response.headers
    lines = ndjson(response)
    *chunks, last = lines
    assert len(chunks) == 16
    for chunk in chunks:
        assert list(chunk) == ["model", "created_at", "response", "done"]
        assert chunk["model"] == MODEL and chunk["done"] is False
        datetime.fromisoformat(chunk["created_at"])
    assert last["done"] is True and last["response"] == "" and last["done_reason"] == "stop"
    assert isinstance(last["context"], list)
    for key in STATS:
        assert type(last[key]) is int and last[key] > 0, key
    assert last["prompt_eval_count"] == 5 and last["eval_count"] == 16


def test_load_duration_only_on_the_loading_request(engine, http):
    body = {"model": MODEL, "prompt": "hi", "stream": False}
    first = http.post(engine.url + "/api/generate", json=body).json()
    second = http.post(engine.url + "/api/generate", json=body).json()
    assert first["load_duration"] > 0 and second["load_duration"] == 0
    assert first["response"] == second["response"]


def test_non_streaming_has_content_length(engine, http):
    response = http.post(engine.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False})
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Content-Length"]) == len(response.content)
    body = response.json()
    assert body["done"] is True and len(body["response"].split()) == 16


def test_raw_mode_has_no_context(engine, http):
    body = http.post(engine.url + "/api/generate", json={"model": MODEL, "prompt": "hi", "raw": True, "stream": False}).json()
    assert "context" not in body and body["done_reason"] == "stop"


def test_chat_stream_shapes(engine, http):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "why is the sky blue?"}]}
    *chunks, last = ndjson(http.post(engine.url + "/api/chat", json=body, stream=True))
    for chunk in chunks:
        assert list(chunk) == ["model", "created_at", "message", "done"]
        assert chunk["message"]["role"] == "assistant" and chunk["message"]["content"]
    assert last["done"] is True and last["message"] == {"role": "assistant", "content": ""}
    assert "context" not in last and all(type(last[k]) is int for k in STATS)


def test_raw_socket_sees_chunk_framing(engine):
    conn = http.client.HTTPConnection(engine.host, engine.port, timeout=10)
    try:
        conn.request("POST", "/api/generate", body=json.dumps({"model": MODEL, "prompt": "hi"}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.chunked and response.getheader("Transfer-Encoding") == "chunked"
        lines = response.read().decode().splitlines()
        assert len(lines) == 17 and json.loads(lines[-1])["done"] is True
        # Keep-alive: the same connection serves the next request.
        conn.request("GET", "/api/version")
        assert json.loads(conn.getresponse().read()) == {"version": "0.6.5"}
    finally:
        conn.close()


@pytest.mark.parametrize(
    "body, status, error",
    [
        (b"", 400, "missing request body"),
        (b"{not json", 400, None),
        (b"[1, 2]", 400, "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
        (b'{"prompt": "hi"}', 400, "model is required"),
        (b'{"model": 7, "prompt": "hi"}', 400, None),
        (b'{"model": "llama3.1:8b", "prompt": "hi", "keep_alive": "soon"}', 400, 'time: invalid duration "soon"'),
        (b'{"model": "llama3.1:8b", "prompt": "hi", "format": "xml"}', 400, None),
        (b'{"model": "missing:1b", "prompt": "hi"}', 404, 'model "missing:1b" not found, try pulling it first'),
    ],
)
def test_request_errors(engine, http, body, status, error):
    response = http.post(engine.url + "/api/generate", data=body)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    assert list(payload) == ["error"] and payload["error"]
    if error is not None:
        assert payload["error"] == error


def test_chat_errors(engine, http):
    assert http.post(engine.url + "/api/chat", json={"messages": []}).json() == {"error": "model is required"}
    bad = http.post(engine.url + "/api/chat", json={"model": MODEL, "messages": "hi"})
    assert bad.status_code == 400
    missing = http.post(engine.url + "/api/chat", json={"model": "x:1", "messages": [{"role": "user", "content": "a"}]})
    assert missing.status_code == 404 and missing.json()["error"].startswith('model "x:1" not found')


def test_unknown_path_and_method(engine, http):
    assert http.get(engine.url + "/api/nothing").status_code == 404
    assert http.get(engine.url + "/api/generate").status_code == 405


def test_model_names_are_matched_like_ollama(make_engine, http):
    engine = make_engine(models=["qwen2.5", "llama3.1:8b"])
    names = [m["name"] for m in http.get(engine.url + "/api/tags").json()["models"]]
    assert names == ["qwen2.5:latest", "llama3.1:8b"]
    reply = http.post(engine.url + "/api/generate", json={"model": "Qwen2.5", "prompt": "hi", "stream": False}).json()
    assert reply["model"] == "Qwen2.5" and reply["done"] is True
    assert [m["name"] for m in http.get(engine.url + "/api/ps").json()["models"]] == ["qwen2.5:latest"]
