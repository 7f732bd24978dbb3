"""The OpenAI door's Files and Batches shapes on exact JSON: file and batch objects, input
lines in, output and error lines out. Every object is also loaded through its answer schema,
so /openapi.json and the answers cannot drift apart."""

from __future__ import annotations

import json

import pytest

from mes.jobs import Job, JobKind, JobStatus
from mes.store.batches import BatchRecord
from mes.store.files import StoredFile
from web.doors.openai import batches, batches_output, files
from web.doors.openai.batches_input import read_file

MODEL = "smollm2:135m"
WIRE = {"input_file_id": "file_01IN", "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}
COUNTS = dict.fromkeys(("queued", "running", "succeeded", "failed", "cancelled", "expired"), 0)


def record(status="queued", finished_at=None, counts=None, extra=None, **fields) -> BatchRecord:
    values = dict(id="batch_01ABC", owner="alice", status=status, created_at=1_700_000_000.5,
                  started_at=None, finished_at=finished_at, total=3,
                  counts={**COUNTS, **(counts or {})}, models={MODEL: 3}, priority="batch",
                  metadata={}, cancel_requested=False,
                  extra=extra or batches.door_extra(WIRE, window_s=86400, base64=[], total=3))
    return BatchRecord(**{**values, **fields})


def line(custom_id="q-1", url="/v1/chat/completions", **body) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                                **body}})


def job(status=JobStatus.SUCCEEDED, **fields) -> Job:
    values = dict(id="job_01J", owner="alice", model=MODEL, queue="mes.smollm",
                  kind=JobKind.INFERENCE, status=status, created_at=1_700_000_001.2,
                  deadline_at=1_700_001_741.2, batch_id="batch_01ABC", custom_id="q-1",
                  request_id="req-7",
                  result={"text": "Paris.", "done_reason": "stop",
                          "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
                  if status is JobStatus.SUCCEEDED else None)
    return Job(**{**values, **fields})


def test_an_upload_is_openais_file_object():
    stored = StoredFile(id="file_01F", owner="alice", filename="in.jsonl", bytes=120,
                        purpose="batch", created_at=1_700_000_000.9, expires_at=1_700_604_800.9)
    assert files.file_object(stored) == {
        "id": "file_01F", "object": "file", "bytes": 120, "created_at": 1_700_000_000,
        "expires_at": 1_700_604_800, "filename": "in.jsonl", "purpose": "batch",
        "status": "processed", "status_details": None}
    files.FileObject().load(files.file_object(stored))
    page = files.cursor_page([files.file_object(stored)], False)
    assert page == {"object": "list", "data": [files.file_object(stored)],
                    "first_id": "file_01F", "last_id": "file_01F", "has_more": False}
    files.FilePage().load(page)
    assert files.deleted("file_01F", True) == {"id": "file_01F", "object": "file",
                                               "deleted": True}


def test_a_batchs_output_files_are_named_by_the_batch():
    assert files.view_id("batch_01ABC", "output") == "file_01ABC_output"
    assert files.view_of("file_01ABC_output") == ("batch_01ABC", "output")
    assert files.view_of("file_01ABC_errors") == ("batch_01ABC", "errors")
    for other in ("file_01ABC", "file__output", "x_01ABC_output", "file_01ABC_input"):
        assert files.view_of(other) is None
    ended = record("completed", finished_at=1_700_000_090.0)
    assert files.view_object(ended, "errors", 42, 604800) == {
        "id": "file_01ABC_errors", "object": "file", "bytes": 42, "created_at": 1_700_000_090,
        "expires_at": 1_700_604_890, "filename": "batch_01ABC_errors.jsonl",
        "purpose": "batch_output", "status": "processed", "status_details": None}


def test_a_batch_in_progress():
    answer = batches.batch_object(record(counts={"queued": 2, "succeeded": 1},
                                         metadata={"suite": "s"}))
    assert answer == {
        "id": "batch_01ABC", "object": "batch", "endpoint": "/v1/chat/completions",
        "errors": None, "input_file_id": "file_01IN", "completion_window": "24h",
        "status": "in_progress", "output_file_id": None, "error_file_id": None,
        "created_at": 1_700_000_000, "in_progress_at": 1_700_000_000,
        "expires_at": 1_700_086_400, "finalizing_at": None, "completed_at": None,
        "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": 3, "completed": 1, "failed": 0},
        "metadata": {"suite": "s"}, "model": MODEL}
    batches.Batch().load(answer)


@pytest.mark.parametrize("status,counts,cancel,wanted,stamp,files_", [
    ("completed", {"succeeded": 2, "failed": 1}, False, "completed", "completed_at",
     ("file_01ABC_output", "file_01ABC_errors")),
    ("completed", {"succeeded": 3}, False, "completed", "finalizing_at",
     ("file_01ABC_output", None)),
    ("cancelled", {"succeeded": 1, "cancelled": 2}, True, "cancelled", "cancelled_at",
     ("file_01ABC_output", "file_01ABC_errors")),
    ("expired", {"expired": 3}, False, "expired", "expired_at", (None, "file_01ABC_errors")),
])
def test_an_ended_batch(status, counts, cancel, wanted, stamp, files_):
    answer = batches.batch_object(record(status, finished_at=1_700_000_090.7, counts=counts,
                                         cancel_requested=cancel))
    assert answer["status"] == wanted and answer[stamp] == 1_700_000_090
    assert (answer["output_file_id"], answer["error_file_id"]) == files_
    assert answer["request_counts"]["failed"] == sum(
        counts.get(state, 0) for state in ("failed", "cancelled", "expired"))
    batches.Batch().load(answer)


def test_a_cancel_asked_while_jobs_run_is_cancelling():
    answer = batches.batch_object(record(counts={"running": 1, "cancelled": 2},
                                         cancel_requested=True))
    assert answer["status"] == "cancelling" and answer["cancelled_at"] is None
    assert answer["error_file_id"] is None  # not ended: no files yet


def test_a_failed_batch_carries_its_errors():
    errors = [{"code": "invalid_url", "message": "m", "param": "url", "line": 2}]
    extra = batches.door_extra(WIRE, window_s=86400, base64=[], total=0, errors=errors)
    answer = batches.batch_object(record("failed", finished_at=1_700_000_000.5, total=0,
                                         models={}, extra=extra))
    assert answer["status"] == "failed" and answer["failed_at"] == 1_700_000_000
    assert answer["errors"] == {"object": "list", "data": errors}
    assert (answer["in_progress_at"], answer["expires_at"], answer["model"]) == (None, None, None)
    assert answer["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    batches.Batch().load(answer)
    page = batches.batch_page([record()], True)
    assert page["has_more"] and page["first_id"] == page["last_id"] == "batch_01ABC"
    batches.BatchPage().load(page)


def test_extra_records_the_openai_fields_and_base64_lines():
    assert batches.door_extra(WIRE, window_s=60, base64=[], total=2) == {
        "door": "openai", "input_file_id": "file_01IN", "endpoint": "/v1/chat/completions",
        "completion_window": "24h", "window_s": 60}
    assert batches.door_extra(WIRE, window_s=60, base64=[0, 1], total=2)[
        "encoding_format"] == "base64"
    mixed = batches.door_extra(WIRE, window_s=60, base64=[1], total=3)
    assert (mixed["encoding_format"], mixed["base64_lines"]) == ("mixed", [1])
    encoding = batches_output.encoding_of(mixed)
    assert [encoding(i) for i in range(3)] == ["float", "base64", "float"]


def test_a_succeeded_job_is_an_output_line():
    kind, out = batches_output.result_line(job(), endpoint="/v1/chat/completions")
    assert kind == "output"
    assert out == {"id": "job_01J", "custom_id": "q-1", "response": {
        "status_code": 200, "request_id": "req-7", "body": {
            "id": "job_01J", "object": "chat.completion", "created": 1_700_000_001,
            "model": MODEL, "choices": [{"index": 0, "message": {
                "role": "assistant", "content": "Paris.", "refusal": None},
                "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            "service_tier": "default"}}, "error": None}
    _, text = batches_output.result_line(job(), endpoint="/v1/completions")
    assert text["response"]["body"]["object"] == "text_completion"
    embedded = job(kind=JobKind.EMBED, result={"embeddings": [[0.5]],
                                               "usage": {"prompt_tokens": 1}})
    _, vector = batches_output.result_line(embedded, endpoint="/v1/embeddings",
                                           encoding="base64")
    assert vector["response"]["body"]["data"] == [
        {"object": "embedding", "index": 0, "embedding": "AAAAPw=="}]


def test_a_failed_job_is_an_error_line_with_the_doors_answer():
    failed = job(JobStatus.FAILED, error={"code": "backend_error", "message": "500 from it"})
    assert batches_output.result_line(failed, endpoint="/v1/chat/completions") == ("errors", {
        "id": "job_01J", "custom_id": "q-1", "response": {
            "status_code": 502, "request_id": "req-7", "body": {"error": {
                "message": "job job_01J failed: 500 from it", "type": "server_error",
                "param": None, "code": "backend_error"}}}, "error": None})


@pytest.mark.parametrize("status,code", [(JobStatus.CANCELLED, "batch_cancelled"),
                                         (JobStatus.EXPIRED, "batch_expired")])
def test_a_job_that_never_answered_is_an_error_line_without_a_response(status, code):
    kind, out = batches_output.result_line(job(status), endpoint="/v1/chat/completions")
    assert kind == "errors" and out["response"] is None
    assert out["error"]["code"] == code and "q-1" in out["error"]["message"]
    assert set(out) == {"id", "custom_id", "response", "error"}


@pytest.fixture
def read(registry, settings):
    def read(*lines, endpoint="/v1/chat/completions", **changes):
        return read_file("\n".join(lines) + "\n", endpoint, registry=registry,
                         settings=settings.replace(**changes))
    return read


def test_good_lines_become_batch_requests(read, settings):
    checked = read(line("a", temperature=0.5, user="u"), "", line("b"))
    assert checked.errors == [] and [r.custom_id for r in checked.lines] == ["a", "b"]
    assert checked.lines[0].body == {
        "model": MODEL, "priority": "interactive", "metadata": {"user": "u"},
        "options": {"temperature": 0.5}, "messages": [{"role": "user", "content": "Hi"}]}
    assert checked.lines[0].kind is JobKind.INFERENCE
    embeds = read(json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                              "body": {"model": MODEL, "input": ["x"],
                                       "encoding_format": "base64"}}),
                  endpoint="/v1/embeddings")
    assert embeds.lines[0].kind is JobKind.EMBED and embeds.base64 == [0]


def test_every_bad_line_is_named_with_openais_fields(read):
    checked = read(
        "not json",
        json.dumps({"custom_id": "m", "method": "GET", "url": "/v1/chat/completions",
                    "body": {}}),
        line("u", url="/v1/completions"),
        line("x", model="nope:1b"),
        line("n", n=2),
        line("s", stream=True),
        line("t", temperature="hot"),
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}),
        line("ok"), line("ok"),
        json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "messages": []}, "extra": 1}))
    assert checked.lines == []
    assert [(e["line"], e["code"], e["param"]) for e in checked.errors] == [
        (1, "invalid_json_line", None), (2, "invalid_method", "method"),
        (3, "invalid_url", "url"), (4, "model_not_found", "body.model"),
        (5, "unsupported_parameter", "body.n"), (6, "unsupported_parameter", "body.stream"),
        (7, "invalid_request", "body.temperature"), (8, "invalid_request", "custom_id"),
        (10, "duplicate_custom_id", "custom_id"), (11, "invalid_request", "extra")]
    assert checked.errors[3]["message"] == "model 'nope:1b' is not in the registry"
    assert checked.errors[4]["message"] == ("'n' is not supported: MES answers with one "
                                            "choice per request")
    assert checked.errors[8]["message"] == "custom_id 'ok' is used by line 9 too"
    for entry in checked.errors:
        batches.BatchError().load(entry)


def test_empty_and_oversized_files(read):
    assert read("", "  ").errors == [{"code": "empty_file", "param": None, "line": None,
                                      "message": "the input file holds no requests"}]
    [too_many] = read(line("a"), line("b"), max_batch_requests=1).errors
    assert too_many["code"] == "too_many_lines" and "MES_MAX_BATCH_REQUESTS" in \
        too_many["message"]


def test_only_the_first_50_bad_lines_are_listed(read):
    checked = read(*["{"] * 60)
    assert len(checked.errors) == 51 and checked.errors[-1]["code"] == "too_many_errors"
    assert "60 of the file's 60 lines" in checked.errors[-1]["message"]


def test_a_byte_order_mark_and_crlf_line_ends_are_read(registry, settings):
    text = "\ufeff" + line("a") + "\r\n" + line("b") + "\r\n"
    checked = read_file(text, "/v1/chat/completions", registry=registry, settings=settings)
    assert checked.errors == [] and len(checked.lines) == 2

