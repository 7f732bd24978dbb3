"""The OpenAI door's views, called by the official openai SDK through the Flask app (WSGI).

The dispatcher here plays the worker: it saves each job as running, logs its text and saves
it as succeeded, so the views answer at once; `hold` leaves jobs queued instead.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from mes.jobs import JobKind, JobStatus
from mes.registry import ModelRegistry
from tests.conftest import MODELS_FILE
from tests.web.conftest import ALICE

MODEL = "smollm2:135m"
HI = [{"role": "user", "content": "Capital of France?"}]


class WorkingDispatcher:
    """Run each job as a worker would, from the store's side only."""

    def __init__(self, store, clock):
        self.store, self.clock = store, clock
        self.sent = []
        self.hold = False

    def send(self, job):
        """Record the job and, unless held, finish it."""
        self.sent.append(job)
        if self.hold:
            return
        running = self.store.save(job.evolve(status=JobStatus.RUNNING, attempts=1,
                                             started_at=self.clock.now()))
        if job.kind is JobKind.EMBED:
            result = {"embeddings": [[0.5, -0.25]] * len(job.request["input"]),
                      "usage": {"prompt_tokens": 2, "completion_tokens": 0}}
        else:
            text = "{\"city\": \"Paris\"}" if job.request.get("format") else "Paris."
            for piece in (text[:3], text[3:]):
                self.store.events.append_text(job.id, piece)
            result = {"text": text, "done_reason": "stop",
                      "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
            if job.request.get("format"):
                result.update(json={"city": "Paris"}, schema_valid=True, format_attempts=1)
        self.store.save(running.evolve(status=JobStatus.SUCCEEDED, finished_at=self.clock.now(),
                                       result=result))


@pytest.fixture
def registry(tmp_path):
    """The test models, with a queue of one for phi3:mini."""
    models = ModelRegistry.from_file(MODELS_FILE)
    text = MODELS_FILE.read_text().replace('"id": "phi3:mini",', '"id": "phi3:mini", "max_queue": 1,')
    path = tmp_path / "models.json"
    path.write_text(text)
    assert len(ModelRegistry.from_file(path).models) == len(models.models)
    return ModelRegistry.from_file(path)


@pytest.fixture
def dispatcher(store, clock):
    return WorkingDispatcher(store, clock)


def sdk(app, key="alice-secret-1") -> openai.OpenAI:
    transport = httpx.WSGITransport(app=app)
    return openai.OpenAI(base_url="http://mes.test/openai/v1", api_key=key, max_retries=2,
                         http_client=httpx.Client(transport=transport))


@pytest.fixture
def client(app):
    return sdk(app)


def test_a_chat_completion_is_an_ordinary_job(client, store, dispatcher):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=HI, temperature=0.1, max_tokens=8, user="u-1")
    answer = raw.parse()
    assert answer.choices[0].message.content == "Paris."
    assert answer.choices[0].finish_reason == "stop" and answer.usage.total_tokens == 10
    assert raw.headers["X-MES-Job-ID"] == answer.id == dispatcher.sent[0].id
    stored = store.get(answer.id)
    assert stored.owner == "alice" and stored.priority == "interactive"
    assert stored.request == {"messages": HI, "options": {"temperature": 0.1, "max_tokens": 8}}
    assert stored.metadata == {"user": "u-1"}


def test_a_chat_stream_is_read_by_the_sdk(client):
    with client.chat.completions.create(model=MODEL, messages=HI, stream=True,
                                        stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


def test_completions_streamed_and_not(client):
    answer = client.completions.create(model=MODEL, prompt="The capital of France is")
    assert answer.object == "text_completion" and answer.choices[0].text == "Paris."
    streamed = list(client.completions.create(model=MODEL, prompt="The capital", stream=True))
    assert "".join(chunk.choices[0].text for chunk in streamed) == "Paris."


def test_json_schema_output_is_the_validated_json(client, store):
    answer = client.chat.completions.create(model=MODEL, messages=HI, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
            "type": "object", "properties": {"city": {"type": "string"}}}}})
    assert answer.choices[0].message.content == '{"city": "Paris"}'
    assert store.get(answer.id).request["format"]["properties"] == {"city": {"type": "string"}}


def test_embeddings_in_floats_and_the_sdks_default_base64(client, store, dispatcher):
    floats = client.embeddings.create(model=MODEL, input=["a", "b"], encoding_format="float")
    assert [item.embedding for item in floats.data] == [[0.5, -0.25], [0.5, -0.25]]
    assert floats.usage.prompt_tokens == 2
    decoded = client.embeddings.create(model=MODEL, input="a")  # the SDK asks for base64
    assert decoded.data[0].embedding == [0.5, -0.25]
    jobs = [store.get(job.id) for job in dispatcher.sent]
    assert [(job.kind, job.request) for job in jobs] == [
        (JobKind.EMBED, {"input": ["a", "b"]}), (JobKind.EMBED, {"input": ["a"]})]


def test_input_limits_apply_to_embeddings_as_to_prompts(make_app):
    client = sdk(make_app(max_prompt_chars=10))
    with pytest.raises(openai.BadRequestError) as large:
        client.embeddings.create(model=MODEL, input=["a" * 6, "b" * 5], encoding_format="float")
    assert large.value.code == "payload_too_large"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "c" * 11}])


def test_models_list_and_one_model(client):
    assert [model.id for model in client.models.list()] == ["smollm2:135m", "phi3:mini",
                                                           "ghost:1b"]
    assert client.models.retrieve("smollm2:135m").owned_by == "smollm"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("library/nope:1b")
    assert missing.value.code == "model_not_found"


def test_the_sdks_error_classes(app, client, dispatcher):
    with pytest.raises(openai.AuthenticationError) as unknown:
        sdk(app, "wrong-key-000").models.list()
    assert unknown.value.code == "invalid_api_key" and unknown.value.type == "invalid_request_error"
    with pytest.raises(openai.PermissionDeniedError):
        sdk(app, "ops-secret-333").chat.completions.create(model=MODEL, messages=HI)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope:1b", messages=HI)
    assert missing.value.param == "model" and missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=HI, n=2)
    assert refused.value.param == "n" and refused.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as image:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert image.value.param == "messages[0].content[0]"
    assert dispatcher.sent == []


def test_a_full_queue_is_a_rate_limit_error_with_retry_after(app, client, dispatcher):
    dispatcher.hold = True
    queued = app.test_client().post("/v1/jobs", json={"model": "phi3:mini", "prompt": "a"},
                                    headers=ALICE)
    assert queued.status_code == 202
    with pytest.raises(openai.RateLimitError) as full:
        client.with_options(max_retries=0).completions.create(model="phi3:mini", prompt="b")
    assert full.value.code == "queue_full" and full.value.type == "requests"
    assert int(full.value.response.headers["Retry-After"]) >= 1


def test_a_key_over_its_rate_is_a_rate_limit_error(make_app):
    client = sdk(make_app(rate_limits=(("default", "600/minute"), ("alice", "1/minute"))))
    client.models.list()
    with pytest.raises(openai.RateLimitError) as limited:
        client.with_options(max_retries=0).models.list()
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["Retry-After"]) >= 1


def test_a_wait_that_runs_out_answers_504_with_the_job_id_and_no_sdk_retry(make_app, dispatcher):
    dispatcher.hold = True
    client = sdk(make_app(wait_max_s=1, wait_default_s=1))
    with pytest.raises(openai.InternalServerError) as waited:
        client.chat.completions.create(model=MODEL, messages=HI)
    job_id = dispatcher.sent[0].id
    assert waited.value.status_code == 504 and waited.value.code == "wait_timeout"
    assert job_id in waited.value.message
    assert waited.value.response.headers["X-MES-Job-ID"] == job_id
    assert len(dispatcher.sent) == 1  # x-should-retry: false kept the SDK from queuing another


def test_idempotency_key_and_priority_header(client, store, dispatcher):
    headers = {"Idempotency-Key": "run-7-item-3", "X-MES-Priority": "batch"}
    first = client.chat.completions.create(model=MODEL, messages=HI, extra_headers=headers)
    again = client.chat.completions.create(model=MODEL, messages=HI, extra_headers=headers)
    assert first.id == again.id and len(dispatcher.sent) == 1
    assert store.get(first.id).priority == "batch" and first.service_tier == "flex"


def test_raw_errors_have_openais_shape(app):
    http = app.test_client()
    missing = http.post("/openai/v1/chat/completions", json={"model": MODEL, "messages": HI})
    assert missing.status_code == 401
    assert missing.get_json() == {"error": {
        "message": "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="mes"'
    unknown = http.post("/openai/v1/chat/completions", headers=ALICE,
                        json={"model": MODEL, "messages": HI, "colour": "red"})
    assert unknown.get_json()["error"] == {
        "message": "Unrecognized request argument supplied: colour",
        "type": "invalid_request_error", "param": "colour", "code": "invalid_request"}
    not_json = http.post("/openai/v1/completions", headers=ALICE, data="x")
    assert not_json.status_code == 400 and not_json.get_json()["error"]["param"] is None
    nowhere = http.get("/openai/v1/nowhere", headers=ALICE)
    assert nowhere.status_code == 404 and set(nowhere.get_json()["error"]) == {
        "message", "type", "param", "code"}
