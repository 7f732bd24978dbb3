"""Map every error to the API's one JSON error shape: the only place that does."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from flask_limiter.errors import RateLimitExceeded
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mes.errors import InvalidRequest, MESError, RateLimited, Unauthorized
from web import ratelimit

log = logging.getLogger("mes.web")

_HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 429: "rate_limited"}


def error_response(exc: MESError):
    """Return the JSON response for one of our errors."""
    response = jsonify({"error": exc.to_dict()})
    response.status_code = exc.http_status
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, int(exc.retry_after_s)))
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="mes"'
    return response


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(MESError)
    def handle_mes_error(exc: MESError):
        return error_response(exc)

    @app.errorhandler(ValidationError)
    def handle_validation(exc: ValidationError):
        return error_response(InvalidRequest("the request failed validation",
                                             {"fields": exc.normalized_messages()}))

    @app.errorhandler(RateLimitExceeded)
    def handle_rate_limited(exc: RateLimitExceeded):
        return error_response(RateLimited(f"the key is over its rate of {exc.description}",
                                          {"limit": exc.description},
                                          retry_after_s=ratelimit.retry_after_s()))

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        code = _HTTP_CODES.get(exc.code or 500, "http_error")
        response = jsonify({"error": {"code": code, "message": exc.description or exc.name,
                                      "details": {}}})
        response.status_code = exc.code or 500
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.exception("event=unhandled_error error=%s", exc.__class__.__name__)
        response = jsonify({"error": {"code": "internal_error",
                                      "message": "an unexpected error occurred", "details": {}}})
        response.status_code = 500
        return response
