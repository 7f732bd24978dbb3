"""POST /openai/v1/batches with an Idempotency-Key makes one batch, as POST /v1/jobs makes one job."""

from __future__ import annotations

import openai
import pytest

from mes.store.batches import BatchStore
from tests.web.doors.test_openai_batches_views import chat_line, upload
from tests.web.doors.test_openai_views import sdk


@pytest.fixture
def client(app):
    return sdk(app)


def create(client, file_id: str, key: str | None, **extra):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                 completion_window="24h", extra_headers=headers, **extra)


def test_the_same_key_and_body_give_back_the_first_batch(client, store):
    file_id = upload(client, [chat_line("a"), chat_line("b")]).id
    first = create(client, file_id, "run-7")
    again = create(client, file_id, "run-7")
    assert again.id == first.id and again.request_counts.total == 2
    assert [b.id for b in client.batches.list()] == [first.id]
    assert len(BatchStore(store).job_ids(first.id, 0, 10)) == 2  # its jobs were made once
    other = create(client, file_id, "run-8")
    unkeyed = create(client, file_id, None)
    assert len({first.id, other.id, unkeyed.id}) == 3


def test_the_same_key_with_another_body_is_refused(client):
    file_id = upload(client, [chat_line("a")]).id
    create(client, file_id, "run-7")
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        create(client, file_id, "run-7", metadata={"suite": "another"})
    assert refused.value.status_code == 422
    assert len(client.batches.list().data) == 1


def test_a_key_is_the_owners_own(app, client):
    first = create(client, upload(client, [chat_line("a")]).id, "run-7")
    bob = sdk(app, key="bob-secret-22")
    theirs = create(bob, upload(bob, [chat_line("a")]).id, "run-7")
    assert theirs.id != first.id


def test_a_failed_batch_is_replayed_too_and_a_refused_one_frees_its_key(client):
    bad = upload(client, [{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": "nope:1b", "messages": []}}]).id
    failed = create(client, bad, "run-9")
    assert failed.status == "failed" and create(client, bad, "run-9").id == failed.id
    with pytest.raises(openai.NotFoundError):
        create(client, "file-missing", "run-10")
    made = create(client, upload(client, [chat_line("a")]).id, "run-10")
    assert made.status == "in_progress"
