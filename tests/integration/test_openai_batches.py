"""OpenAI's Files and Batches API through the real stack, driven by the official openai SDK.

One private stack for the module: gunicorn (gevent), a Celery worker for smollm, beat, Redis
and the simulated engine (5 ms a token, so a 4-token answer is quick and a 64-token one is
not, and a batch of those can be cancelled half done).
"""

from __future__ import annotations

import io
import json

import openai
import pytest
import requests

from mes.bench.processes import wait_until
from tests.support.stack import ALICE, PrivateStack

pytestmark = pytest.mark.integration

MODEL = "smollm2:135m"
KEY = ALICE["Authorization"].split()[1]
ENDED = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with PrivateStack(tmp_path_factory.mktemp("openai-batches"),
                      engine_args=("--token-ms", "5", "--load-ms", "5", "--num-parallel", "4",
                                   "--response-tokens", "64"),
                      settings={"MES_REAPER_INTERVAL_S": "1"}) as stack:
        yield stack.start_all(beat=True)


@pytest.fixture
def client(stack):
    return openai.OpenAI(base_url=stack.web_url + "/openai/v1", api_key=KEY, max_retries=0)


def chat_line(custom_id: str, max_tokens: int) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "max_tokens": max_tokens,
                     "messages": [{"role": "user", "content": f"Question {custom_id}?"}]}}


def upload(client, lines: list) -> str:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                   for line in lines)
    return client.files.create(file=("input.jsonl", io.BytesIO(text.encode())),
                               purpose="batch").id


def create(client, file_id: str, endpoint: str = "/v1/chat/completions"):
    return client.batches.create(input_file_id=file_id, endpoint=endpoint,
                                 completion_window="24h", metadata={"suite": "live"})


def ended(client, batch_id: str, limit_s: float = 30):
    wait_until(lambda: client.batches.retrieve(batch_id).status in ENDED, limit_s,
               f"batch {batch_id} ended")
    return client.batches.retrieve(batch_id)


def jsonl(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_the_sdk_batch_round_trip(stack, client):
    ids = [f"q-{i}" for i in range(24)]
    file_id = upload(client, [chat_line(custom_id, 4) for custom_id in ids])
    assert client.files.retrieve(file_id).purpose == "batch"
    batch = create(client, file_id)
    assert batch.status == "in_progress" and batch.request_counts.total == 24
    done = ended(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.model_dump() == {"total": 24, "completed": 24, "failed": 0}
    assert done.error_file_id is None and done.completed_at >= done.created_at
    lines = jsonl(client, done.output_file_id)
    assert [line["custom_id"] for line in lines] == ids  # every one, in input order
    for line in lines:
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200 and line["error"] is None
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["usage"]["completion_tokens"] <= 4 and body["id"] == line["id"]
    view = client.files.retrieve(done.output_file_id)
    assert view.bytes == len(client.files.content(done.output_file_id).content)
    job = requests.get(f"{stack.web_url}/v1/jobs/{lines[0]['id']}", headers=ALICE, timeout=5)
    assert job.json()["batch_id"] == batch.id and job.json()["custom_id"] == "q-0"
    assert batch.id in [b.id for b in client.batches.list(limit=10)]


def test_an_embeddings_batch(client):
    file_id = upload(client, [{"custom_id": f"e-{i}", "method": "POST", "url": "/v1/embeddings",
                               "body": {"model": MODEL, "input": [f"text {i}"],
                                        "encoding_format": "float"}} for i in range(3)])
    done = ended(client, create(client, file_id, "/v1/embeddings").id)
    assert done.status == "completed", done
    lines = jsonl(client, done.output_file_id)
    assert [line["custom_id"] for line in lines] == ["e-0", "e-1", "e-2"]
    assert all(len(line["response"]["body"]["data"][0]["embedding"]) > 8 for line in lines)


def test_cancel_a_slower_batch_half_done(client):
    ids = [f"slow-{i}" for i in range(30)]  # 64 tokens at 5 ms: 0.3 s each, 2 at a time
    batch = create(client, upload(client, [chat_line(custom_id, 64) for custom_id in ids]))
    wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 2, 20,
               "two requests of the slow batch done")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = ended(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at >= done.created_at
    counts = done.request_counts
    assert counts.completed >= 2 and counts.failed >= 1
    assert counts.completed + counts.failed == counts.total == 30
    answered, unanswered = jsonl(client, done.output_file_id), jsonl(client, done.error_file_id)
    assert len(answered) == counts.completed and len(unanswered) == counts.failed
    assert sorted(line["custom_id"] for line in answered + unanswered) == sorted(ids)
    assert {line["error"]["code"] for line in unanswered} == {"batch_cancelled"}
    assert {line["response"] is None for line in unanswered} == {True}
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_a_bad_input_file_gives_a_failed_batch(stack, client):
    file_id = upload(client, [chat_line("ok", 4), "not json", chat_line("ok", 4),
                              {**chat_line("m", 4), "body": {"model": "nope:1b",
                                                              "messages": []}}])
    batch = create(client, file_id)
    assert batch.status == "failed" and batch.failed_at
    assert [(e.line, e.code, e.param) for e in batch.errors.data] == [
        (2, "invalid_json_line", None), (3, "duplicate_custom_id", "custom_id"),
        (4, "invalid_request", "body.messages")]
    assert client.batches.retrieve(batch.id).status == "failed"
    native = requests.get(f"{stack.web_url}/v1/jobs", params={"batch": batch.id},
                          headers=ALICE, timeout=5).json()
    assert native["jobs"] == []  # nothing was queued
