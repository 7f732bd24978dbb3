"""Serve liveness and readiness, which need no key."""

from __future__ import annotations

from flask import Blueprint

from mes.readiness import check_ready
from web.context import ctx

bp = Blueprint("service", __name__)


@bp.get("/health")
def health():
    """Say the process is alive; nothing else is checked."""
    return {"status": "ok"}


@bp.get("/ready")
def ready():
    """Check Redis, the backend and a live worker per family: 200 or 503."""
    s = ctx().services
    report = check_ready(s.redis, s.backend, s.registry, s.breaker, s.clock.now())
    return report, 200 if report["ready"] else 503
