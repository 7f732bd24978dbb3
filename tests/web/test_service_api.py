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
