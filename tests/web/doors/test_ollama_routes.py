"""The Ollama door's views through Flask's test client, with a dispatcher that plays the worker."""

from __future__ import annotations

import json

import pytest

from mes.jobs import JobKind, JobStatus
from tests.support.dispatcher import RecordingDispatcher
from tests.web.conftest import ALICE, OPS, ROOT

MODEL = "smollm2:135m"
RESULT = {"text": "Paris.", "done_reason": "stop",
          "usage": {"prompt_tokens": 12, "completion_tokens": 2},
          "timings": {"queue_ms": 4, "load_ms": 1, "prompt_ms": 30, "generate_ms": 900,
                      "total_ms": 940}}


class WorkerDispatcher(RecordingDispatcher):
    """Run each job as soon as it is sent: stream its pieces, then end it as `outcome` says."""

    def __init__(self, store, clock):
        super().__init__()
        self.store, self.clock = store, clock
        self.pieces = ["Par", "is."]
        self.outcome = lambda job: (JobStatus.SUCCEEDED, {**RESULT, "text": "".join(self.pieces)},
                                    None)
        self.restart_after = None  # a piece after which the job restarts (a retried attempt)

    def send(self, job):
        super().send(job)
        running = self.store.save(job.evolve(status=JobStatus.RUNNING, attempts=1,
                                             started_at=self.clock.now()))
        for index, piece in enumerate(self.pieces if job.kind is JobKind.INFERENCE else ()):
            self.store.events.append_text(job.id, piece)
            if index == self.restart_after:
                self.store.events.append_restart(job.id, {"attempt": 2})
        status, result, error = self.outcome(job)
        self.store.save(running.evolve(status=status, result=result, error=error,
                                       finished_at=self.clock.now()))


@pytest.fixture
def dispatcher(store, clock):
    return WorkerDispatcher(store, clock)


def lines(response) -> list[dict]:
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def test_generate_streams_ndjson_ending_with_statistics(client, dispatcher):
    response = client.post("/ollama/api/generate", headers=ALICE, json={
        "model": MODEL, "prompt": "Capital of France?", "options": {"num_ctx": 4096},
        "keep_alive": "1h"})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    assert response.headers["X-MES-Ignored"] == "num_ctx,keep_alive"
    job_id = response.headers["X-MES-Job-ID"]
    chunks = lines(response)
    assert [c["response"] for c in chunks] == ["Par", "is.", ""]
    assert [c["done"] for c in chunks] == [False, False, True]
    assert chunks[-1]["done_reason"] == "stop" and chunks[-1]["eval_duration"] == 900_000_000
    [sent] = dispatcher.sent
    assert sent.id == job_id and sent.request == {"prompt": "Capital of France?"}


def test_chat_without_streaming_answers_one_object(client):
    response = client.post("/ollama/api/chat", headers=ALICE, json={
        "model": MODEL, "stream": False, "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 200 and response.is_json
    body = response.get_json()
    assert body["message"] == {"role": "assistant", "content": "Paris."}
    assert body["done"] is True and body["prompt_eval_count"] == 12
    assert "X-MES-Ignored" not in response.headers and response.headers["X-MES-Job-ID"]


def test_a_door_job_is_an_ordinary_job(client, store):
    response = client.post("/ollama/api/generate", headers=ALICE,
                           json={"model": MODEL, "prompt": "Hi", "stream": False})
    job_id = response.headers["X-MES-Job-ID"]
    listed = client.get("/v1/jobs", headers=ALICE).get_json()["jobs"]
    assert [job["id"] for job in listed] == [job_id] and listed[0]["status"] == "succeeded"


def test_a_job_that_fails_before_any_text_gets_a_real_status(client, dispatcher):
    dispatcher.pieces = []
    dispatcher.outcome = lambda job: (JobStatus.FAILED, None, {
        "code": "model_not_found", "message": "the backend has no ghost:1b"})
    for stream in (True, False):
        response = client.post("/ollama/api/generate", headers=ALICE,
                               json={"model": "ghost:1b", "prompt": "Hi", "stream": stream})
        assert response.status_code == 404, stream
        assert response.get_json() == {"error": "model 'ghost:1b' not found"}
        assert response.headers["X-MES-Job-ID"]


def test_a_job_that_fails_after_text_ends_with_an_error_line(client, dispatcher):
    dispatcher.outcome = lambda job: (JobStatus.FAILED, None, {
        "code": "backend_unavailable", "message": "the backend went away"})
    chunks = lines(client.post("/ollama/api/generate", headers=ALICE,
                               json={"model": MODEL, "prompt": "Hi"}))
    assert chunks[0]["response"] == "Par"
    assert chunks[-1] == {"error": f"the backend went away (job {dispatcher.sent[0].id})"}


def test_a_restart_after_text_ends_the_stream_and_cancels_the_job(client, dispatcher, store):
    dispatcher.restart_after = 0
    dispatcher.outcome = lambda job: (JobStatus.RUNNING, None, None)  # the retry still runs
    response = client.post("/ollama/api/chat", headers=ALICE,
                           json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    chunks = lines(response)
    assert chunks[0]["message"]["content"] == "Par"
    assert "restarted (attempt 2)" in chunks[1]["error"] and len(chunks) == 2
    assert store.get(dispatcher.sent[0].id).status is JobStatus.CANCELLED


def test_format_json_is_sent_once_checked(client, dispatcher):
    dispatcher.pieces = ['{"a"', ": 1}"]
    dispatcher.outcome = lambda job: (JobStatus.SUCCEEDED, {
        **RESULT, "text": '{"a": 1}', "json": {"a": 1}, "schema_valid": True}, None)
    chunks = lines(client.post("/ollama/api/generate", headers=ALICE,
                               json={"model": MODEL, "prompt": "JSON please", "format": "json"}))
    assert [c["response"] for c in chunks] == ['{"a": 1}', ""]
    assert dispatcher.sent[0].request["format"] == "json"


def test_an_empty_generate_loads_and_keep_alive_zero_unloads(client, dispatcher):
    loaded = client.post("/ollama/api/generate", headers=OPS, json={"model": MODEL})
    assert loaded.status_code == 200
    assert {k: v for k, v in loaded.get_json().items() if k != "created_at"} == {
        "model": MODEL, "response": "", "done": True, "done_reason": "load"}
    unloaded = client.post("/ollama/api/chat", headers=OPS,
                           json={"model": MODEL, "messages": [], "keep_alive": 0})
    assert unloaded.get_json()["done_reason"] == "unload"
    assert [job.kind for job in dispatcher.sent] == [JobKind.LOAD, JobKind.UNLOAD]
    assert loaded.headers["X-MES-Job-ID"] == dispatcher.sent[0].id


def test_scopes_are_mes_own(client, dispatcher):
    assert client.post("/ollama/api/generate", headers=ALICE,
                       json={"model": MODEL}).status_code == 403  # loading needs `models`
    denied = client.post("/ollama/api/generate", headers=OPS, json={"model": MODEL, "prompt": "x"})
    assert denied.status_code == 403 and denied.get_json() == {
        "error": "the key lacks the 'jobs' scope"}
    unknown = client.get("/ollama/api/tags", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401 and unknown.get_json() == {"error": "the API key is not valid"}
    assert unknown.headers["WWW-Authenticate"] == 'Bearer realm="mes"'
    assert dispatcher.sent == []
    assert client.post("/ollama/api/generate", headers=ROOT, json={"model": MODEL}).status_code == 200


def test_embed_is_an_embed_job(client, dispatcher):
    dispatcher.outcome = lambda job: (JobStatus.SUCCEEDED, {
        "embeddings": [[0.6, 0.8]], "usage": {"prompt_tokens": 3},
        "timings": {"queue_ms": 1, "load_ms": 0, "total_ms": 2}}, None)
    response = client.post("/ollama/api/embed", headers=ALICE,
                           json={"model": MODEL, "input": "Hello", "options": {"num_ctx": 64}})
    assert response.get_json() == {"model": MODEL, "embeddings": [[0.6, 0.8]],
                                   "total_duration": 3_000_000, "load_duration": 0,
                                   "prompt_eval_count": 3}
    assert response.headers["X-MES-Ignored"] == "num_ctx"
    assert dispatcher.sent[0].kind is JobKind.EMBED
    assert dispatcher.sent[0].request == {"input": ["Hello"]}


def test_errors_are_ollamas_shape(client, dispatcher):
    unknown = client.post("/ollama/api/chat", headers=ALICE, json={
        "model": "llama3", "messages": [{"role": "user", "content": "x"}]})
    assert unknown.status_code == 404 and unknown.get_json() == {"error": "model 'llama3' not found"}
    bad = client.post("/ollama/api/generate", headers=ALICE,
                      json={"model": MODEL, "prompt": "x", "options": {"temperature": 9}})
    assert bad.status_code == 400 and bad.get_json()["error"].startswith("options.temperature:")
    over = client.post("/ollama/api/generate", headers=ALICE,
                       json={"model": MODEL, "prompt": "x", "options": {"num_predict": 65}})
    assert over.status_code == 400 and over.get_json() == {
        "error": "options.num_predict: must be at most 64 for smollm2:135m"}
    assert client.post("/ollama/api/generate", headers=ALICE).get_json() == {
        "error": "missing request body"}
    assert client.get("/ollama/api/nothing", headers=ALICE).status_code == 404
    assert client.get("/ollama/api/generate", headers=ALICE).status_code == 405
    assert dispatcher.sent == []


def test_odd_field_names_are_ignored_without_breaking_the_answer(client):
    response = client.post("/ollama/api/embed", headers=ALICE, json={
        "model": MODEL, "input": "x", "\u00e9t\u00e9": 1, "options": {"\ud945\udc74": 1, "num_gpu": 1}})
    assert response.status_code == 200 and response.headers["X-MES-Ignored"] == "num_gpu"


def test_a_body_without_content_type_is_read_as_json(client):
    # curl -d sends application/x-www-form-urlencoded, as Ollama's own examples do.
    response = client.post("/ollama/api/generate", headers=ALICE,
                           data=json.dumps({"model": MODEL, "prompt": "Hi", "stream": False}),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and response.get_json()["response"] == "Paris."


def test_a_wait_that_runs_out_is_504_and_the_job_goes_on(make_app, dispatcher, store):
    dispatcher.outcome = lambda job: (JobStatus.RUNNING, None, None)  # it never ends here
    client = make_app(wait_max_s=1, wait_default_s=1).test_client()
    response = client.post("/ollama/api/generate", headers=ALICE,
                           json={"model": MODEL, "prompt": "Hi", "stream": False})
    job_id = response.headers["X-MES-Job-ID"]
    assert response.status_code == 504 and job_id in response.get_json()["error"]
    assert store.get(job_id).status is JobStatus.RUNNING


def test_a_key_over_its_rate_is_429_with_retry_after(make_app):
    client = make_app(rate_limits=(("default", "2/minute"),)).test_client()
    answers = [client.get("/ollama/api/tags", headers=ALICE) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].get_json()["error"].startswith("the key is over its rate")


def test_tags_show_version_and_ps(client):
    tags = client.get("/ollama/api/tags", headers=ALICE).get_json()["models"]
    assert [tag["name"] for tag in tags] == [MODEL, "phi3:mini", "ghost:1b"]
    shown = client.post("/ollama/api/show", headers=ALICE, json={"model": MODEL}).get_json()
    assert shown["details"]["family"] == "smollm" and shown["model_info"] == {}
    assert client.post("/ollama/api/show", headers=ALICE,
                       json={"model": "nope"}).status_code == 404
    assert client.get("/ollama/api/version", headers=ALICE).get_json()["version"]
    down = client.get("/ollama/api/ps", headers=ALICE)  # the test backend is down
    assert down.status_code == 503 and "error" in down.get_json()
