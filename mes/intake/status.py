"""Gather the service's state for GET /v1/status: queues, workers, models, backend, counters."""

from __future__ import annotations

from typing import Any

from mes.errors import MESError
from mes.intake.backend_models import availability, backend_model_names, missing_models
from mes.store.batches import BatchStore
from mes.store.health import breaker_state, count_workers, queue_depths
from mes.registry import ModelRegistry
from mes.store.jobs import RedisJobStore


def service_status(*, redis, store: RedisJobStore, registry: ModelRegistry, backend,
                   backend_name: str, now: float) -> dict[str, Any]:
    """Return the /v1/status report; a part that cannot be read says so instead of failing."""
    families = registry.families
    queues = [family.queue for family in families]
    report: dict[str, Any] = {}
    try:
        redis.ping()
        depths = queue_depths(redis, queues)
        workers = count_workers(redis, queues)
        counts = store.model_counts([spec.id for spec in registry.models])
        report["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any Redis failure: report it, keep the rest
        report["redis"] = f"down: {exc.__class__.__name__}"
        depths, workers, counts = {}, {}, {}
    loaded, version, backend_state = _backend(backend)
    loaded_names = None if loaded is None else {m["name"] for m in loaded}
    names = None if loaded is None else backend_model_names(backend)  # down: do not ask twice
    available = availability(registry, names)
    report["backend"] = {"status": backend_state, "version": version}
    report["queues"] = {
        family.queue: {
            "family": family.name,
            "depth": depths[family.queue]["depth"] if depths else None,
            "lanes": depths[family.queue]["lanes"] if depths else None,
            "concurrency": family.concurrency, "workers": workers.get(family.queue),
            "queued": _sum(counts, registry, family.name, 0),
            "running": _sum(counts, registry, family.name, 1),
        } for family in families}
    report["workers"] = {family.name: workers.get(family.queue) for family in families}
    report["models"] = {
        spec.id: {"queue": spec.queue, "max_queue": spec.max_queue,
                  "queued": counts[spec.id][0] if counts else None,
                  "running": counts[spec.id][1] if counts else None,
                  "loaded": None if loaded_names is None else spec.id in loaded_names,
                  "available_on_backend": available[spec.id]}
        for spec in registry.models}
    report["loaded_models"] = loaded
    report["missing_models"] = missing_models(registry, names)
    report["breaker"] = _guard(lambda: breaker_state(redis, backend_name, now))
    report["counters"] = _guard(store.counters)
    report["batches"] = _guard(BatchStore(store).active_summary)
    return report


def _backend(backend) -> tuple[list[dict[str, Any]] | None, str | None, str]:
    """Ask the backend for its version and loaded models; None for what it could not say."""
    try:
        version = backend.version()
        loaded = [{"name": entry.get("name") or entry.get("model"),
                   "size": entry.get("size"), "size_vram": entry.get("size_vram"),
                   "expires_at": entry.get("expires_at")} for entry in backend.ps()]
    except MESError as exc:
        return None, None, f"down: {exc.message}"
    return loaded, version, "ok"


def _sum(counts: dict[str, tuple[int, int]], registry: ModelRegistry, family: str,
         index: int) -> int | None:
    if not counts:
        return None
    return sum(counts[spec.id][index] for spec in registry.models if spec.family.name == family)


def _guard(read) -> Any:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - Redis went away between reads
        return {"error": exc.__class__.__name__}
