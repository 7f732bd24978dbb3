"""POST /v1/models/{id}/pull, the operation's progress, and the models the backend lacks."""

from __future__ import annotations

import pytest

from mes.store.progress import ProgressStore
from tests.conftest import make_services
from tests.web.conftest import ALICE, OPS, ROOT
from web.app import create_app



@pytest.fixture
def live(settings, redis, store, registry, clock, dispatcher, engine):
    """A client whose backend answers: the engine has every test model but ghost:1b."""
    services = make_services(settings, redis, store, registry, engine.url, clock)
    app = create_app(services=services, dispatcher=dispatcher)
    app.testing = True
    return app.test_client()


def test_pull_needs_the_models_scope_and_queues_an_operation(client, dispatcher, settings):
    assert client.post("/v1/models/ghost:1b/pull", headers=ALICE).status_code == 403
    response = client.post("/v1/models/ghost:1b/pull", headers=OPS)
    assert response.status_code == 202
    body = response.get_json()
    assert body["kind"] == "pull" and body["status"] == "queued" and body["model"] == "ghost:1b"
    assert body["id"].startswith("op_") and response.headers["Location"] == f"/v1/jobs/{body['id']}"
    [sent] = dispatcher.sent
    assert sent.id == body["id"] and sent.queue == "mes.phi"
    # A download takes what it takes: the deadline is the worker's soft time limit.
    assert sent.deadline_at - sent.created_at == settings.task_soft_time_limit_s
    assert client.post("/v1/models/gpt-5/pull", headers=OPS).get_json()["error"]["code"] == \
        "unknown_model"


def test_a_pull_shows_its_progress_and_other_jobs_show_none(client, redis):
    op = client.post("/v1/models/ghost:1b/pull", headers=OPS).get_json()
    assert client.get(f"/v1/jobs/{op['id']}", headers=OPS).get_json()["progress"] is None
    progress = {"status": "pulling 8eeb52dfb3bb", "completed": 40, "total": 100,
                "lines": ["pulling manifest", "pulling 8eeb52dfb3bb"],
                "updated_at": "2025-01-01T00:00:00.000Z"}
    ProgressStore(redis, ttl_s=60).write(op["id"], progress)
    assert client.get(f"/v1/jobs/{op['id']}", headers=OPS).get_json()["progress"] == progress
    job = client.post("/v1/jobs", json={"model": "smollm2:135m", "prompt": "hi"}, headers=ALICE)
    assert job.get_json()["progress"] is None


def test_models_ready_and_status_name_what_the_backend_lacks(live):
    models = {m["id"]: m for m in live.get("/v1/models", headers=ALICE).get_json()["models"]}
    assert {model_id: m["available_on_backend"] for model_id, m in models.items()} == {
        "smollm2:135m": True, "phi3:mini": True, "ghost:1b": False}
    assert live.get("/v1/models/ghost:1b", headers=ALICE).get_json()["available_on_backend"] is False
    ready = live.get("/ready").get_json()
    assert ready["backend"] == "ok" and ready["missing_models"] == ["ghost:1b"]
    status = live.get("/v1/status", headers=ROOT).get_json()
    assert status["missing_models"] == ["ghost:1b"]
    assert status["models"]["ghost:1b"]["available_on_backend"] is False
    metrics = live.get("/metrics").get_data(as_text=True)
    assert 'mes_model_available{model="ghost:1b"} 0.0' in metrics
    assert 'mes_model_available{model="phi3:mini"} 1.0' in metrics


def test_a_backend_that_cannot_be_asked_is_unknown_not_missing(client):
    models = client.get("/v1/models", headers=ALICE).get_json()["models"]
    assert {m["available_on_backend"] for m in models} == {None}
    assert "missing_models" not in client.get("/ready").get_json()  # the backend is down
    assert client.get("/v1/status", headers=ROOT).get_json()["missing_models"] is None
