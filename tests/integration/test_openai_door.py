"""The OpenAI door through the real stack, driven by the official openai SDK, unchanged.

One private stack for the module: gunicorn (gevent), a Celery worker for smollm, Redis and
the simulated engine. phi3:mini has a queue of one and no worker, so its queue fills.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import jsonschema
import openai
import pytest
import requests

from mes.bench.processes import wait_until
from tests.conftest import MODELS_FILE
from tests.support.stack import ALICE, PrivateStack

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"  # 30 ms a token: a 48-token reply is seen streaming
FULL = "phi3:mini"      # max_queue 1, and no worker reads its queue
KEY = ALICE["Authorization"].split()[1]
HI = [{"role": "user", "content": "Tell me about Paris."}]
WAIT_MAX_S = 3  # the door's wait bound here, so the 504 comes quickly


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("openai-door")
    models = json.loads(MODELS_FILE.read_text())
    for spec in models["models"]:
        if spec["id"] == FULL:
            spec["max_queue"] = 1
    models_file = log_dir / "models.json"
    models_file.write_text(json.dumps(models))
    with PrivateStack(log_dir, engine_args=("--model", f"{MODEL},token_ms=30", "--load-ms", "5",
                                            "--num-parallel", "4"),
                      settings={"MES_WAIT_MAX_S": str(WAIT_MAX_S),
                                "MES_WAIT_DEFAULT_S": str(WAIT_MAX_S),
                                "MES_BACKEND_MAX_RETRIES": "1"}) as stack:
        stack.models_file = models_file
        yield stack.start_all()


@pytest.fixture
def client(stack):
    return openai.OpenAI(base_url=stack.web_url + "/openai/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def faults(stack):
    yield stack.set_faults
    stack.clear_faults()


def own_jobs(stack) -> dict[str, dict]:
    listed = requests.get(stack.web_url + "/v1/jobs?limit=100", headers=ALICE, timeout=5).json()
    return {job["id"]: job for job in listed["jobs"]}


def test_chat_and_completions_are_ordinary_jobs(stack, client):
    chat = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=8)
    text = client.completions.create(model=MODEL, prompt="Paris is", max_tokens=8)
    assert chat.object == "chat.completion" and chat.choices[0].message.content
    assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.total_tokens > 0
    assert text.object == "text_completion" and text.choices[0].text
    jobs = own_jobs(stack)
    for answer, content in ((chat, chat.choices[0].message.content), (text, text.choices[0].text)):
        assert jobs[answer.id]["status"] == "succeeded" and jobs[answer.id]["model"] == MODEL
        assert jobs[answer.id]["result"]["text"] == content


def test_streams_end_with_usage_and_match_the_job(stack, client):
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=HI, max_tokens=16, stream=True,
            stream_options={"include_usage": True}) as raw:
        job_id = raw.headers["X-MES-Job-ID"]
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 4 and chunks[-1].usage.completion_tokens > 0
    assert own_jobs(stack)[job_id]["result"]["text"] == text
    streamed = list(client.completions.create(model=MODEL, prompt="Paris", max_tokens=8,
                                              stream=True))
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")


def test_json_schema_output_validates(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    answer = client.chat.completions.create(model=MODEL, messages=HI, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(answer.choices[0].message.content), schema)


def test_models_and_embeddings(client):
    assert MODEL in [model.id for model in client.models.list()]
    assert client.models.retrieve(MODEL).id == MODEL
    vectors = client.embeddings.create(model=MODEL, input=["Paris", "Lyon"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) > 8


def test_each_error_class_the_sdk_raises(stack, client):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=stack.web_url + "/openai/v1", api_key="wrong-key-000",
                      max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope:1b", messages=HI)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=HI, n=2)
    assert refused.value.param == "n"
    blocker = requests.post(stack.web_url + "/v1/jobs", json={"model": FULL, "prompt": "a"},
                            headers=ALICE, timeout=5).json()["id"]
    try:
        with pytest.raises(openai.RateLimitError) as full:
            client.completions.create(model=FULL, prompt="b")
        assert full.value.code == "queue_full" and full.value.response.headers["Retry-After"]
    finally:
        requests.delete(f"{stack.web_url}/v1/jobs/{blocker}", headers=ALICE, timeout=5)


def test_a_wait_that_runs_out_is_504_naming_the_job_which_goes_on(stack, client, faults):
    faults(hang=True)
    with pytest.raises(openai.InternalServerError) as waited:
        client.chat.completions.create(model=MODEL, messages=HI)
    job_id = waited.value.response.headers["X-MES-Job-ID"]
    assert waited.value.status_code == 504 and job_id in waited.value.message
    assert own_jobs(stack)[job_id]["status"] in ("queued", "running")
    requests.delete(f"{stack.web_url}/v1/jobs/{job_id}", headers=ALICE, timeout=5)


def test_a_retry_after_streamed_text_ends_the_stream_with_an_error(stack, client, faults):
    faults(error_mid_stream=1)  # the first try fails after a few tokens; MES retries it
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=HI, max_tokens=16, stream=True) as raw:
        job_id = raw.headers["X-MES-Job-ID"]
        with pytest.raises(openai.APIError) as restarted:
            list(raw.parse())
    assert restarted.value.code == "stream_restarted" and job_id in restarted.value.message
    assert stack.settle([job_id], 10)[job_id]["status"] == "cancelled"


def cancelled_on_the_engine(stack, before: int) -> None:
    wait_until(lambda: stack.engine_stats(MODEL)["cancelled"] > before, 10,
               "the engine stopped generating")
    wait_until(lambda: stack.engine_stats(MODEL)["active"] == 0, 10, "the engine went idle")


def test_closing_a_stream_cancels_its_job(stack, client):
    before = stack.engine_stats(MODEL)["cancelled"]
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=HI, max_tokens=64, stream=True) as raw:
        job_id = raw.headers["X-MES-Job-ID"]
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                break  # leaving the block closes the connection mid-reply
    cancelled_on_the_engine(stack, before)
    assert stack.settle([job_id], 10)[job_id]["status"] == "cancelled"


def test_closing_a_waiting_request_cancels_its_job(stack, faults):
    faults(hang=True)  # the generation holds: the job is running when the client leaves
    before = stack.engine_stats(MODEL)["cancelled"]
    body = json.dumps({"model": MODEL, "messages": HI}).encode()
    parts = urlparse(stack.web_url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(f"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    wait_until(lambda: stack.engine_stats(MODEL)["active"] == 1, 10, "the job running")
    [job_id] = [job["id"] for job in own_jobs(stack).values() if job["status"] == "running"]
    sock.close()
    cancelled_on_the_engine(stack, before)
    assert stack.settle([job_id], 10)[job_id]["status"] == "cancelled"
