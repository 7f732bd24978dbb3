"""Combine the registry, the job store and the backend's loaded list into model states."""

from __future__ import annotations

from typing import Any

from mes.intake.backend_models import has_model
from mes.registry import ModelRegistry
from mes.store.jobs import RedisJobStore


def model_states(registry: ModelRegistry, store: RedisJobStore, loaded: set[str] | None,
                 model_ids: list[str] | None = None,
                 available: set[str] | None = None) -> list[dict[str, Any]]:
    """Return one state dict per model; `loaded` None means the backend could not be asked.

    `available` holds the names the backend has (its /api/tags), None when unknown.
    """
    specs = [registry.get(model_id) for model_id in model_ids] if model_ids else registry.models
    counts = store.model_counts([spec.id for spec in specs])
    last_used = store.last_used([spec.id for spec in specs])
    return [{
        "id": spec.id, "family": spec.family.name, "queue": spec.queue,
        "loaded": None if loaded is None else spec.id in loaded,
        "available_on_backend": None if available is None else has_model(spec.id, available),
        "max_concurrency": spec.concurrency_limit,
        "queued": counts[spec.id][0], "running": counts[spec.id][1],
        "json_mode": spec.json_mode, "keep_alive": spec.keep_alive, "warmup": spec.warmup,
        "last_used_at": last_used.get(spec.id),
    } for spec in specs]
