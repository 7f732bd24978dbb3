import pytest

from mes.jobs import JobStatus
from tests.web.conftest import ALICE, BOB, OPS, ROOT


def post_job(client, body=None, headers=ALICE):
    body = body or {"model": "smollm2:135m", "prompt": "Hello"}
    return client.post("/v1/jobs", json=body, headers=headers)


def test_submit_queues_and_dispatches(client, dispatcher, store):
    response = post_job(client, {"model": "smollm2:135m", "prompt": "Hi", "metadata": {"run": "r-1"},
                                 "options": {"temperature": 0.1, "max_tokens": 5}})
    assert response.status_code == 202
    job = response.get_json()
    assert job["status"] == "queued" and job["id"].startswith("job_")
    assert job["queue_position"] == 1 and job["result"] is None and job["error"] is None
    assert job["metadata"] == {"run": "r-1"} and job["attempts"] == 0
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert [sent.id for sent in dispatcher.sent] == [job["id"]]
    assert dispatcher.sent[0].queue == "mes.smollm"
    stored = store.get(job["id"])
    assert stored.owner == "alice" and stored.request["options"]["max_tokens"] == 5
    assert "owner" not in job and "celery" not in str(job).lower()


def test_get_own_job_and_404_for_others(client):
    job_id = post_job(client).get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=ALICE).status_code == 200
    other = client.get(f"/v1/jobs/{job_id}", headers=BOB)
    missing = client.get("/v1/jobs/job_nope", headers=BOB)
    assert other.status_code == missing.status_code == 404
    assert other.get_json()["error"]["code"] == missing.get_json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/jobs/{job_id}", headers=ROOT).status_code == 200


@pytest.mark.parametrize("headers,status,code", [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Basic abc"}, 401, "unauthorized"),
    ({"Authorization": "Bearer wrong-key-000"}, 401, "unauthorized"),
    ({"X-API-Key": "wrong-key-000"}, 401, "unauthorized"),
    (OPS, 403, "forbidden"),
])
def test_auth_failures(client, headers, status, code):
    response = post_job(client, headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]


def test_x_api_key_header_works(client):
    assert post_job(client, headers={"X-API-Key": "alice-secret-1"}).status_code == 202


@pytest.mark.parametrize("body,field", [
    ({"model": "smollm2:135m"}, "prompt"),
    ({"model": "smollm2:135m", "prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "prompt"),
    ({"prompt": "a"}, "model"),
    ({"model": "smollm2:135m", "prompt": "a", "colour": "red"}, "colour"),
    ({"model": "smollm2:135m", "prompt": "a", "options": {"num_ctx": 9000}}, "options"),
    ({"model": "smollm2:135m", "prompt": "a", "options": {"temperature": "hot"}}, "options"),
    ({"model": "smollm2:135m", "prompt": "a", "priority": "urgent"}, "priority"),
    ({"model": "smollm2:135m", "prompt": "a", "timeout_s": "5"}, "timeout_s"),
    ({"model": "smollm2:135m", "prompt": "a", "metadata": {"x": "y" * 5000}}, "metadata"),
    ({"model": "smollm2:135m", "messages": [{"role": "robot", "content": "b"}]}, "messages"),
])
def test_bad_bodies_are_400_with_field_details(client, body, field, dispatcher):
    response = post_job(client, body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request" and field in error["details"]["fields"]
    assert dispatcher.sent == []


def test_runner_option_message_says_why(client):
    response = post_job(client, {"model": "smollm2:135m", "prompt": "a", "options": {"num_ctx": 1}})
    assert "fixed per model" in str(response.get_json()["error"]["details"])


def test_unknown_model_is_400(client):
    response = post_job(client, {"model": "gpt-5", "prompt": "a"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "unknown_model"


def test_invalid_schema_is_400(client):
    response = post_job(client, {"model": "smollm2:135m", "prompt": "a", "format": {"type": "objekt"}})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_schema"


@pytest.mark.parametrize("data,ctype", [("not json", "application/json"), ("{}", "text/plain"),
                                         ("[1,2]", "application/json")])
def test_non_json_or_non_object_body_is_400(client, data, ctype):
    response = client.post("/v1/jobs", data=data, content_type=ctype, headers=ALICE)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_too_large_body_is_413(client):
    response = post_job(client, {"model": "smollm2:135m", "prompt": "x" * 1_100_000})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_timeout_over_the_worker_limit_is_refused(client):
    response = post_job(client, {"model": "smollm2:135m", "prompt": "a", "timeout_s": 86400})
    assert response.status_code == 400


def test_broker_failure_is_503_and_recorded(client, dispatcher, store):
    dispatcher.fail = True
    response = post_job(client)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "backend_unavailable"
    jobs, _ = store.list_owned("alice", limit=5)
    assert jobs[0].status is JobStatus.FAILED


def test_wait_query_is_validated(client):
    job_id = post_job(client).get_json()["id"]
    assert client.get(f"/v1/jobs/{job_id}?wait=61", headers=ALICE).status_code == 400
    assert client.get(f"/v1/jobs/{job_id}?wait=abc", headers=ALICE).status_code == 400
    assert client.get(f"/v1/jobs/{job_id}?wait=0", headers=ALICE).status_code == 200


def test_inference_with_zero_wait_answers_202(client):
    response = client.post("/v1/inference", json={"model": "smollm2:135m", "prompt": "a", "wait_s": 0},
                           headers=ALICE)
    assert response.status_code == 202
    assert response.headers["Location"].startswith("/v1/jobs/job_")
    assert client.post("/v1/inference", json={"model": "smollm2:135m", "prompt": "a", "wait_s": 301},
                       headers=ALICE).status_code == 400


def test_request_id_is_echoed_or_made(client):
    response = post_job(client, headers={**ALICE, "X-Request-ID": "req-123"})
    assert response.headers["X-Request-ID"] == "req-123"
    assert len(post_job(client).headers["X-Request-ID"]) == 32


def test_unknown_route_and_method_are_json(client):
    assert client.get("/v1/nothing", headers=ALICE).get_json()["error"]["code"] == "not_found"
    response = client.put("/v1/jobs", headers=ALICE)
    assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"


def test_list_own_jobs_with_filters_and_cursor(client):
    ids = [post_job(client, {"model": "smollm2:135m", "prompt": f"p{i}"}).get_json()["id"] for i in range(3)]
    post_job(client, {"model": "phi3:mini", "prompt": "other"}, headers=BOB)
    mine = client.get("/v1/jobs?limit=10", headers=ALICE).get_json()
    assert {job["id"] for job in mine["jobs"]} == set(ids) and mine["next_cursor"] is None
    assert client.get("/v1/jobs?model=phi3:mini", headers=ALICE).get_json()["jobs"] == []
    assert len(client.get("/v1/jobs?limit=10", headers=ROOT).get_json()["jobs"]) == 4
    assert client.get("/v1/jobs?status=bogus", headers=ALICE).status_code == 400
    assert client.get("/v1/jobs?limit=0", headers=ALICE).status_code == 400


def test_idempotency_key_replays_first_job(client, dispatcher):
    body = {"model": "smollm2:135m", "prompt": "once"}
    headers = {**ALICE, "Idempotency-Key": "k-1"}
    first = client.post("/v1/jobs", json=body, headers=headers)
    again = client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(dispatcher.sent) == 1
    different = client.post("/v1/jobs", json={**body, "prompt": "twice"}, headers=headers)
    assert different.status_code == 422
    assert different.get_json()["error"]["code"] == "idempotency_mismatch"
    # Keys belong to their owner: Bob's same key is a new job.
    bob = client.post("/v1/jobs", json=body, headers={**BOB, "Idempotency-Key": "k-1"})
    assert bob.status_code == 202 and bob.get_json()["id"] != first.get_json()["id"]
    jobs = client.get("/v1/jobs", headers=ALICE).get_json()["jobs"]
    assert [job["id"] for job in jobs] == [first.get_json()["id"]]


def test_cancel_queued_job_then_409(client, store):
    job_id = post_job(client).get_json()["id"]
    assert client.delete(f"/v1/jobs/{job_id}", headers=BOB).status_code == 404
    response = client.delete(f"/v1/jobs/{job_id}", headers=ALICE)
    assert response.status_code == 200
    job = response.get_json()
    assert job["status"] == "cancelled" and job["error"]["code"] == "cancelled"
    assert job["queue_position"] is None and job["finished_at"]
    again = client.delete(f"/v1/jobs/{job_id}", headers=ALICE)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    assert not store.cancel_requested(job_id)  # a queued job needs no stop flag


def test_queue_full_answers_429_with_retry_after(app, client, store, registry):
    import dataclasses
    from mes.registry import ModelRegistry
    small = ModelRegistry([dataclasses.replace(spec, max_queue=2) if spec.id == "phi3:mini" else spec
                           for spec in registry.models])
    app.extensions["mes"].services = dataclasses.replace(app.extensions["mes"].services, registry=small)
    for _ in range(2):
        assert post_job(client, {"model": "phi3:mini", "prompt": "a"}).status_code == 202
    full = post_job(client, {"model": "phi3:mini", "prompt": "a"})
    assert full.status_code == 429 and full.get_json()["error"]["code"] == "queue_full"
    assert full.headers["Retry-After"] == "5"  # no completions observed yet
    for ts in (100.0, 102.0, 104.0):  # one completion every 2 s
        store.mark_used("phi3:mini", ts)
    again = post_job(client, {"model": "phi3:mini", "prompt": "a"})
    assert again.status_code == 429 and again.headers["Retry-After"] == "2"
    assert post_job(client, {"model": "smollm2:135m", "prompt": "a"}).status_code == 202
