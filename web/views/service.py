"""Serve liveness and readiness, which need no key."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mes.errors import Unauthorized
from mes.intake.backend_models import availability, backend_model_names
from mes.scheduling.metrics import SchedulingCollector
from mes.store.metrics import RedisCollector
from mes.store.service_metrics import ServiceCollector
from mes.intake.readiness import check_ready
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
    report = check_ready(s.redis, s.backend, s.registry, s.backend_name, s.clock.now())
    return report, 200 if report["ready"] else 503


def metrics_registry(services) -> CollectorRegistry:
    """Build the scrape registry: every figure comes from Redis or live state."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(services.redis, services.registry, services.store,
                                     services.backend))
    registry.register(ServiceCollector(
        services.redis, services.registry, services.backend_name, services.clock.now,
        lambda: availability(services.registry, backend_model_names(services.backend))))
    return registry


@bp.get("/metrics")
def metrics():
    """Serve Prometheus text format; with MES_METRICS_TOKEN set, a bearer token is required."""
    c = ctx()
    token = c.services.settings.metrics_token
    if token:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <MES_METRICS_TOKEN>'")
    if c.metrics is None:
        c.metrics = metrics_registry(c.services)
        if c.scheduler is not None:
            c.metrics.register(SchedulingCollector(c.scheduler, c.services.clock.now))
    return Response(generate_latest(c.metrics), mimetype=CONTENT_TYPE_LATEST)
