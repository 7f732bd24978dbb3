"""The OpenAI door's stream, on exact SSE text, read back with openai-python's own decoder."""

from __future__ import annotations

import json

from openai._streaming import SSEDecoder
from openai.types import Completion
from openai.types.chat import ChatCompletionChunk

from mes.jobs import Job, JobKind, JobStatus
from mes.store.events import Event
from web.doors.openai.chunks import stream_chunks

RESULT = {"text": "Paris.", "done_reason": "stop",
          "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


def job(status=JobStatus.QUEUED, **fields) -> Job:
    values = dict(id="job_01", owner="alice", model="smollm2:135m", queue="mes.smollm",
                  kind=JobKind.INFERENCE, status=status, created_at=1_700_000_000.0,
                  deadline_at=1_700_000_060.0)
    return Job(**{**values, **fields})


def events(*items) -> list[Event | None]:
    return [None if item is None else Event(f"1-{n}", item[0], item[1])
            for n, item in enumerate(items)]


QUEUED = ("status", {"status": "queued", "attempt": 0, "position": 1})
DONE = ("done", {})


def run(log, final: Job, *, chat=True, include_usage=False, queued: Job | None = None) -> str:
    return "".join(stream_chunks(log, queued or job(request=final.request), lambda: final,
                                 chat=chat, include_usage=include_usage))


def decoded(text: str) -> list[str]:
    """Return the data of each event as the SDK's decoder sees it."""
    return [sse.data for sse in SSEDecoder().iter_bytes(iter([text.encode()]))]


def head(kind="chat.completion.chunk") -> dict:
    return {"id": "job_01", "object": kind, "created": 1_700_000_000, "model": "smollm2:135m"}


def delta(content=None, finish=None, role=False) -> dict:
    body = {"role": "assistant"} if role else {}
    if content is not None:
        body["content"] = content
    return {**head(), "choices": [{"index": 0, "delta": body, "logprobs": None,
                                   "finish_reason": finish}]}


def test_a_chat_stream_sends_role_text_finish_usage_then_done():
    log = events(QUEUED, None, ("status", {"status": "running", "attempt": 1}),
                 ("token", {"text": "Par"}), ("token", {"text": "is."}), DONE)
    text = run(log, job(JobStatus.SUCCEEDED, result=RESULT), include_usage=True)
    usage_null = {"usage": None}
    assert text == "".join([
        f"data: {json.dumps({**delta('', role=True), **usage_null}, separators=(',', ':'))}\n\n",
        ": ping\n\n",
        f"data: {json.dumps({**delta('Par'), **usage_null}, separators=(',', ':'))}\n\n",
        f"data: {json.dumps({**delta('is.'), **usage_null}, separators=(',', ':'))}\n\n",
        f"data: {json.dumps({**delta(finish='stop'), **usage_null}, separators=(',', ':'))}\n\n",
        "data: " + json.dumps({**head(), "choices": [], "usage": {
            "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
            separators=(",", ":")) + "\n\n",
        "data: [DONE]\n\n"])
    data = decoded(text)
    assert data[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(item)) for item in data[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."
    assert chunks[-1].usage.total_tokens == 10


def test_a_completion_stream_sends_text_chunks_without_usage_by_default():
    log = events(QUEUED, ("token", {"text": "Once"}), DONE)
    data = decoded(run(log, job(JobStatus.SUCCEEDED, result=RESULT), chat=False))
    assert [json.loads(item) for item in data[:-1]] == [
        {**head("text_completion"), "choices": [{"text": "Once", "index": 0, "logprobs": None,
                                                 "finish_reason": None}]},
        {**head("text_completion"), "choices": [{"text": "", "index": 0, "logprobs": None,
                                                 "finish_reason": "stop"}]}]
    # The SDK builds stream chunks without validation; OpenAI's own carry null finish_reasons.
    Completion.model_validate(json.loads(data[-2]))
    assert data[-1] == "[DONE]"


def test_a_restart_before_any_text_changes_nothing():
    log = events(QUEUED, ("restart", {"attempt": 2}), ("token", {"text": "Paris."}), DONE)
    data = decoded(run(log, job(JobStatus.SUCCEEDED, result=RESULT)))
    assert json.loads(data[1])["choices"][0]["delta"] == {"content": "Paris."}
    assert data[-1] == "[DONE]"


def test_a_restart_after_text_ends_the_stream_with_an_error():
    log = events(QUEUED, ("token", {"text": "Lyon"}), ("restart", {"attempt": 2}),
                 ("token", {"text": "Paris."}), DONE)
    data = decoded(run(log, job(JobStatus.SUCCEEDED, result=RESULT)))
    assert len(data) == 3 and "[DONE]" not in data
    error = json.loads(data[-1])["error"]
    assert error["code"] == "stream_restarted" and error["type"] == "server_error"
    assert "job_01" in error["message"] and error["param"] is None


def test_structured_output_is_buffered_into_one_chunk_of_valid_json():
    final = job(JobStatus.SUCCEEDED, request={"format": "json"},
                result={**RESULT, "text": "{\"city\": \"Paris\"}", "json": {"city": "Paris"}})
    log = events(QUEUED, ("token", {"text": "not json"}), ("restart", {"reason": "format_repair"}),
                 ("token", {"text": "{\"city\": \"Paris\"}"}), DONE)
    data = decoded(run(log, final))
    assert [json.loads(item)["choices"][0]["delta"] for item in data[:-1]] == [
        {"role": "assistant", "content": ""}, {"content": "{\"city\": \"Paris\"}"}, {}]


def test_a_job_that_fails_ends_the_stream_with_its_error():
    final = job(JobStatus.FAILED, error={"code": "backend_unavailable", "message": "down"})
    data = decoded(run(events(QUEUED, ("token", {"text": "Pa"}), DONE), final))
    assert json.loads(data[-1]) == {"error": {
        "message": "job job_01 failed: down", "type": "server_error", "param": None,
        "code": "backend_unavailable"}}
