"""The Ollama door on a live stack (gunicorn with gevent, Celery, Redis, the simulated engine),
driven by the official `ollama` client, unchanged."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import jsonschema
import ollama
import pytest
import requests

from mes.bench.processes import wait_until
from tests.support.stack import ALICE, PrivateStack

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"  # 30 ms a token, 64 at most (about 2 s): long enough to be seen streaming
OPS = {"Authorization": "Bearer ops-secret-333"}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {
    "type": "integer"}}, "required": ["city", "population"]}
HI = [{"role": "user", "content": "Tell me about Paris."}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with PrivateStack(tmp_path_factory.mktemp("ollama_door"),
                      engine_args=("--model", "smollm2:135m,token_ms=30,response_tokens=200",
                                   "--load-ms", "5", "--num-parallel", "4"),
                      settings={"MES_BACKEND_MAX_RETRIES": "3"}, web_workers=2) as stack:
        yield stack.start_all()


def client(stack, headers=ALICE) -> ollama.Client:
    return ollama.Client(host=f"{stack.web_url}/ollama", headers=headers, timeout=60)


def test_generate_and_chat_stream_and_answer_whole(stack):
    parts = list(client(stack).generate(MODEL, "Tell me about Paris.", stream=True,
                                        options={"num_predict": 12}))
    assert len(parts) > 2 and all(not p.done for p in parts[:-1]) and parts[-1].done
    final = parts[-1]
    assert final.done_reason in ("stop", "length") and final.eval_count > 0
    assert final.total_duration >= final.eval_duration > 0 and final.created_at
    whole = client(stack).generate(MODEL, "Tell me about Paris.", options={"num_predict": 8})
    assert whole.done and whole.response and whole.eval_count > 0
    chunks = list(client(stack).chat(MODEL, HI, stream=True, options={"num_predict": 8}))
    text = "".join(c.message.content for c in chunks)
    assert text and chunks[-1].done and chunks[-1].message.role == "assistant"
    answer = client(stack).chat(MODEL, HI, options={"num_predict": 8, "temperature": 0})
    assert answer.message.content and answer.prompt_eval_count > 0


def test_format_json_and_a_schema_give_json_that_validates(stack):
    as_json = client(stack).generate(MODEL, "Describe Paris in JSON.", format="json")
    assert isinstance(json.loads(as_json.response), (dict, list))
    streamed = list(client(stack).chat(MODEL, HI, format=SCHEMA, stream=True))
    jsonschema.validate(json.loads("".join(c.message.content for c in streamed)), SCHEMA)
    whole = client(stack).chat(MODEL, HI, format=SCHEMA)
    jsonschema.validate(json.loads(whole.message.content), SCHEMA)


def test_tags_show_version_ps_and_embed(stack):
    tags = client(stack).list().models
    assert [m.model for m in tags] == [MODEL, "phi3:mini", "ghost:1b"]
    assert tags[0].size > 0 and tags[0].details.family == "llama"  # the backend's details
    assert tags[2].size == 0 and tags[2].details.family == "phi"  # the backend lacks ghost:1b
    shown = client(stack).show(MODEL)
    assert "num_ctx" in shown.parameters and shown.details.format == "gguf"
    assert client(stack).ps().models is not None
    assert requests.get(f"{stack.web_url}/ollama/api/version", headers=ALICE,
                        timeout=10).json()["version"] == requests.get(
        f"{stack.engine_url}/api/version", timeout=10).json()["version"]
    embedded = client(stack).embed(MODEL, ["Paris", "Rome"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) > 0


def test_errors_are_raised_as_ollama_raises_them(stack):
    with pytest.raises(ollama.ResponseError) as unknown:
        client(stack).generate("llama3.2", "Hi")
    assert unknown.value.status_code == 404 and unknown.value.error == "model 'llama3.2' not found"
    with pytest.raises(ollama.ResponseError) as stranger:
        client(stack, {"Authorization": "Bearer wrong"}).list()
    assert stranger.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as refused:
        client(stack).generate(MODEL, "Hi", images=[b"\x89PNG"])
    assert refused.value.status_code == 400 and "images" in refused.value.error


def test_an_empty_generate_loads_and_keep_alive_zero_unloads(stack):
    loaded = client(stack, OPS).generate(MODEL)
    assert loaded.done and loaded.done_reason == "load"
    assert MODEL in {m.model for m in client(stack).ps().models}
    unloaded = client(stack, OPS).generate(MODEL, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert MODEL not in {m.model for m in client(stack).ps().models}
    with pytest.raises(ollama.ResponseError) as denied:
        client(stack).generate(MODEL)  # alice's key has `jobs`, not `models`
    assert denied.value.status_code == 403


def test_runner_options_are_ignored_and_said_so(stack):
    response = requests.post(f"{stack.web_url}/ollama/api/generate", headers=ALICE, timeout=30,
                             json={"model": MODEL, "prompt": "Hi", "stream": False,
                                   "keep_alive": "1h", "options": {"num_ctx": 65536,
                                                                   "num_predict": 4}})
    assert response.status_code == 200, response.text
    assert response.headers["X-MES-Ignored"] == "num_ctx,keep_alive"
    job = requests.get(f"{stack.web_url}/v1/jobs/{response.headers['X-MES-Job-ID']}",
                       headers=ALICE, timeout=10).json()
    assert job["status"] == "succeeded" and job["result"]["text"] == response.json()["response"]


def test_each_door_request_is_an_ordinary_job(stack):
    before = {job["id"] for job in requests.get(f"{stack.web_url}/v1/jobs?limit=100",
                                                headers=ALICE, timeout=10).json()["jobs"]}
    client(stack).generate(MODEL, "one", options={"num_predict": 4})
    list(client(stack).chat(MODEL, HI, stream=True, options={"num_predict": 4}))
    client(stack).embed(MODEL, "three")
    jobs = requests.get(f"{stack.web_url}/v1/jobs?limit=100", headers=ALICE,
                        timeout=10).json()["jobs"]
    new = [job for job in jobs if job["id"] not in before]
    assert [job["kind"] for job in new] == ["embed", "inference", "inference"]
    assert {job["status"] for job in new} == {"succeeded"}


def newest_job(stack) -> dict:
    return requests.get(f"{stack.web_url}/v1/jobs?limit=1", headers=ALICE, timeout=10
                        ).json()["jobs"][0]


@pytest.fixture
def hung(stack):
    """Hold every generation in the engine, so a job is surely running when its client leaves."""
    requests.post(stack.engine_url + "/mes-engine/faults", json={"hang": True},
                  timeout=5).raise_for_status()
    yield
    requests.delete(stack.engine_url + "/mes-engine/faults", timeout=5)


@pytest.mark.parametrize("path,stream", [("/ollama/api/chat", True),
                                         ("/ollama/api/generate", False)])
def test_a_client_that_leaves_cancels_its_job_and_stops_the_engine(stack, hung, path, stream):
    before = stack.engine_stats(MODEL)["cancelled"]
    wire = {"model": MODEL, "stream": stream, "options": {"num_predict": 64}}
    wire.update({"messages": HI} if path.endswith("chat") else {"prompt": "Tell me about Paris."})
    body = json.dumps(wire).encode()
    parts = urlparse(stack.web_url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                  f"Authorization: {ALICE['Authorization']}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    wait_until(lambda: newest_job(stack)["status"] == "running", 10, "the job running")
    job_id = newest_job(stack)["id"]
    wait_until(lambda: stack.engine_stats(MODEL)["active"] == 1, 10, "the engine generating")
    sock.close()
    wait_until(lambda: stack.jobs([job_id])[job_id]["status"] == "cancelled", 10,
               "the job cancelled after its client left")
    wait_until(lambda: stack.engine_stats(MODEL)["cancelled"] > before, 10,
               "the engine stopped generating")
    wait_until(lambda: stack.engine_stats(MODEL)["active"] == 0, 10, "the engine idle")
