"""OpenAI's Files and Batches API on the door, called by the official openai SDK through the
Flask app (WSGI), with a fake Redis.

No worker runs here: a batch's jobs stay held in MES, and `run_jobs` plays the worker, saving
each one running then final, as the store would see it.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from mes.jobs import JobKind, JobStatus
from mes.store import names
from mes.store.batches import BatchStore
from tests.web.conftest import ALICE, BOB
from tests.web.doors.test_openai_views import sdk

MODEL = "smollm2:135m"


def chat_line(custom_id: str, content: str = "Capital of France?", **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": content}],
                     "max_tokens": 8, **body}}


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def run_jobs(store, clock, batch_id: str, fail: set[str] = frozenset()) -> None:
    """Run every job of the batch as a worker would: succeed it, or fail those named."""
    ids = BatchStore(store).job_ids(batch_id, 0, 1000)
    for job in store.get_many(ids):
        running = store.save(job.evolve(status=JobStatus.RUNNING, attempts=1,
                                        started_at=clock.now()))
        if job.custom_id in fail:
            store.save(running.evolve(status=JobStatus.FAILED, finished_at=clock.now(),
                                      error={"code": "backend_error",
                                             "message": "the backend answered 500"}))
        elif job.kind is JobKind.EMBED:
            store.save(running.evolve(status=JobStatus.SUCCEEDED, finished_at=clock.now(),
                                      result={"embeddings": [[0.5, -0.25]],
                                              "usage": {"prompt_tokens": 2}}))
        else:
            store.save(running.evolve(status=JobStatus.SUCCEEDED, finished_at=clock.now(),
                                      result={"text": f"answer to {job.custom_id}",
                                              "done_reason": "stop",
                                              "usage": {"prompt_tokens": 7,
                                                        "completion_tokens": 3}}))


@pytest.fixture
def client(app):
    return sdk(app)


def upload(client, lines: list[dict], name: str = "in.jsonl"):
    return client.files.create(file=(name, jsonl(lines)), purpose="batch")


def test_the_sdk_round_trip(client, store, clock, registry):
    lines = [chat_line(f"q-{i}", f"question {i}") for i in range(3)]
    uploaded = upload(client, lines)
    assert uploaded.object == "file" and uploaded.purpose == "batch"
    assert uploaded.bytes == len(jsonl(lines)) and uploaded.filename == "in.jsonl"
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).read() == jsonl(lines)

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"suite": "capitals"})
    assert batch.status == "in_progress" and batch.errors is None
    assert batch.request_counts.total == 3 and batch.request_counts.completed == 0
    assert batch.metadata == {"suite": "capitals"} and batch.model == MODEL
    assert batch.output_file_id is None and batch.error_file_id is None
    jobs = store.get_many(BatchStore(store).job_ids(batch.id, 0, 10))
    assert [job.custom_id for job in jobs] == ["q-0", "q-1", "q-2"]
    spec = registry.get(MODEL)  # each request runs under its model's timeout, in a 24 h window
    assert jobs[0].request == {"messages": [{"role": "user", "content": "question 0"}],
                               "options": {"max_tokens": 8}, "timeout_s": spec.timeout_s,
                               "window_s": 86400}
    assert batch.expires_at == batch.created_at + 86400
    assert {job.priority for job in jobs} == {"batch"}

    run_jobs(store, clock, batch.id, fail={"q-1"})
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.completed_at >= done.created_at
    assert done.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}
    output = client.files.content(done.output_file_id).text.splitlines()
    assert [json.loads(line)["custom_id"] for line in output] == ["q-0", "q-2"]
    first = json.loads(output[0])
    assert first["response"]["status_code"] == 200 and first["error"] is None
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "answer to q-0"
    errors = [json.loads(line) for line in client.files.content(done.error_file_id).text
              .splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("q-1", 502)]
    view = client.files.retrieve(done.output_file_id)
    assert view.purpose == "batch_output" and view.bytes == len("".join(
        line + "\n" for line in output).encode())


def test_a_bad_input_file_makes_a_failed_batch_and_queues_nothing(client, store):
    lines = [chat_line("a"), {**chat_line("b"), "url": "/v1/embeddings"}, chat_line("a")]
    uploaded = upload(client, lines)
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert batch.status == "failed" and batch.failed_at == batch.created_at
    assert [(e.code, e.line, e.param) for e in batch.errors.data] == [
        ("invalid_url", 2, "url"), ("duplicate_custom_id", 3, "custom_id")]
    assert batch.request_counts.total == 0 and batch.output_file_id is None
    assert store.redis.keys(names.job("*")) == []
    assert client.batches.retrieve(batch.id).status == "failed"
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_embeddings_batches_are_embed_jobs_answered_in_their_encoding(client, store, clock):
    lines = [{"custom_id": "e-0", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": MODEL, "input": "Paris", "encoding_format": "base64"}}]
    uploaded = upload(client, lines)
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    [job] = store.get_many(BatchStore(store).job_ids(batch.id, 0, 10))
    assert job.kind is JobKind.EMBED and job.request["input"] == ["Paris"]
    run_jobs(store, clock, batch.id)
    done = client.batches.retrieve(batch.id)
    [line] = client.files.content(done.output_file_id).text.splitlines()
    body = json.loads(line)["response"]["body"]
    assert body["object"] == "list" and body["data"][0]["embedding"] == "AAAAPwAAgL4="


def test_cancel_ends_every_request_and_lists_them_in_the_error_file(client, store):
    uploaded = upload(client, [chat_line(f"c-{i}") for i in range(3)])
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    assert cancelled.request_counts.failed == 3 and cancelled.output_file_id is None
    errors = [json.loads(line) for line in
              client.files.content(cancelled.error_file_id).text.splitlines()]
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in errors] == [
        ("c-0", None, "batch_cancelled"), ("c-1", None, "batch_cancelled"),
        ("c-2", None, "batch_cancelled")]


def test_another_keys_files_and_batches_are_404(app, client):
    uploaded = upload(client, [chat_line("x")])
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    bob = sdk(app, key="bob-secret-22")
    for call in (lambda: bob.files.retrieve(uploaded.id),
                 lambda: bob.files.content(uploaded.id),
                 lambda: bob.files.delete(uploaded.id),
                 lambda: bob.batches.retrieve(batch.id),
                 lambda: bob.batches.cancel(batch.id),
                 lambda: bob.batches.create(input_file_id=uploaded.id,
                                            endpoint="/v1/chat/completions",
                                            completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert bob.files.list().data == [] and bob.batches.list().data == []
    assert [f.id for f in client.files.list()] == [uploaded.id]


def test_lists_page_with_after_and_limit(client, clock):
    ids = []
    for i in range(3):
        ids.append(upload(client, [chat_line(f"p-{i}")]).id)
        clock.advance(1)
    page = client.files.list(limit=2)
    assert [f.id for f in page.data] == ids[:0:-1] and page.has_more
    assert [f.id for f in client.files.list(limit=2).iter_pages().__next__().data] == ids[:0:-1]
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # the SDK follows `after`
    assert [f.id for f in client.files.list(order="asc", after=ids[0])] == ids[1:]
    batches = []
    for file_id in ids:
        batches.append(client.batches.create(input_file_id=file_id,
                                             endpoint="/v1/chat/completions",
                                             completion_window="24h").id)
        clock.advance(1)
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == batches[:0:-1] and first.has_more
    assert [b.id for b in client.batches.list(limit=1)] == batches[::-1]


def test_delete_frees_the_file_and_an_output_file_stays(client, store, clock):
    uploaded = upload(client, [chat_line("d")])
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert client.files.delete(uploaded.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    run_jobs(store, clock, batch.id)
    done = client.batches.retrieve(batch.id)
    assert done.input_file_id == uploaded.id  # the batch holds its requests itself
    assert client.files.delete(done.output_file_id).deleted is False
    assert client.files.content(done.output_file_id).text.count("\n") == 1
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(done.error_file_id or "file_x_errors")


def test_uploads_are_checked_and_capped(make_app):
    client = sdk(make_app(max_batch_bytes=2048, max_file_bytes_per_key=3000))
    with pytest.raises(openai.BadRequestError) as purpose:
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    assert purpose.value.code == "unsupported_parameter" and purpose.value.param == "purpose"
    with pytest.raises(openai.BadRequestError) as big:
        client.files.create(file=("a.jsonl", b"x" * 2049), purpose="batch")
    assert big.value.code == "payload_too_large" and "MES_MAX_BATCH_BYTES" in big.value.message
    with pytest.raises(openai.BadRequestError) as binary:
        client.files.create(file=("a.jsonl", b"\xff\xfe"), purpose="batch")
    assert binary.value.param == "file"
    client.files.create(file=("a.jsonl", b"x" * 2000), purpose="batch")
    with pytest.raises(openai.BadRequestError) as full:
        client.files.create(file=("b.jsonl", b"x" * 1001), purpose="batch")
    assert "MES_MAX_FILE_BYTES_PER_KEY" in full.value.message
    with pytest.raises(openai.BadRequestError) as ttl:
        client.files.create(file=("c.jsonl", b"{}"), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 90 * 86400})
    assert ttl.value.param == "expires_after.seconds"
    kept = client.files.create(file=("c.jsonl", b"{}"), purpose="batch",
                               expires_after={"anchor": "created_at", "seconds": 3600})
    assert kept.expires_at - kept.created_at == 3600


def test_batch_create_is_checked_in_openais_shape(client):
    uploaded = upload(client, [chat_line("k")])
    with pytest.raises(openai.BadRequestError) as endpoint:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/responses",
                              completion_window="24h")
    assert endpoint.value.code == "unsupported_parameter" and endpoint.value.param == "endpoint"
    with pytest.raises(openai.BadRequestError) as window:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="1h")
    assert window.value.param == "completion_window"
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file_nope", endpoint="/v1/chat/completions",
                              completion_window="24h")


def test_native_views_of_a_door_batch(app, client):
    uploaded = upload(client, [chat_line("n")])
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    http = app.test_client()
    native = http.get(f"/v1/batches/{batch.id}", headers=ALICE).get_json()
    assert native["status"] == "queued" and native["request_counts"]["total"] == 1
    assert http.get(f"/v1/batches/{batch.id}", headers=BOB).status_code == 404
    raw = http.get(f"/openai/v1/batches/{batch.id}", headers=ALICE)
    assert raw.get_json()["object"] == "batch"
    missing = http.get("/openai/v1/files/file_none/content", headers=ALICE)
    assert missing.status_code == 404 and missing.get_json()["error"]["param"] == "file_id"


def test_a_native_batch_is_not_seen_through_the_door(app, client):
    http = app.test_client()
    native = http.post("/v1/batches", json={"requests": [{"custom_id": "z", "model": MODEL,
                                                          "prompt": "hi"}]}, headers=ALICE)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve(native.get_json()["id"])
    assert client.batches.list().data == []


def test_files_need_the_jobs_scope(app):
    ops = sdk(app, key="ops-secret-333")
    with pytest.raises(openai.PermissionDeniedError):
        ops.files.list()
    transport = httpx.WSGITransport(app=app)
    plain = httpx.Client(transport=transport, base_url="http://mes.test")
    not_multipart = plain.post("/openai/v1/files", headers=ALICE, json={"purpose": "batch"})
    assert not_multipart.status_code == 400
    assert not_multipart.json()["error"]["param"] == "file"
