"""Check GET /v1/status: admin only, and what it reports about queues, workers and the backend."""

from __future__ import annotations

import fakeredis
import pytest

from mes.worker.breaker import CircuitBreaker
from mes.errors import BackendUnavailable
from mes.worker.heartbeat import WorkerHeartbeat
from mes.intake.status import service_status
from mes.store.jobs import RedisJobStore
from tests.conftest import make_services
from tests.support.stub_server import StubServer
from tests.web.conftest import ALICE, OPS, ROOT
from web.app import create_app

PS = {"models": [{"name": "smollm2:135m", "model": "smollm2:135m", "size": 270_000_000,
                  "size_vram": 270_000_000, "expires_at": "2030-01-01T00:00:00Z"}]}


@pytest.fixture
def ollama():
    """Serve /api/version and /api/ps the way Ollama does."""
    answers = {"/api/version": {"version": "0.5.7"}, "/api/ps": PS}
    with StubServer(lambda request: (200, answers[request["target"]])) as server:
        yield server.url


@pytest.fixture
def live_client(settings, redis, store, registry, clock, dispatcher, ollama):
    services = make_services(settings, redis, store, registry, ollama, clock)
    app = create_app(services=services, dispatcher=dispatcher)
    app.testing = True
    return app.test_client()


def test_status_needs_the_admin_scope(client):
    assert client.get("/v1/status").status_code == 401
    for key in (ALICE, OPS):
        response = client.get("/v1/status", headers=key)
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    assert client.get("/v1/status", headers=ROOT).status_code == 200


def test_status_reports_queues_workers_and_counters(client, redis):
    client.post("/v1/jobs", json={"model": "phi3:mini", "prompt": "a"}, headers=ALICE)
    client.post("/v1/jobs", json={"model": "ghost:1b", "prompt": "b"}, headers=ALICE)
    # Messages waiting in Celery's lists for mes.phi: two interactive, one batch.
    redis.rpush("mes.phi", "m1", "m2")
    redis.rpush("mes.phi:9", "m3")
    WorkerHeartbeat(redis, ["mes.smollm"], "smollm@host1", 10).beat()
    body = client.get("/v1/status", headers=ROOT).get_json()
    assert body["redis"] == "ok"
    assert body["queues"] == {
        "mes.smollm": {"family": "smollm", "depth": 0,
                       "lanes": {"interactive": 0, "batch": 0}, "concurrency": 2,
                       "workers": 1, "queued": 0, "running": 0},
        "mes.phi": {"family": "phi", "depth": 3, "lanes": {"interactive": 2, "batch": 1},
                    "concurrency": 1, "workers": 0, "queued": 2, "running": 0}}
    assert body["workers"] == {"smollm": 1, "phi": 0}
    assert body["models"]["phi3:mini"] == {"queue": "mes.phi", "max_queue": 1000,
                                           "queued": 1, "running": 0, "loaded": None,
                                           "available_on_backend": None}
    assert body["counters"]["jobs_submitted"] == 2
    assert body["breaker"]["state"] == "closed"


def test_status_says_the_backend_is_down_without_failing(client):
    body = client.get("/v1/status", headers=ROOT).get_json()
    assert body["backend"]["status"].startswith("down") and body["backend"]["version"] is None
    assert body["loaded_models"] is None


def test_status_reports_backend_version_and_loaded_models(live_client):
    body = live_client.get("/v1/status", headers=ROOT).get_json()
    assert body["backend"] == {"status": "ok", "version": "0.5.7"}
    assert body["loaded_models"] == [{"name": "smollm2:135m", "size": 270_000_000,
                                      "size_vram": 270_000_000,
                                      "expires_at": "2030-01-01T00:00:00Z"}]
    assert body["models"]["smollm2:135m"]["loaded"] is True
    assert body["models"]["phi3:mini"]["loaded"] is False


def test_status_shows_an_open_breaker(client, services, clock):
    for _ in range(3):
        CircuitBreaker(services.redis, services.backend_name, threshold=3,
                       cooldown_s=5).record(BackendUnavailable("down"), clock.now())
    breaker = client.get("/v1/status", headers=ROOT).get_json()["breaker"]
    assert breaker["state"] == "open" and breaker["failures"] == 3


def test_service_status_survives_redis_being_down(registry, services):
    server = fakeredis.FakeServer()
    server.connected = False
    down = fakeredis.FakeRedis(server=server, decode_responses=True)
    report = service_status(redis=down, store=RedisJobStore(down, ttl_s=60), registry=registry,
                            backend=services.backend,
                            backend_name="ollama",
                            now=0.0)
    assert report["redis"].startswith("down")
    assert report["queues"]["mes.phi"]["depth"] is None
    assert report["workers"] == {"smollm": None, "phi": None}
    assert "error" in report["counters"] and "error" in report["breaker"]
