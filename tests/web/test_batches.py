"""Check the native batch API on the Flask app with a fake Redis: all or nothing, limits, cancel."""

from __future__ import annotations

import json

from tests.web.conftest import ALICE, BOB

LINE = {"model": "smollm2:135m", "prompt": "Hi"}


def batch_of(n, **extra):
    return {"requests": [{**LINE, "custom_id": f"c-{i}"} for i in range(n)], **extra}


def test_a_json_batch_is_accepted_whole_with_its_jobs_held(client, dispatcher):
    response = client.post("/v1/batches", json=batch_of(3, metadata={"suite": "s"}),
                           headers=ALICE)
    assert response.status_code == 202, response.get_data(as_text=True)
    batch = response.get_json()
    assert batch["status"] == "queued" and batch["metadata"] == {"suite": "s"}
    assert batch["request_counts"] == {"total": 3, "queued": 3, "running": 0, "succeeded": 0,
                                       "failed": 0, "cancelled": 0, "expired": 0}
    assert batch["models"] == {"smollm2:135m": 3}
    assert response.headers["Location"].endswith(f"/v1/batches/{batch['id']}")
    assert dispatcher.sent == []  # no live worker: held in MES, not sent to the broker
    jobs = client.get(f"/v1/jobs?batch={batch['id']}", headers=ALICE).get_json()["jobs"]
    assert [job["custom_id"] for job in jobs] == ["c-0", "c-1", "c-2"]
    assert {job["batch_id"] for job in jobs} == {batch["id"]}
    assert {job["priority"] for job in jobs} == {"batch"}


def test_an_ndjson_batch_takes_its_fields_from_the_query(client):
    body = "\n".join(json.dumps({**LINE, "custom_id": f"n-{i}"}) for i in range(2)) + "\n"
    response = client.post("/v1/batches?priority=interactive&timeout_s=60", data=body,
                           headers={**ALICE, "Content-Type": "application/x-ndjson"})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["priority"] == "interactive"


def test_one_bad_line_refuses_the_whole_batch(client):
    body = batch_of(3)
    body["requests"][1]["model"] = "nope:1b"
    body["requests"][2].pop("prompt")
    response = client.post("/v1/batches", json=body, headers=ALICE)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request" and error["details"]["invalid"] == 2
    assert [line["line"] for line in error["details"]["lines"]] == [1, 2]
    assert "nope:1b" in error["details"]["lines"][0]["error"]
    assert client.get("/v1/jobs", headers=ALICE).get_json()["jobs"] == []
    assert client.get("/v1/batches", headers=ALICE).get_json()["batches"] == []


def test_duplicate_custom_ids_and_empty_batches_are_refused(client):
    body = batch_of(2)
    body["requests"][1]["custom_id"] = "c-0"
    duplicate = client.post("/v1/batches", json=body, headers=ALICE).get_json()["error"]
    assert "c-0" in duplicate["details"]["lines"][0]["error"]
    empty = client.post("/v1/batches", json={"requests": []}, headers=ALICE)
    assert empty.status_code == 400


def test_limits_on_lines_and_bytes_answer_413(make_app):
    app = make_app(max_batch_requests=2, max_batch_bytes=2048)
    client = app.test_client()
    too_many = client.post("/v1/batches", json=batch_of(3), headers=ALICE)
    assert too_many.status_code == 413
    assert "MES_MAX_BATCH_REQUESTS" in too_many.get_json()["error"]["message"]
    big = {"requests": [{**LINE, "prompt": "x" * 3000, "custom_id": "a"}]}
    too_big = client.post("/v1/batches", json=big, headers=ALICE)
    assert too_big.status_code == 413
    assert too_big.get_json()["error"]["code"] == "payload_too_large"


def test_a_batch_past_a_models_queue_limit_is_429_but_interactive_work_still_fits(
        client, registry):
    limit = registry.get("smollm2:135m").max_queue
    refused = client.post("/v1/batches", json=batch_of(limit + 1), headers=ALICE)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert refused.get_json()["error"]["code"] == "queue_full"
    assert client.post("/v1/batches", json=batch_of(limit), headers=ALICE).status_code == 202
    # The batch lane is full, yet an interactive caller is not locked out.
    assert client.post("/v1/jobs", json=LINE, headers=ALICE).status_code == 202


def test_another_keys_batch_is_404_and_cancel_ends_every_job(client):
    batch = client.post("/v1/batches", json=batch_of(3), headers=ALICE).get_json()
    assert client.get(f"/v1/batches/{batch['id']}", headers=BOB).status_code == 404
    assert client.delete(f"/v1/batches/{batch['id']}", headers=BOB).status_code == 404
    cancelled = client.delete(f"/v1/batches/{batch['id']}", headers=ALICE).get_json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    assert cancelled["request_counts"]["cancelled"] == 3
    assert client.delete(f"/v1/batches/{batch['id']}", headers=ALICE).status_code == 409
    results = client.get(f"/v1/batches/{batch['id']}/results", headers=ALICE)
    lines = [json.loads(line) for line in results.get_data(as_text=True).splitlines()]
    assert [(line["index"], line["custom_id"]) for line in lines] == [
        (0, "c-0"), (1, "c-1"), (2, "c-2")]
    assert {line["job"]["status"] for line in lines} == {"cancelled"}
    resumed = client.get(f"/v1/batches/{batch['id']}/results?cursor=2", headers=ALICE)
    assert [json.loads(line)["custom_id"] for line in
            resumed.get_data(as_text=True).splitlines()] == ["c-2"]


def test_status_and_metrics_count_batches_in_progress(client):
    from tests.web.conftest import ROOT
    batch = client.post("/v1/batches", json=batch_of(4), headers=ALICE).get_json()
    status = client.get("/v1/status", headers=ROOT).get_json()
    assert status["batches"] == {"in_progress": 1, "jobs": {
        "queued": 4, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "expired": 0}}
    assert status["counters"]["batch_jobs_ingested"] == 4
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "mes_batches_in_progress 1.0" in metrics
    assert 'mes_batch_jobs{state="queued"} 4.0' in metrics
    assert "mes_batch_jobs_ingested_total 4.0" in metrics
    client.delete(f"/v1/batches/{batch['id']}", headers=ALICE)
    assert client.get("/v1/status", headers=ROOT).get_json()["batches"]["in_progress"] == 0


def test_a_json_batch_over_the_general_body_limit_is_accepted(client):
    # The app's general limit is 1 MiB (MES_MAX_BODY_BYTES); a batch may be up to 200 MiB.
    body = {"requests": [{**LINE, "prompt": "x" * 2000, "custom_id": f"big-{i}"}
                         for i in range(700)]}
    assert len(json.dumps(body)) > 1_048_576
    response = client.post("/v1/batches", json=body, headers=ALICE)
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    assert response.get_json()["request_counts"]["total"] == 700


def test_a_batchs_window_is_its_jobs_wait_and_is_checked(client):
    made = client.post("/v1/batches", json=batch_of(2, completion_window_s=600, timeout_s=30),
                       headers=ALICE)
    assert made.status_code == 202, made.get_data(as_text=True)
    batch = made.get_json()
    jobs = client.get(f"/v1/jobs?batch={batch['id']}", headers=ALICE).get_json()["jobs"]
    assert {job["deadline_at"] for job in jobs} == {batch["expires_at"]}
    default = client.post("/v1/batches", json=batch_of(1), headers=ALICE).get_json()
    assert default["expires_at"] > batch["expires_at"]  # 24 h
    for bad in (0, "600", 7 * 86400 + 1):
        refused = client.post("/v1/batches", json=batch_of(1, completion_window_s=bad),
                              headers=ALICE)
        assert refused.status_code == 400
        assert "completion_window_s" in refused.get_json()["error"]["details"]["fields"]
    ndjson = client.post("/v1/batches?completion_window_s=0", data=json.dumps(
        {**LINE, "custom_id": "n"}) + "\n", headers={**ALICE, "Content-Type": "application/x-ndjson"})
    assert ndjson.status_code == 400
