"""Build the Flask app: `create_app()` for gunicorn, or with objects passed in for tests."""

from __future__ import annotations

import gc
import logging
import os
import time
import uuid

from flask import Flask, g, request

from mes.keys import KeyRing
from mes.store.apikeys import RedisKeyStore, check_keys_exist
from mes.logs import configure_logging
from mes.services import Services, connect_redis
from mes.settings import Settings
from mes.intake.submit import Dispatcher
from mes.intake.streams import StreamHub
from mes.scheduling.backend import scheduler_for
from mes.store.events import EventLog
from mes.store.waiter import FinalWaiter
from web import auth, doors, errors, limits, openapi, ratelimit
from web.context import WebContext
from web.dispatch import CeleryDispatcher
from web.views import batches, events, jobs, models, service, status


access_log = logging.getLogger("mes.web.access")


def _reader_log(services: Services, own_redis: bool):
    """Return how the stream hub opens its reader: a connection of its own, pinned by id."""
    if own_redis:
        return lambda: EventLog(connect_redis(services.settings.redis_url, single_connection=True))
    return lambda: EventLog(services.redis)


def create_app(settings: Settings | None = None, *, services: Services | None = None,
               dispatcher: Dispatcher | None = None) -> Flask:
    """Create the app; settings come from the environment unless given."""
    settings = settings or (services.settings if services else Settings.from_env(os.environ))
    if services is None:
        # Built for a real server (gunicorn): own the process's logging.
        configure_logging(settings.log_level, settings.log_format)
    own_redis = services is None  # tests pass their own (fake) Redis in Services
    services = services or Services.from_settings(settings)
    app = Flask("mes")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    keystore = RedisKeyStore(services.redis)
    # MES_ENV=production: no key anywhere means refusing to start, not answering 401 forever.
    check_keys_exist(settings, keystore)
    app.extensions["mes"] = WebContext(
        services=services,
        keyring=KeyRing(settings.api_keys, keystore),
        dispatcher=dispatcher or CeleryDispatcher.from_settings(settings),
        waiter=FinalWaiter(services.store, lambda: connect_redis(settings.redis_url)),
        hub=StreamHub(_reader_log(services, own_redis), control=services.store.events),
        scheduler=scheduler_for(services),
    )
    if not settings.api_keys:
        logging.getLogger("mes.web").warning(
            "event=no_settings_api_keys only keys made with `mes keys create` will work")
    errors.init_app(app)

    @app.before_request
    def assign_request_id():
        # Accept the caller's id so one request can be followed across services.
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied[:128] if supplied.isprintable() and supplied else uuid.uuid4().hex
        g.started = time.perf_counter()

    # Order matters: the request id first, then the key, then its rate, then the body.
    auth.init_app(app)
    ratelimit.init_app(app, ratelimit.build_limiter(settings, services.redis))
    limits.init_app(app)

    @app.after_request
    def echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        job_id = getattr(g, "job_id", None)
        if job_id and "X-MES-Job-ID" not in response.headers:
            response.headers["X-MES-Job-ID"] = job_id
        key = g.get("api_key")
        access_log.info("%s %s %s", request.method, request.path, response.status_code, extra={
            "request_id": g.get("request_id"), "method": request.method, "path": request.path,
            "status": response.status_code, "key": key.name if key else None,
            "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2)})
        return response

    for module in (jobs, events, batches, models, service, status):
        app.register_blueprint(module.bp)
    doors.init_app(app)
    openapi.init_app(app)
    if own_redis:
        # What a web process has built by now lives as long as it does: keep it out of the
        # collector's full passes, which otherwise walk all of it (about 100 ms here) in the
        # middle of whatever request triggers one, a batch ingest's above all.
        gc.freeze()
    return app
