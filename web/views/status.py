"""Serve GET /v1/status for operators (admin scope)."""

from __future__ import annotations

from flask import Blueprint

from mes.intake.status import service_status
from web.auth import require
from web.context import ctx

bp = Blueprint("status", __name__, url_prefix="/v1")


@bp.get("/status")
@require("admin")
def status():
    """Report queues and depths, workers, loaded models, backend version, breaker and counters."""
    c = ctx()
    s = c.services
    report = service_status(redis=s.redis, store=s.store, registry=s.registry, backend=s.backend,
                            backend_name=s.backend_name, now=s.clock.now())
    report["scheduling"] = (c.scheduler.status(s.clock.now()) if c.scheduler is not None
                            else {"enabled": False})
    return report
