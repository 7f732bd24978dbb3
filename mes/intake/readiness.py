"""Check whether MES can serve: Redis, the backend, and a live worker for every family."""

from __future__ import annotations

from typing import Any

from mes.errors import MESError
from mes.intake.backend_models import backend_model_names, missing_models
from mes.store.health import breaker_state, count_workers
from mes.registry import ModelRegistry


def check_ready(redis, backend, registry: ModelRegistry, backend_name: str | None = None,
                now: float = 0.0) -> dict[str, Any]:
    """Return the /ready report; `ready` is true only if every part is up.

    `missing_models` lists the registry's models the backend lacks (None if it cannot tell).
    """
    report: dict[str, Any] = {}
    families = registry.families
    try:
        redis.ping()
        report["redis"] = "ok"
        counts = count_workers(redis, [family.queue for family in families])
        report["workers"] = {family.name: counts[family.queue] for family in families}
    except Exception as exc:  # noqa: BLE001 - any Redis failure means not ready
        report["redis"] = f"down: {exc.__class__.__name__}"
        report["workers"] = {family.name: 0 for family in families}
    try:
        report["backend_version"] = backend.version()
        report["backend"] = "ok"
    except MESError as exc:
        report["backend"] = f"down: {exc.message}"
    else:
        # Reported, never a reason to be unready: a model can be pulled while MES serves.
        report["missing_models"] = missing_models(registry, backend_model_names(backend))
    if backend_name is not None and report["redis"] == "ok":
        report["breaker"] = breaker_state(redis, backend_name, now)
        if report["breaker"]["state"] == "open" and report["backend"] == "ok":
            # The backend answers /api/version but jobs keep failing against it.
            report["backend"] = "degraded: circuit breaker open"
    report["ready"] = (report["redis"] == "ok" and report["backend"] == "ok"
                       and all(report["workers"].values()))
    return report
