"""Expose what an operator's dashboard and alerts need beyond the job figures.

Metric names (all prefixed mes_), read at scrape time:
  breaker_open{backend}                     gauge     1 while the backend's circuit breaker is open
  breaker_failures{backend}                 gauge     backend failures in a row
  queue_limit{model}                        gauge     the model's max_queue, for "queue nearly full"
  model_available{model}                    gauge     1 if the backend has the model (/api/tags);
                                                      absent when the backend does not answer
  requests_refused_total{code}              counter   answers 429, by code (rate_limited, queue_full)
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mes.store import names
from mes.store.health import breaker_state

REFUSED = f"{names.METRICS_PREFIX}:refused"  # error code -> requests refused with 429


def count_refusal(redis, code: str) -> None:
    """Count one request refused with 429, by its error code."""
    redis.hincrby(REFUSED, code, 1)


class ServiceCollector:
    """Yield the breaker, queue limits, models on the backend and refusals, at scrape time."""

    def __init__(self, redis, registry, backend_name: str, now: Callable[[], float],
                 models_on_backend: Callable[[], dict[str, bool | None]]):
        self._redis = redis
        self._registry = registry
        self._backend_name = backend_name
        self._now = now
        # Each model's presence on the backend, None for all when the backend cannot be asked
        # (mes.intake.backend_models.availability, passed in: the store sits below the intake).
        self._models_on_backend = models_on_backend

    def collect(self) -> Iterable:
        """Read every metric; a failing backend only hides model_available."""
        breaker = breaker_state(self._redis, self._backend_name, self._now())
        is_open = GaugeMetricFamily("mes_breaker_open", "1 while the backend's circuit breaker "
                                    "is open", labels=["backend"])
        is_open.add_metric([self._backend_name], 1.0 if breaker["state"] == "open" else 0.0)
        yield is_open
        failures = GaugeMetricFamily("mes_breaker_failures", "Backend failures in a row",
                                     labels=["backend"])
        failures.add_metric([self._backend_name], float(breaker["failures"]))
        yield failures
        limits = GaugeMetricFamily("mes_queue_limit", "The model's max_queue", labels=["model"])
        for spec in self._registry.models:
            limits.add_metric([spec.id], float(spec.max_queue))
        yield limits
        refused = CounterMetricFamily("mes_requests_refused", "Requests answered 429, by code",
                                      labels=["code"])
        for code, value in self._redis.hgetall(REFUSED).items():
            refused.add_metric([code], float(value))
        yield refused
        presence = self._models_on_backend()
        if None in presence.values():
            return
        gauge = GaugeMetricFamily("mes_model_available", "1 if the backend has the model",
                                  labels=["model"])
        for model, present in presence.items():
            gauge.add_metric([model], 1.0 if present else 0.0)
        yield gauge
