"""Record job metrics in Redis from any process, and expose them in Prometheus format.

Workers run on many hosts, so per-process registries (or prometheus_client's multiprocess
mode, which needs one shared directory) cannot give one scrape the whole picture. Workers
write counters and histogram buckets to Redis hashes in one pipelined round trip per job;
the web's /metrics reads them through a custom collector.

Metric names (all prefixed mes_):
  jobs_total{model,status}                  counter   jobs that ended, by final status
  jobs_submitted_total                      counter   jobs accepted
  job_queue_wait_seconds{model}             histogram created -> started
  job_run_seconds{model}                    histogram started -> finished
  tokens_generated_total{model}             counter   completion tokens
  backend_errors_total{code}                counter   backend failures by error code
  door_jobs_total{door}                     counter   jobs accepted, by the door they came through
  batches_submitted_total                   counter   batches accepted
  batch_jobs_ingested_total                 counter   jobs accepted in batches
  batches_in_progress                       gauge     batches not ended yet
  batch_jobs{state}                         gauge     jobs of batches in progress, by state
  queue_depth{queue,lane}                   gauge     messages waiting in the broker
  jobs_in_state{model,state}                gauge     queued / running jobs per model
  model_loaded{model}                       gauge     1 if the backend has it loaded
  workers{family}                           gauge     live workers per family
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from mes.store import names
from mes.store.batches import BatchStore
from mes.store.health import count_workers, queue_depths

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_PREFIX = names.METRICS_PREFIX


def _bucket_fields(value: float) -> list[str]:
    return [f"le={bound}" for bound in BUCKETS if value <= bound] + ["le=+Inf"]


class MetricsRecorder:
    """Write job figures to Redis; safe to call from any worker process."""

    def __init__(self, redis):
        self._redis = redis

    def job_ran_commands(self, model: str, *, queue_wait_s: float | None,
                         run_s: float | None, tokens: int) -> list[tuple]:
        """Return the commands that observe a run's waits and tokens, to ride along with a save.

        Final states are counted by the store's save script, which every one passes through.
        """
        commands: list[tuple] = []
        for name, value in (("queue_wait", queue_wait_s), ("run", run_s)):
            if value is None:
                continue
            key = f"{_PREFIX}:hist:{name}:{model}"
            commands.extend(("HINCRBY", key, field, 1) for field in _bucket_fields(value))
            commands.append(("HINCRBYFLOAT", key, "sum", repr(float(value))))
        if tokens:
            commands.append(("HINCRBY", f"{_PREFIX}:tokens", model, tokens))
        return commands

    def job_ran(self, model: str, *, queue_wait_s: float | None, run_s: float | None,
                tokens: int) -> None:
        """Observe a run's waits and tokens now, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for command in self.job_ran_commands(model, queue_wait_s=queue_wait_s, run_s=run_s,
                                             tokens=tokens):
            pipe.execute_command(*command)
        pipe.execute()

    def backend_error(self, code: str) -> None:
        """Count a backend failure by code."""
        self._redis.hincrby(f"{_PREFIX}:backend_errors", code, 1)


class RedisCollector:
    """Yield Prometheus metrics from Redis and live state, at scrape time."""

    def __init__(self, redis, registry, store, backend):
        self._redis = redis
        self._registry = registry
        self._store = store
        self._backend = backend

    def collect(self) -> Iterable:
        """Read every metric; a failing backend only hides model_loaded."""
        redis = self._redis
        jobs = CounterMetricFamily("mes_jobs", "Jobs that ended, by final status",
                                   labels=["model", "status"])
        for field, value in redis.hgetall(f"{_PREFIX}:jobs").items():
            model, _, status = field.rpartition("|")
            jobs.add_metric([model, status], float(value))
        yield jobs
        counters = self._store.counters()
        submitted = CounterMetricFamily("mes_jobs_submitted", "Jobs accepted")
        submitted.add_metric([], float(counters.get("jobs_submitted", 0)))
        yield submitted
        for name, doc in (("batches_submitted", "Batches accepted"),
                          ("batch_jobs_ingested", "Jobs accepted in batches")):
            counter = CounterMetricFamily(f"mes_{name}", doc)
            counter.add_metric([], float(counters.get(name, 0)))
            yield counter
        summary = BatchStore(self._store).active_summary()
        in_progress = GaugeMetricFamily("mes_batches_in_progress", "Batches not ended yet")
        in_progress.add_metric([], float(summary["in_progress"]))
        yield in_progress
        batch_jobs = GaugeMetricFamily("mes_batch_jobs", "Jobs of batches in progress, by state",
                                       labels=["state"])
        for state, count in summary["jobs"].items():
            batch_jobs.add_metric([state], float(count))
        yield batch_jobs
        models = [spec.id for spec in self._registry.models]
        for name, doc in (("queue_wait", "Seconds from submission to start"),
                          ("run", "Seconds from start to the end")):
            hist = HistogramMetricFamily(f"mes_job_{name}_seconds", doc, labels=["model"])
            for model in models:
                data = redis.hgetall(f"{_PREFIX}:hist:{name}:{model}")
                if not data:
                    continue
                buckets = [(str(bound), float(data.get(f"le={bound}", 0))) for bound in BUCKETS]
                buckets.append(("+Inf", float(data.get("le=+Inf", 0))))
                hist.add_metric([model], buckets, float(data.get("sum", 0)))
            yield hist
        tokens = CounterMetricFamily("mes_tokens_generated", "Completion tokens", labels=["model"])
        for model, value in redis.hgetall(f"{_PREFIX}:tokens").items():
            tokens.add_metric([model], float(value))
        yield tokens
        doors = CounterMetricFamily("mes_door_jobs", "Jobs accepted, by door", labels=["door"])
        for door, value in redis.hgetall(names.METRICS_DOORS).items():
            doors.add_metric([door], float(value))
        yield doors
        errors = CounterMetricFamily("mes_backend_errors", "Backend failures by code",
                                     labels=["code"])
        for code, value in redis.hgetall(f"{_PREFIX}:backend_errors").items():
            errors.add_metric([code], float(value))
        yield errors
        depth = GaugeMetricFamily("mes_queue_depth", "Messages waiting in the broker",
                                  labels=["queue", "lane"])
        queues = [family.queue for family in self._registry.families]
        for queue, figures in queue_depths(redis, queues).items():
            for lane, count in figures["lanes"].items():
                depth.add_metric([queue, lane], float(count))
        yield depth
        states = GaugeMetricFamily("mes_jobs_in_state", "Queued and running jobs per model",
                                   labels=["model", "state"])
        for model, (queued, running) in self._store.model_counts(models).items():
            states.add_metric([model, "queued"], float(queued))
            states.add_metric([model, "running"], float(running))
        yield states
        workers = GaugeMetricFamily("mes_workers", "Live workers per family", labels=["family"])
        counts = count_workers(redis, queues)
        for family in self._registry.families:
            workers.add_metric([family.name], float(counts[family.queue]))
        yield workers
        try:
            loaded = self._backend.loaded_models()
        except Exception:  # noqa: BLE001 - the scrape must not fail with the backend
            return
        gauge = GaugeMetricFamily("mes_model_loaded", "1 if the backend has the model loaded",
                                  labels=["model"])
        for model in models:
            gauge.add_metric([model], 1.0 if model in loaded else 0.0)
        yield gauge
