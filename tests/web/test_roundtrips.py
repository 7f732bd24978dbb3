"""Count the web's Redis round trips per request on the plain path (no Idempotency-Key)."""

from __future__ import annotations

import pytest

from mes.store.jobs import RedisJobStore
from tests.conftest import make_services
from tests.web.conftest import ALICE, RecordingDispatcher
from web.app import create_app

SUBMIT_BUDGET = 2


@pytest.fixture
def counted_client(settings, registry, clock, counting):
    services = make_services(settings, counting, RedisJobStore(counting, ttl_s=3600), registry,
                             "http://127.0.0.1:9", clock)
    app = create_app(services=services, dispatcher=RecordingDispatcher())
    app.testing = True
    return app.test_client()


def test_a_submit_costs_the_web_at_most_two_round_trips(counted_client, counting):
    body = {"model": "smollm2:135m", "prompt": "Hi"}
    assert counted_client.post("/v1/jobs", json=body, headers=ALICE).status_code == 202
    counting.count_from_here()
    assert counted_client.post("/v1/jobs", json=body, headers=ALICE).status_code == 202
    assert len(counting.calls) <= SUBMIT_BUDGET, counting.calls


def test_a_long_poll_of_a_final_job_reads_it_once(counted_client, counting):
    body = {"model": "smollm2:135m", "prompt": "Hi"}
    job = counted_client.post("/v1/jobs", json=body, headers=ALICE).get_json()
    counted_client.delete(f"/v1/jobs/{job['id']}", headers=ALICE)  # final: cancelled
    counting.count_from_here()
    got = counted_client.get(f"/v1/jobs/{job['id']}?wait=5", headers=ALICE)
    assert got.status_code == 200 and got.get_json()["status"] == "cancelled"
    assert counting.calls == ["HMGET"], counting.calls


def test_a_long_poll_that_times_out_reads_the_job_once(counted_client, counting):
    job = counted_client.post("/v1/jobs", json={"model": "smollm2:135m", "prompt": "Hi"},
                              headers=ALICE).get_json()
    counting.count_from_here()
    got = counted_client.get(f"/v1/jobs/{job['id']}?wait=0.2", headers=ALICE)
    assert got.status_code == 200 and got.get_json()["status"] == "queued"
    assert counting.calls.count("HMGET") == 1, counting.calls
