"""The OpenAI door's translation, on exact JSON: wire request in, job request out, job to answer."""

from __future__ import annotations

import base64
import struct

import pytest
from marshmallow import ValidationError

from mes.errors import InvalidRequest
from mes.jobs import Job, JobKind, JobStatus
from mes.registry import ModelRegistry
from tests.conftest import MODELS_FILE
from web.doors.openai import answers, protocol, translate

MODEL = "smollm2:135m"
HI = [{"role": "user", "content": "Hi"}]


def chat(**wire):
    return protocol.ChatCompletionRequest().load({"model": MODEL, "messages": HI, **wire})


def job(status=JobStatus.SUCCEEDED, result=None, **fields) -> Job:
    values = dict(id="job_01", owner="alice", model=MODEL, queue="mes.smollm",
                  kind=JobKind.INFERENCE, status=status, created_at=1_700_000_000.7,
                  deadline_at=1_700_000_060.0, result=result)
    return Job(**{**values, **fields})


RESULT = {"text": "Paris.", "done_reason": "stop", "usage": {"prompt_tokens": 7,
                                                              "completion_tokens": 3}}


def test_a_chat_request_becomes_a_job_request():
    wire = chat(messages=[{"role": "developer", "content": "Be brief."},
                          {"role": "user", "content": [{"type": "text", "text": "Capital"},
                                                       {"type": "text", "text": "of France?"}]},
                          {"role": "assistant", "content": "Which country?", "refusal": None}],
                temperature=0.5, top_p=0.9, max_tokens=20, stop="\n", seed=7,
                presence_penalty=0.5, frequency_penalty=-0.5, user="u-1",
                metadata={"run": "r-7"}, n=1, logprobs=False, tools=[], tool_choice="none",
                logit_bias={}, modalities=["text"], store=False)
    assert translate.chat_request(wire) == {
        "model": MODEL, "priority": "interactive", "metadata": {"run": "r-7", "user": "u-1"},
        "options": {"temperature": 0.5, "top_p": 0.9, "seed": 7, "presence_penalty": 0.5,
                    "frequency_penalty": -0.5, "max_tokens": 20, "stop": ["\n"]},
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Capital\nof France?"},
                     {"role": "assistant", "content": "Which country?"}]}


def test_max_completion_tokens_wins_and_nothing_unset_is_sent():
    assert translate.chat_request(chat(max_tokens=5, max_completion_tokens=9)) == {
        "model": MODEL, "priority": "interactive", "metadata": {},
        "options": {"max_tokens": 9}, "messages": HI}
    assert "options" not in translate.chat_request(chat(temperature=None, stop=None))


@pytest.mark.parametrize("response_format,expected", [
    ({"type": "text"}, None),
    ({"type": "json_object"}, "json"),
    ({"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
        "type": "object", "properties": {"name": {"type": "string"}}}}},
     {"type": "object", "properties": {"name": {"type": "string"}}}),
    ({"type": "json_schema", "json_schema": {"name": "any"}}, "json"),
])
def test_response_format_becomes_format(response_format, expected):
    assert translate.chat_request(chat(response_format=response_format)).get("format") == expected


@pytest.mark.parametrize("tier,header,lane", [
    (None, None, "interactive"), ("flex", None, "batch"), ("auto", None, "interactive"),
    ("default", "batch", "batch"), ("flex", "interactive", "interactive"),
])
def test_the_lane_comes_from_the_header_or_the_service_tier(tier, header, lane):
    assert translate.chat_request(chat(service_tier=tier), header)["priority"] == lane


def test_a_bad_priority_header_or_oversized_metadata_is_refused():
    with pytest.raises(InvalidRequest):
        translate.chat_request(chat(), "urgent")
    with pytest.raises(InvalidRequest) as clash:
        translate.chat_request(chat(user="u", metadata={"user": "v"}))
    assert clash.value.details == {"param": "metadata"}
    big = {f"k{i}": "x" * 300 for i in range(14)}
    with pytest.raises(InvalidRequest) as large:
        translate.chat_request(chat(user="u" * 256, metadata=big))
    assert large.value.details == {"param": "metadata"}


def test_completion_and_embedding_requests():
    wire = protocol.CompletionRequest().load({"model": MODEL, "prompt": ["Once"],
                                              "max_tokens": 4, "echo": False, "best_of": 1})
    assert translate.completion_request(wire) == {
        "model": MODEL, "priority": "interactive", "metadata": {},
        "options": {"max_tokens": 4}, "prompt": "Once"}
    wire = protocol.EmbeddingRequest().load({"model": MODEL, "input": "a cat", "dimensions": 8,
                                             "user": "u-2"})
    assert wire["encoding_format"] == "float"
    assert translate.embedding_request(wire, "batch") == {
        "model": MODEL, "input": ["a cat"], "priority": "batch", "metadata": {"user": "u-2"},
        "dimensions": 8}


@pytest.mark.parametrize("schema,wire,param", [
    (protocol.ChatCompletionRequest, {"n": 2}, "n"),
    (protocol.ChatCompletionRequest, {"logprobs": True}, "logprobs"),
    (protocol.ChatCompletionRequest, {"top_logprobs": 2}, "top_logprobs"),
    (protocol.ChatCompletionRequest, {"tools": [{"type": "function"}]}, "tools"),
    (protocol.ChatCompletionRequest, {"tool_choice": "auto"}, "tool_choice"),
    (protocol.ChatCompletionRequest, {"functions": [{"name": "f"}]}, "functions"),
    (protocol.ChatCompletionRequest, {"logit_bias": {"50256": -100}}, "logit_bias"),
    (protocol.ChatCompletionRequest, {"audio": {"voice": "alloy"}}, "audio"),
    (protocol.ChatCompletionRequest, {"modalities": ["text", "audio"]}, "modalities"),
    (protocol.ChatCompletionRequest, {"reasoning_effort": "low"}, "reasoning_effort"),
    (protocol.ChatCompletionRequest, {"temperature": "0.5"}, "temperature"),
    (protocol.ChatCompletionRequest, {"temperature": 2.5}, "temperature"),
    (protocol.ChatCompletionRequest, {"stream": 1}, "stream"),
    (protocol.ChatCompletionRequest, {"n": True}, "n"),
    (protocol.ChatCompletionRequest, {"stream_options": {"include_usage": True}},
     "stream_options"),
    (protocol.ChatCompletionRequest, {"stop": ["a"] * 17}, "stop"),
    (protocol.ChatCompletionRequest, {"colour": "red"}, "colour"),
    (protocol.ChatCompletionRequest, {"response_format": {"type": "json_schema"}},
     "response_format"),
    (protocol.CompletionRequest, {"prompt": ["a", "b"]}, "prompt"),
    (protocol.CompletionRequest, {"prompt": [1, 2, 3]}, "prompt"),
    (protocol.CompletionRequest, {"prompt": "a", "suffix": "z"}, "suffix"),
    (protocol.CompletionRequest, {"prompt": "a", "echo": True}, "echo"),
    (protocol.CompletionRequest, {"prompt": "a", "best_of": 3}, "best_of"),
    (protocol.CompletionRequest, {"prompt": "a", "logprobs": 1}, "logprobs"),
    (protocol.EmbeddingRequest, {"input": [[1, 2]]}, "input"),
    (protocol.EmbeddingRequest, {"input": "a", "encoding_format": "int8"}, "encoding_format"),
])
def test_what_mes_cannot_honour_is_refused_by_name(schema, wire, param):
    base = {"model": MODEL} if schema is not protocol.ChatCompletionRequest else {
        "model": MODEL, "messages": HI}
    with pytest.raises(ValidationError) as refused:
        schema().load({**base, **wire})
    assert param in refused.value.normalized_messages()


@pytest.mark.parametrize("message,path", [
    ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
     ["content", 0]),
    ({"role": "tool", "content": "42", "tool_call_id": "c1"}, ["role"]),
    ({"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]}, ["tool_calls"]),
    ({"role": "user", "content": "hi", "name": "bob"}, ["name"]),
])
def test_messages_mes_cannot_honour_are_refused_by_path(message, path):
    with pytest.raises(ValidationError) as refused:
        chat(messages=[message])
    node = refused.value.normalized_messages()["messages"][0]
    for key in path:
        node = node[key]
    assert node


def test_a_succeeded_job_becomes_a_chat_completion():
    answer = translate.chat_completion(job(result=RESULT, priority="batch"))
    assert answer == {
        "id": "job_01", "object": "chat.completion", "created": 1_700_000_000, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris.",
                                             "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        "service_tier": "flex"}
    answers.ChatCompletion().load(answer)


def test_a_succeeded_job_becomes_a_text_completion_cut_at_length():
    answer = translate.text_completion(job(result={**RESULT, "done_reason": "length"}))
    assert answer == {
        "id": "job_01", "object": "text_completion", "created": 1_700_000_000, "model": MODEL,
        "choices": [{"text": "Paris.", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    answers.TextCompletion().load(answer)


def test_structured_output_answers_the_validated_json_as_text():
    result = {**RESULT, "text": "```json\n{\"name\": \"Paris\"}\n```", "json": {"name": "Paris"},
              "schema_valid": True}
    content = translate.chat_completion(job(result=result))["choices"][0]["message"]["content"]
    assert content == '{"name": "Paris"}'


def test_embeddings_as_floats_and_as_base64():
    embedded = job(kind=JobKind.EMBED, result={"embeddings": [[0.5, -0.25], [1.0, 0.0]],
                                               "usage": {"prompt_tokens": 4}})
    floats = translate.embedding_list(embedded)
    assert floats == {"object": "list", "model": MODEL,
                      "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
                               {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
                      "usage": {"prompt_tokens": 4, "total_tokens": 4}}
    packed = translate.embedding_list(embedded, "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -0.25)
    answers.EmbeddingList().load(floats)


def test_the_registry_becomes_a_model_list():
    registry = ModelRegistry.from_file(MODELS_FILE)
    listed = translate.model_list(registry.models)
    assert listed["object"] == "list"
    assert listed["data"][0] == {"id": MODEL, "object": "model", "created": 0,
                                 "owned_by": "smollm"}
    answers.ModelList().load(listed)


@pytest.mark.parametrize("status,error,wire_status,wire_code,kind", [
    (JobStatus.FAILED, {"code": "backend_unavailable", "message": "down"}, 503,
     "backend_unavailable", "server_error"),
    (JobStatus.FAILED, {"code": "model_not_found", "message": "no such model"}, 404,
     "model_not_found", "invalid_request_error"),
    (JobStatus.FAILED, {"code": "output_invalid", "message": "bad JSON"}, 502, "output_invalid",
     "server_error"),
    (JobStatus.CANCELLED, {"code": "cancelled", "message": "cancelled by its owner"}, 409,
     "cancelled", "invalid_request_error"),
    (JobStatus.EXPIRED, None, 504, "expired", "server_error"),
])
def test_a_job_that_did_not_succeed_becomes_an_error(status, error, wire_status, wire_code, kind):
    answered, body = translate.job_error(job(status=status, error=error))
    assert answered == wire_status
    assert body["error"]["code"] == wire_code and body["error"]["type"] == kind
    assert body["error"]["message"].startswith(f"job job_01 {status.value}: ")
    answers.Error().load(body)


def test_a_job_still_running_after_the_wait_is_504_naming_it():
    status, body = translate.job_error(job(status=JobStatus.RUNNING), waited_s=300)
    assert status == 504
    assert body == {"error": {
        "message": "job job_01 is still running after 300 s; it goes on: read it with "
                   "GET /v1/jobs/job_01", "type": "server_error", "param": None,
        "code": "wait_timeout"}}


@pytest.mark.parametrize("status,code,wire_status,wire_code,kind", [
    (401, "unauthorized", 401, "invalid_api_key", "invalid_request_error"),
    (400, "unknown_model", 404, "model_not_found", "invalid_request_error"),
    (413, "payload_too_large", 400, "payload_too_large", "invalid_request_error"),
    (429, "rate_limited", 429, "rate_limit_exceeded", "requests"),
    (429, "queue_full", 429, "queue_full", "requests"),
    (500, "internal_error", 500, "internal_error", "server_error"),
])
def test_mes_errors_become_openai_errors(status, code, wire_status, wire_code, kind):
    assert translate.wire_error(status, code, "words", "model") == (wire_status, {"error": {
        "message": "words", "type": kind, "param": "model", "code": wire_code}})


def test_the_wire_modules_import_no_flask():
    import ast
    import inspect

    from web.doors.openai import batches, batches_input, batches_output, chunks, files
    for module in (protocol, answers, translate, chunks, files, batches, batches_input,
                   batches_output):
        tree = ast.parse(inspect.getsource(module))
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in names if name and name.split(".")[0] == "flask"}, module
