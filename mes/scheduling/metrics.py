"""Export swap-aware scheduling per backend in Prometheus format.

Metric names (all prefixed mes_):
  scheduler_grant{backend,model,state}      gauge     1 for each model holding the backend
  scheduler_grant_age_seconds{backend,model} gauge    how long it has held it
  backend_model_loaded{backend,model}       gauge     1 if the backend said it has it loaded
  model_loads_total{backend,model}          counter   loads that jobs paid for
  model_load_seconds_total{backend,model}   counter   time spent loading
  model_unloads_total{backend,model}        counter   models MES unloaded to make room
  model_unload_seconds_total{backend,model} counter   time those unloads took
  model_self_unloads_total{backend,model}   counter   models the backend unloaded by itself
  scheduler_held_jobs{backend,model,lane}   gauge     jobs held in MES, waiting for a grant
  swaps_avoided_total{backend}              counter   releases that kept a loaded model busy
                                                      while older work of another waited
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mes.scheduling.backend import Scheduler


class SchedulingCollector:
    """Yield the scheduler's figures at scrape time."""

    def __init__(self, scheduler: Scheduler, now: Callable[[], float]):
        self._scheduler = scheduler
        self._now = now

    def collect(self) -> Iterable:
        """Read the backend's grants, loaded models and counts."""
        status = self._scheduler.status(self._now())
        backend = status["backend"]
        grant = GaugeMetricFamily("mes_scheduler_grant", "Models holding the backend",
                                  labels=["backend", "model", "state"])
        age = GaugeMetricFamily("mes_scheduler_grant_age_seconds", "How long a grant is held",
                                labels=["backend", "model"])
        for model, held in status["grants"].items():
            grant.add_metric([backend, model, held["state"]], 1.0)
            age.add_metric([backend, model], held["since_s"])
        yield grant
        yield age
        loaded = GaugeMetricFamily("mes_backend_model_loaded", "1 if the backend has it loaded",
                                   labels=["backend", "model"])
        for model in status["loaded"]:
            loaded.add_metric([backend, model], 1.0)
        yield loaded
        for name, help_text, key in (
                ("mes_model_loads", "Loads that jobs paid for", "loads"),
                ("mes_model_load_seconds", "Time spent loading models", "load_s"),
                ("mes_model_unloads", "Models MES unloaded to make room", "unloads"),
                ("mes_model_unload_seconds", "Time MES's unloads took", "unload_s"),
                ("mes_model_self_unloads", "Models the backend unloaded by itself",
                 "self_unloads")):
            counter = CounterMetricFamily(name, help_text, labels=["backend", "model"])
            for model, value in status[key].items():
                counter.add_metric([backend, model], float(value))
            yield counter
        held = GaugeMetricFamily("mes_scheduler_held_jobs", "Jobs held in MES for the scheduler",
                                 labels=["backend", "model", "lane"])
        for model, lanes in status["held"].items():
            for lane, count in lanes.items():
                held.add_metric([backend, model, lane], float(count))
        yield held
        avoided = CounterMetricFamily("mes_swaps_avoided", "Releases that avoided a swap",
                                      labels=["backend"])
        avoided.add_metric([backend], float(status["swaps_avoided"]))
        yield avoided
