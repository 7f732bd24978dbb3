"""Map every error to the API's one JSON error shape: the only place that does."""

from __future__ import annotations

import logging

from typing import Callable

from flask import Flask, Response, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mes.errors import InvalidRequest, MESError, RateLimited, Unauthorized
from mes.store.service_metrics import count_refusal
from web import ratelimit
from web.context import ctx
from web.submission import ClientGone

log = logging.getLogger("mes.web")

_HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 429: "rate_limited"}


def error_response(exc: MESError):
    """Return the JSON response for one of our errors."""
    response = jsonify({"error": exc.to_dict()})
    response.status_code = exc.http_status
    return with_error_headers(response, exc)


def with_error_headers(response: Response, exc: MESError) -> Response:
    """Add the headers an error carries in every door's shape: Retry-After, WWW-Authenticate."""
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, int(exc.retry_after_s)))
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="mes"'
    return response


Mapper = Callable[[MESError], Response]
DOORS_KEY = "mes_error_doors"  # app.extensions: path prefix -> the door's mapper


def mapper_for(path: str, doors: dict[str, Mapper]) -> Mapper:
    """Return the mapper of the door a path belongs to (our own shape by default)."""
    for prefix, mapper in doors.items():
        if path.startswith(prefix):
            return mapper
    return error_response


def register_door(app: Flask, prefix: str, mapper: Mapper) -> None:
    """Answer errors of every request under `prefix` in that door's own error shape."""
    app.extensions.setdefault(DOORS_KEY, {})[prefix] = mapper


def init_app(app: Flask) -> None:
    """Register the error handlers; each error becomes a MESError, then the door's shape."""

    def respond(exc: MESError) -> Response:
        if isinstance(exc, RateLimited):
            _count_refusal(exc.code)
        return mapper_for(request.path, app.extensions.get(DOORS_KEY, {}))(exc)

    @app.errorhandler(ClientGone)
    def handle_client_gone(exc: ClientGone):
        # Nobody reads this answer; 499 (nginx's "client closed request") marks it in the log.
        return Response(status=499)

    @app.errorhandler(MESError)
    def handle_mes_error(exc: MESError):
        return respond(exc)

    @app.errorhandler(ValidationError)
    def handle_validation(exc: ValidationError):
        return respond(InvalidRequest("the request failed validation",
                                      {"fields": exc.normalized_messages()}))

    @app.errorhandler(RateLimitExceeded)
    def handle_rate_limited(exc: RateLimitExceeded):
        return respond(RateLimited(f"the key is over its rate of {exc.description}",
                                   {"limit": exc.description},
                                   retry_after_s=ratelimit.retry_after_s()))

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        error = HTTPError(exc.description or exc.name, status=exc.code or 500,
                          code=_HTTP_CODES.get(exc.code or 500, "http_error"))
        response = respond(error)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("event=unhandled_error error=%s", exc.__class__.__name__)
        return respond(MESError("an unexpected error occurred"))


def _count_refusal(code: str) -> None:
    """Count a 429 for mes_requests_refused_total; a Redis hiccup must not change the answer."""
    try:
        count_refusal(ctx().services.redis, code)
    except Exception as exc:  # noqa: BLE001 - the refusal stands either way
        log.warning("event=refusal_not_counted code=%s error=%s", code, exc.__class__.__name__)


class HTTPError(MESError):
    """Carry a routing or protocol error (404, 405, 415...) through the door mappers."""

    def __init__(self, message: str, *, status: int, code: str):
        super().__init__(message)
        self.http_status = status
        self.code = code
