"""The operator's metrics: breaker, queue limits, models on the backend and 429 refusals."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mes.worker.breaker import CircuitBreaker
from mes.errors import BackendUnavailable
from tests.web.conftest import ALICE


def samples(client) -> dict[tuple[str, tuple], float]:
    """Scrape /metrics into {(sample name, sorted labels): value}."""
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_breaker_and_queue_limits_are_exported(client, redis, clock):
    found = samples(client)
    assert found[("mes_breaker_open", (("backend", "ollama"),))] == 0
    assert found[("mes_queue_limit", (("model", "ghost:1b"),))] == 1000
    # The backend is down in this fixture: availability is unknown, so it is left out.
    assert not any(name == "mes_model_available" for name, _ in found)
    breaker = CircuitBreaker(redis, "ollama", threshold=2, cooldown_s=60)
    for _ in range(2):
        breaker.record(BackendUnavailable("down"), clock.now())
    found = samples(client)
    assert found[("mes_breaker_open", (("backend", "ollama"),))] == 1
    assert found[("mes_breaker_failures", (("backend", "ollama"),))] == 2


def test_refusals_are_counted_by_code(make_app):
    client = make_app(rate_limits=(("default", "1/minute"),)).test_client()
    assert client.get("/v1/models", headers=ALICE).status_code == 200
    assert client.get("/v1/models", headers=ALICE).status_code == 429
    assert client.get("/v1/models", headers=ALICE).status_code == 429
    assert samples(client)[("mes_requests_refused_total", (("code", "rate_limited"),))] == 2
