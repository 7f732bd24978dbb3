"""Drive the whole stack over HTTP: gunicorn -> Redis -> Celery workers -> engine."""

from __future__ import annotations

import json
import time

import pytest
import requests

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Bearer alice-secret-1"}
BOB = {"Authorization": "Bearer bob-secret-22"}
OPS = {"X-API-Key": "ops-secret-333"}


def poll(web, job_id, headers=ALICE, until=("succeeded", "failed", "cancelled", "expired"), limit_s=30):
    deadline = time.monotonic() + limit_s
    while True:
        job = requests.get(f"{web}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["status"] in until or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_post_then_poll_succeeds(web):
    response = requests.post(f"{web}/v1/jobs", json={"model": "smollm2:135m", "prompt": "Capital of France?",
                                                     "metadata": {"benchmark_run": "r-17"}},
                             headers=ALICE, timeout=10)
    assert response.status_code == 202
    job = poll(web, response.json()["id"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["text"].strip() and result["done_reason"] in ("stop", "length")
    assert result["usage"]["completion_tokens"] > 0 and result["usage"]["prompt_tokens"] > 0
    assert set(result["timings"]) == {"queue_ms", "load_ms", "prompt_ms", "generate_ms", "total_ms"}
    assert job["attempts"] == 1 and job["started_at"] and job["finished_at"]
    assert job["metadata"] == {"benchmark_run": "r-17"} and job["error"] is None


def test_deterministic_text_matches_engine(web, engine):
    body = {"model": "smollm2:135m", "prompt": "Same prompt", "options": {"seed": 7, "max_tokens": 8}}
    job = requests.post(f"{web}/v1/inference", json=body, headers=ALICE, timeout=30).json()
    direct = requests.post(f"{engine}/api/generate", json={
        "model": "smollm2:135m", "prompt": "Same prompt", "stream": False,
        "options": {"temperature": 0.2, "seed": 7, "num_predict": 8, "num_ctx": 2048}}, timeout=30).json()
    assert job["result"]["text"] == direct["response"]


def test_inference_answers_200_when_final(web):
    response = requests.post(f"{web}/v1/inference", json={
        "model": "phi3:mini", "messages": [{"role": "user", "content": "Hi"}], "wait_s": 30},
        headers=ALICE, timeout=40)
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded" and response.json()["result"]["text"]


def test_inference_answers_202_when_wait_runs_out(web, engine_faults):
    engine_faults(hang=True)
    response = requests.post(f"{web}/v1/inference", json={"model": "smollm2:135m", "prompt": "slow",
                                                          "wait_s": 1}, headers=ALICE, timeout=30)
    assert response.status_code == 202
    job = response.json()
    assert job["status"] in ("queued", "running")
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    engine_faults(hang=False)
    assert poll(web, job["id"])["status"] == "succeeded"


def test_get_with_wait_returns_when_final(web):
    job_id = requests.post(f"{web}/v1/jobs", json={"model": "smollm2:135m", "prompt": "wait for me"},
                           headers=ALICE, timeout=10).json()["id"]
    job = requests.get(f"{web}/v1/jobs/{job_id}?wait=20", headers=ALICE, timeout=30).json()
    assert job["status"] == "succeeded"


def test_auth_over_http(web):
    job_id = requests.post(f"{web}/v1/jobs", json={"model": "smollm2:135m", "prompt": "mine"},
                           headers=ALICE, timeout=10).json()["id"]
    assert requests.get(f"{web}/v1/jobs/{job_id}", timeout=10).status_code == 401
    assert requests.post(f"{web}/v1/jobs", json={"model": "smollm2:135m", "prompt": "x"},
                         headers=OPS, timeout=10).status_code == 403
    other = requests.get(f"{web}/v1/jobs/{job_id}", headers=BOB, timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"


def test_bad_requests_over_http(web):
    unknown = requests.post(f"{web}/v1/jobs", json={"model": "nope:1b", "prompt": "x"}, headers=ALICE, timeout=10)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_model"
    bad = requests.post(f"{web}/v1/jobs", json={"model": "smollm2:135m", "prompt": 5}, headers=ALICE, timeout=10)
    assert bad.status_code == 400 and "prompt" in bad.json()["error"]["details"]["fields"]


def test_model_missing_on_backend_fails_with_code(web):
    job_id = requests.post(f"{web}/v1/jobs", json={"model": "ghost:1b", "prompt": "boo"},
                           headers=ALICE, timeout=10).json()["id"]
    job = poll(web, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "model_not_found"
    assert "ghost:1b" in job["error"]["message"] and job["result"] is None
    assert job["attempts"] == 1  # not retried: it cannot heal


def test_backend_5xx_is_retried_then_fails_with_reason(web, engine_faults):
    engine_faults(fail_next=5)
    job_id = requests.post(f"{web}/v1/jobs", json={"model": "smollm2:135m", "prompt": "flaky"},
                           headers=ALICE, timeout=10).json()["id"]
    job = poll(web, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "backend_error" and "simulated failure" in job["error"]["message"]
    assert job["attempts"] == 2  # MES_BACKEND_MAX_RETRIES=1


def test_backend_5xx_heals_on_retry(web, engine_faults):
    engine_faults(fail_next=1)
    job_id = requests.post(f"{web}/v1/jobs", json={"model": "phi3:mini", "prompt": "heal"},
                           headers=ALICE, timeout=10).json()["id"]
    job = poll(web, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2


def test_ready_and_models(web):
    ready = requests.get(f"{web}/ready", timeout=10)
    assert ready.status_code == 200, ready.json()
    assert ready.json()["workers"] == {"smollm": 1, "phi": 1}
    models = requests.get(f"{web}/v1/models", headers=ALICE, timeout=10).json()["models"]
    smollm = next(m for m in models if m["id"] == "smollm2:135m")
    assert smollm["loaded"] is True and smollm["last_used_at"]


def engine_model_stats(engine, model):
    return requests.get(f"{engine}/mes-engine/stats", timeout=5).json()["models"][model]


def test_cancel_running_job_closes_the_engine_stream(web, engine, engine_faults):
    engine_faults(hang=True)
    before = engine_model_stats(engine, "phi3:mini")["cancelled"]
    job_id = requests.post(f"{web}/v1/jobs", json={"model": "phi3:mini", "prompt": "never ends"},
                           headers=ALICE, timeout=10).json()["id"]
    assert poll(web, job_id, until=("running",))["status"] == "running"
    response = requests.delete(f"{web}/v1/jobs/{job_id}", headers=ALICE, timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    # The engine counts a request as cancelled when its client hangs up; the hang fault
    # stays on, so only the worker closing the connection can end the request.
    deadline = time.monotonic() + 10
    while engine_model_stats(engine, "phi3:mini")["cancelled"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = engine_model_stats(engine, "phi3:mini")
    assert stats["cancelled"] == before + 1 and stats["active"] == 0
    assert poll(web, job_id)["status"] == "cancelled"
    assert requests.delete(f"{web}/v1/jobs/{job_id}", headers=ALICE, timeout=10).status_code == 409


def test_idempotent_submit_over_http(web):
    body = {"model": "smollm2:135m", "prompt": "exactly once"}
    headers = {**ALICE, "Idempotency-Key": f"it-{time.time()}"}
    first = requests.post(f"{web}/v1/jobs", json=body, headers=headers, timeout=10)
    again = requests.post(f"{web}/v1/jobs", json=body, headers=headers, timeout=10)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    assert requests.post(f"{web}/v1/jobs", json={**body, "prompt": "other"}, headers=headers,
                         timeout=10).status_code == 422


def test_request_id_travels_through_web_worker_and_engine(web, log_dir):
    request_id = f"trace-{time.time_ns()}"
    response = requests.post(f"{web}/v1/inference", headers={**ALICE, "X-Request-ID": request_id},
                             json={"model": "smollm2:135m", "prompt": "follow me"}, timeout=30)
    assert response.headers["X-Request-ID"] == request_id
    assert response.json()["status"] == "succeeded"

    def lines(prefix):
        found = []
        for path in log_dir.glob(f"{prefix}*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if request_id in line:
                    found.append(line)
        return found
    web_lines = [json.loads(line) for line in lines("web") if line.startswith("{")]
    assert any(entry["path"] == "/v1/inference" and entry["request_id"] == request_id for entry in web_lines)
    worker_lines = [json.loads(line) for line in lines("worker-smollm") if line.startswith("{")]
    states = {entry["state"] for entry in worker_lines}
    assert {"running", "succeeded"} <= states
    for entry in worker_lines:
        assert {"request_id", "job_id", "model", "queue", "state"} <= set(entry)
        assert entry["request_id"] == request_id
    assert any("request_id=" + request_id in line for line in lines("engine"))


def test_metrics_count_a_finished_job(web):
    before = requests.get(f"{web}/metrics", timeout=10).text
    requests.post(f"{web}/v1/inference", headers=ALICE, timeout=30,
                  json={"model": "phi3:mini", "prompt": "count me"}).raise_for_status()
    after = requests.get(f"{web}/metrics", timeout=10).text

    def value(text, sample):
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0
    sample = 'mes_jobs_total{model="phi3:mini",status="succeeded"}'
    assert value(after, sample) == value(before, sample) + 1
    assert value(after, 'mes_job_run_seconds_count{model="phi3:mini"}') >= 1
