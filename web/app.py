"""Build the Flask app: `create_app()` for gunicorn, or with objects passed in for tests."""

from __future__ import annotations

import logging
import os
import uuid

from flask import Flask, g, request

from mes.keys import KeyRing
from mes.services import Services, connect_redis
from mes.settings import Settings
from mes.submit import Dispatcher
from mes.waiter import FinalWaiter
from web import errors
from web.context import WebContext
from web.dispatch import CeleryDispatcher
from web.views import jobs, models, service, status


def create_app(settings: Settings | None = None, *, services: Services | None = None,
               dispatcher: Dispatcher | None = None) -> Flask:
    """Create the app; settings come from the environment unless given."""
    settings = settings or (services.settings if services else Settings.from_env(os.environ))
    services = services or Services.from_settings(settings)
    app = Flask("mes")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["mes"] = WebContext(
        services=services,
        keyring=KeyRing(settings.api_keys),
        dispatcher=dispatcher or CeleryDispatcher.from_settings(settings),
        waiter=FinalWaiter(services.store, lambda: connect_redis(settings.redis_url)),
    )
    if not settings.api_keys:
        logging.getLogger("mes.web").warning("event=no_api_keys every /v1 request will get 401")
    errors.init_app(app)

    @app.before_request
    def assign_request_id():
        # Accept the caller's id so one request can be followed across services.
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied[:128] if supplied.isprintable() and supplied else uuid.uuid4().hex

    @app.after_request
    def echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    for module in (jobs, models, service, status):
        app.register_blueprint(module.bp)
    return app
