"""The Ollama door's translation, on exact JSON: wire request to job request, job to wire answer."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from mes.errors import InvalidRequest, ModelNotFound, QueueFull, UnknownModel
from mes.jobs import Job, JobKind, JobStatus
from web.doors.ollama import catalog, protocol, translate
from web.doors.ollama.errors import failure, wire_error

NOW = 1_733_072_000.25
AT = "2024-12-01T16:53:20.250000Z"
RESULT = {"text": "Paris.", "done_reason": "stop",
          "usage": {"prompt_tokens": 12, "completion_tokens": 3},
          "timings": {"queue_ms": 4, "load_ms": 1, "prompt_ms": 30, "generate_ms": 900,
                      "total_ms": 940}}
STATS = {"total_duration": 944_000_000, "load_duration": 1_000_000, "prompt_eval_count": 12,
         "prompt_eval_duration": 30_000_000, "eval_count": 3, "eval_duration": 900_000_000}


def job(result=RESULT, status=JobStatus.SUCCEEDED, error=None) -> Job:
    return Job(id="job_1", owner="alice", model="smollm2:135m", queue="mes.smollm",
               kind=JobKind.INFERENCE, status=status, created_at=NOW, deadline_at=NOW + 30,
               result=result, error=error)


def test_a_generate_request_becomes_a_prompt_job_and_says_what_it_ignored():
    wire = protocol.load_generate({
        "model": "smollm2:135m", "prompt": "Capital of France?", "system": "Be brief.",
        "stream": False, "keep_alive": "10m", "raw": False, "images": None, "format": "json",
        "options": {"temperature": 0.1, "top_p": 0.9, "top_k": 40, "seed": 7, "stop": "\n",
                    "num_predict": 32, "num_ctx": 8192, "num_gpu": 1, "repeat_penalty": 1.1},
        "client_tag": "x"})
    body, ignored = translate.job_body("generate", wire, "smollm2:135m")
    assert body == {"model": "smollm2:135m", "prompt": "Capital of France?",
                    "system": "Be brief.", "format": "json",
                    "options": {"temperature": 0.1, "top_p": 0.9, "top_k": 40, "seed": 7,
                                "stop": ["\n"], "max_tokens": 32}}
    assert ignored == ["num_ctx", "num_gpu", "repeat_penalty", "keep_alive", "client_tag"]
    assert translate.header_value(ignored + ["num_ctx"]) == \
        "num_ctx,num_gpu,repeat_penalty,keep_alive,client_tag"
    assert wire["stream"] is False


def test_a_chat_request_keeps_roles_and_content_only():
    wire = protocol.load_chat({"model": "phi3:mini", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "images": []},
        {"role": "assistant", "content": "Hello", "thinking": "..."}],
        "format": {"type": "object"}, "options": {"num_predict": -1}})
    body, ignored = translate.job_body("chat", wire, "phi3:mini")
    assert body == {"model": "phi3:mini", "format": {"type": "object"}, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}]}
    assert ignored == ["num_predict"]  # -1 (no limit) leaves the model's own cap
    assert wire["stream"] is True  # Ollama streams unless told not to


@pytest.mark.parametrize("raw,named", [
    ({"images": ["iVBOR"]}, "images"), ({"raw": True}, "raw"), ({"think": True}, "think"),
    ({"suffix": "end"}, "suffix"), ({"context": [1, 2]}, "context"),
    ({"logprobs": True}, "logprobs")])
def test_what_mes_cannot_honour_is_refused_by_name(raw, named):
    with pytest.raises(InvalidRequest) as refused:
        protocol.load_generate({"model": "m", "prompt": "p", **raw})
    assert refused.value.details == {"unsupported": [named]}
    with pytest.raises(InvalidRequest) as refused:
        protocol.load_chat({"model": "m", "tools": [{"type": "function"}], "messages": [
            {"role": "user", "content": "x", "images": ["a"]}]})
    assert refused.value.details == {"unsupported": ["tools", "messages.images"]}


def test_wire_types_are_checked_like_ollamas_decoder():
    with pytest.raises(ValidationError) as bad:
        protocol.load_generate({"prompt": "p"})
    assert bad.value.messages == {"model": ["model is required"]}
    with pytest.raises(ValidationError):
        protocol.load_generate({"model": "m", "format": "yaml"})
    with pytest.raises(InvalidRequest):
        protocol.load_generate(["not", "an", "object"])
    assert protocol.load_embed({"model": "m", "input": "one"})["input"] == ["one"]
    assert protocol.load_embed({"model": "m"})["input"] == []
    with pytest.raises(ValidationError):
        protocol.load_embed({"model": "m", "input": [1, 2]})
    assert protocol.load_show({"name": "phi3:mini"}) == "phi3:mini"


def test_the_ignored_header_holds_only_plain_names_and_stays_short():
    assert translate.header_value(["num_ctx", "caf\u00e9", "\ud945x", "a b", "num_ctx"]) == "num_ctx"
    long = translate.header_value([f"option_{i:04d}" for i in range(500)])
    assert len(long) <= translate.HEADER_MAX_CHARS + 4 and long.endswith(",option_0084,...")
    assert translate.header_value([]) == ""


@pytest.mark.parametrize("raw", [{"stream": 0}, {"stream": "false"}, {"top_logprobs": 2.5},
                                 {"truncate": 1}, {"context": [1.5]}])
def test_wire_types_are_strict_as_go_decodes_them(raw):
    with pytest.raises(ValidationError):
        protocol.load_generate({"model": "m", "prompt": "p", **raw})
    with pytest.raises(ValidationError):
        protocol.load_show({"model": "m", "verbose": 0})
    with pytest.raises(ValidationError):
        protocol.load_embed({"model": "m", "dimensions": 2.0})


def test_model_names_resolve_as_in_ollama(registry):
    assert translate.resolve_model("phi3:mini", registry) == "phi3:mini"
    with pytest.raises(UnknownModel) as unknown:
        translate.resolve_model("llama3", registry)
    assert wire_error(unknown.value) == (404, "model 'llama3' not found")


@pytest.mark.parametrize("value,zero", [(0, True), ("0", True), ("0s", True), ("0m", True),
                                        (0.0, True), ("5m", False), (-1, False), (None, False),
                                        ("", False), (False, False), ("ms", False), (".", False)])
def test_keep_alive_zero_means_unload(value, zero):
    assert translate.keep_alive_is_zero(value) is zero
    wire = {"model": "m", "prompt": ""} if value is None else {"model": "m", "keep_alive": value}
    assert translate.operation("generate", wire) is (JobKind.UNLOAD if zero else JobKind.LOAD)
    assert translate.operation("generate", {"model": "m", "prompt": "hi"}) is None
    assert translate.operation("chat", {"model": "m", "messages": []}) is JobKind.LOAD


def test_chunks_and_the_final_object_have_ollamas_fields_in_ns():
    assert translate.chunk("generate", "smollm2", "The", NOW) == {
        "model": "smollm2", "created_at": AT, "response": "The", "done": False}
    assert translate.chunk("chat", "smollm2", "The", NOW) == {
        "model": "smollm2", "created_at": AT,
        "message": {"role": "assistant", "content": "The"}, "done": False}
    assert translate.final("generate", "smollm2", job(), NOW, text="Paris.") == {
        "model": "smollm2", "created_at": AT, "response": "Paris.", "done": True,
        "done_reason": "stop", **STATS}
    assert list(translate.final("chat", "smollm2", job(), NOW)) == [
        "model", "created_at", "message", "done_reason", "done", *STATS]
    assert translate.final("chat", "smollm2", job(), NOW)["message"] == {
        "role": "assistant", "content": ""}


def test_load_and_unload_answers():
    assert translate.operation_answer("generate", "smollm2", JobKind.LOAD, NOW) == {
        "model": "smollm2", "created_at": AT, "response": "", "done": True, "done_reason": "load"}
    assert translate.operation_answer("chat", "smollm2", JobKind.UNLOAD, NOW) == {
        "model": "smollm2", "created_at": AT, "message": {"role": "assistant", "content": ""},
        "done_reason": "unload", "done": True}


def test_embed_request_and_answer():
    wire = protocol.load_embed({"model": "smollm2:135m", "input": ["a", "b"], "truncate": False,
                                "options": {"num_ctx": 512}, "keep_alive": "1m"})
    body, ignored = translate.embed_body(wire, "smollm2:135m")
    assert body == {"model": "smollm2:135m", "input": ["a", "b"], "truncate": False}
    assert ignored == ["num_ctx", "keep_alive"]
    done = job({"embeddings": [[0.6, 0.8], [1.0, 0.0]], "usage": {"prompt_tokens": 4},
                "timings": {"queue_ms": 2, "load_ms": 1, "total_ms": 5}})
    assert translate.embed_answer("smollm2", done) == {
        "model": "smollm2", "embeddings": [[0.6, 0.8], [1.0, 0.0]],
        "total_duration": 7_000_000, "load_duration": 1_000_000, "prompt_eval_count": 4}


def test_format_answers_are_json_that_parses():
    fenced = job({**RESULT, "text": "```json\n{\"a\": 1}\n```", "json": {"a": 1}})
    assert translate.answer_text(fenced) == '{"a": 1}'
    plain = job({**RESULT, "text": '{"a":1}', "json": {"a": 1}})
    assert translate.answer_text(plain) == '{"a":1}'


def test_the_stream_sends_text_then_the_final_object():
    stream = translate.StreamTranslator("generate", "smollm2", buffered=False)
    assert stream.feed("status", {"status": "running", "attempt": 1}, NOW) == []
    assert stream.feed("restart", {"attempt": 2}, NOW) == []  # nothing sent yet: no harm
    assert stream.feed("token", {"text": "Par"}, NOW) == [
        {"model": "smollm2", "created_at": AT, "response": "Par", "done": False}]
    assert stream.finish(job(), NOW) == [{"model": "smollm2", "created_at": AT, "response": "",
                                          "done": True, "done_reason": "stop", **STATS}]


def test_a_restart_after_text_ends_the_stream_with_an_error_line():
    stream = translate.StreamTranslator("chat", "smollm2", buffered=False)
    stream.feed("token", {"text": "Par"}, NOW)
    assert stream.feed("restart", {"attempt": 2}, NOW) == [{"error": (
        "the job restarted (attempt 2) after part of its answer was sent; the text so far is "
        "void, so this stream ends here")}]
    assert stream.ended and stream.feed("token", {"text": "x"}, NOW) == []


def test_a_format_stream_sends_only_the_checked_answer():
    stream = translate.StreamTranslator("chat", "smollm2", buffered=True)
    assert stream.feed("token", {"text": "{bad"}, NOW) == []
    assert stream.feed("restart", {"reason": "format_repair"}, NOW) == []
    done = job({**RESULT, "text": '{"a":1}', "json": {"a": 1}})
    first, last = stream.finish(done, NOW)
    assert first == {"model": "smollm2", "created_at": AT,
                     "message": {"role": "assistant", "content": '{"a":1}'}, "done": False}
    assert last["done"] is True and last["message"]["content"] == ""
    assert translate.StreamTranslator("chat", "m", buffered=False).finish(
        done, NOW, "backend down") == [{"error": "backend down"}]


def test_job_failures_keep_their_status_and_an_unknown_model_is_404():
    failed = job(None, JobStatus.FAILED, {"code": "model_not_found", "message": "no such model"})
    assert isinstance(failure(failed, "ghost"), ModelNotFound)
    assert wire_error(failure(failed, "ghost")) == (404, "model 'ghost' not found")
    timed_out = job(None, JobStatus.FAILED, {"code": "timeout", "message": "ran too long"})
    assert wire_error(failure(timed_out, "m")) == (504, "ran too long (job job_1)")
    odd = job(None, JobStatus.FAILED, {"code": "something_new", "message": "odd"})
    assert wire_error(failure(odd, "m")) == (500, "odd (job job_1)")
    assert wire_error(QueueFull("the queue of m is full", retry_after_s=3))[0] == 429
    assert wire_error(InvalidRequest("failed", {"fields": {"options": {"top_k": [
        "Not a valid integer."]}}})) == (400, "options.top_k: Not a valid integer.")


def test_tags_list_the_registry_with_the_backends_details(registry):
    backend = [{"name": "smollm2:135m", "model": "smollm2:135m", "size": 270898672,
                "digest": "abc", "modified_at": "2024-12-01T00:00:00Z",
                "details": {"format": "gguf", "family": "llama", "families": ["llama"],
                            "parameter_size": "134.52M", "quantization_level": "F16"}},
               {"name": "other:7b", "model": "other:7b", "size": 1}]
    smol, phi, ghost = catalog.tags(registry, backend)["models"]
    assert smol == {"name": "smollm2:135m", "model": "smollm2:135m",
                    "modified_at": "2024-12-01T00:00:00Z", "size": 270898672, "digest": "abc",
                    "details": backend[0]["details"],
                    "mes": {"family": "smollm", "queue": "mes.smollm",
                            "available_on_backend": True}}
    assert phi["size"] == 0 and phi["digest"] == "" and phi["modified_at"] is None
    assert phi["details"] == {"parent_model": "", "format": "", "family": "phi",
                              "families": ["phi"], "parameter_size": "",
                              "quantization_level": ""}
    assert ghost["mes"]["available_on_backend"] is False
    assert catalog.tags(registry, None)["models"][0]["mes"]["available_on_backend"] is None


def test_show_says_what_mes_fixes_for_the_model(registry):
    shown = catalog.show(registry.get("smollm2:135m"), None)
    assert shown["parameters"] == "temperature                    0.2\nnum_ctx                        2048"
    assert shown["modelfile"] == ("# Modelfile generated by MES from its model registry\n"
                                  "FROM smollm2:135m\nPARAMETER temperature 0.2\n"
                                  "PARAMETER num_ctx 2048\n")
    assert shown["model_info"] == {} and shown["capabilities"] == ["completion"]
    assert shown["mes"] == {"family": "smollm", "queue": "mes.smollm",
                            "available_on_backend": None, "keep_alive": "5m", "max_tokens": 64,
                            "timeout_s": 30, "json_mode": "native"}
