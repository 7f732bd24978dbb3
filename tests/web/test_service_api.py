from tests.web.conftest import ALICE


def test_health_needs_no_key(client):
    assert client.get("/health").get_json() == {"status": "ok"}


def test_ready_is_503_without_backend_or_workers(client):
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"] == "ok" and body["backend"].startswith("down")
    assert body["workers"] == {"smollm": 0, "phi": 0}


def test_models_lists_registry_with_counts(client):
    client.post("/v1/jobs", json={"model": "phi3:mini", "prompt": "a"}, headers=ALICE)
    response = client.get("/v1/models", headers=ALICE)
    assert response.status_code == 200
    models = {m["id"]: m for m in response.get_json()["models"]}
    assert set(models) == {"smollm2:135m", "phi3:mini", "ghost:1b"}
    phi = models["phi3:mini"]
    assert phi["queue"] == "mes.phi" and phi["queued"] == 1 and phi["running"] == 0
    assert phi["loaded"] is None and phi["json_mode"] == "prompt" and phi["max_concurrency"] == 1


def test_one_model_by_id_with_colon(client):
    response = client.get("/v1/models/smollm2:135m", headers=ALICE)
    assert response.status_code == 200 and response.get_json()["family"] == "smollm"
    assert client.get("/v1/models/nope:1", headers=ALICE).status_code == 400
    assert client.get("/v1/models").status_code == 401


def test_load_and_unload_are_operations_on_the_model_queue(client, dispatcher):
    from tests.web.conftest import OPS
    response = client.post("/v1/models/phi3:mini/load", headers=OPS)
    assert response.status_code == 202
    op = response.get_json()
    assert op["kind"] == "load" and op["status"] == "queued" and op["id"].startswith("op_")
    assert dispatcher.sent[-1].queue == "mes.phi"
    assert client.get(f"/v1/jobs/{op['id']}", headers=OPS).get_json()["kind"] == "load"
    unload = client.post("/v1/models/phi3:mini/unload", headers=OPS)
    assert unload.status_code == 202 and unload.get_json()["kind"] == "unload"
    assert client.post("/v1/models/phi3:mini/load", headers=ALICE).status_code == 403
    assert client.post("/v1/models/nope:1/load", headers=OPS).status_code == 400


def test_metrics_show_job_counters_and_queue_depth(client, store, registry, clock):
    from mes.jobs import JobStatus
    from mes.store.metrics import MetricsRecorder
    job_id = client.post("/v1/jobs", json={"model": "phi3:mini", "prompt": "a"}, headers=ALICE).get_json()["id"]
    job = store.get(job_id)
    job = store.save(job.evolve(status=JobStatus.RUNNING, started_at=clock.now()))
    store.save(job.evolve(status=JobStatus.SUCCEEDED, finished_at=clock.now() + 2))
    MetricsRecorder(store.redis).job_ran("phi3:mini", queue_wait_s=0.3, run_s=2.0, tokens=16)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'mes_jobs_total{model="phi3:mini",status="succeeded"} 1.0' in text
    assert 'mes_job_run_seconds_bucket{le="2.5",model="phi3:mini"} 1.0' in text
    assert 'mes_job_queue_wait_seconds_count{model="phi3:mini"} 1.0' in text
    assert 'mes_tokens_generated_total{model="phi3:mini"} 16.0' in text
    assert 'mes_queue_depth{lane="batch",queue="mes.phi"} 0.0' in text
    assert 'mes_jobs_submitted_total 1.0' in text
    assert "mes_model_loaded" not in text  # the test backend is down: unknown, not 0


def test_metrics_token_is_enforced(services, dispatcher):
    import dataclasses
    from web.app import create_app
    settings = dataclasses.replace(services.settings, metrics_token="t" * 20)
    app = create_app(services=dataclasses.replace(services, settings=settings), dispatcher=dispatcher)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 20}).status_code == 200
