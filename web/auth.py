"""Authenticate API keys on /v1 and door routes and check scopes.

Every /v1 (and /openai/v1, /ollama) request is authenticated before anything else runs (the rate limiter keys on the
result), so an unknown path under /v1 answers 401 to a caller without a key, never 404.
"""

from __future__ import annotations

import functools

from flask import Flask, current_app, g, request

from mes.errors import Forbidden, Unauthorized
from mes.keys import ApiKey

# Our API and the compatible front doors: every request under them carries a key.
API_PREFIXES = ("/v1/", "/openai/v1/", "/ollama/")


def _presented_secret() -> str:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <key>'")
        return token.strip()
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'")


def _identify() -> ApiKey:
    key = current_app.extensions["mes"].keyring.authenticate(_presented_secret())
    if key is None:
        # The same words for unknown and revoked keys: a caller learns nothing about either.
        raise Unauthorized("the API key is not valid")
    return key


def authenticate() -> None:
    """Find the key of an API request and keep it in g.api_key; 401 if it has none that works."""
    if request.path.startswith(API_PREFIXES):
        g.api_key = _identify()


def init_app(app: Flask) -> None:
    """Authenticate before any other before_request hook (the rate limiter's included)."""
    app.before_request(authenticate)


def current_key() -> ApiKey:
    """Return the key that authenticated this request."""
    return g.api_key


def require(scope: str | tuple[str, ...] | None):
    """Require a key holding the scope (any of several), or any key for None."""
    scopes = (scope,) if isinstance(scope, str) else scope

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = g.get("api_key")
            if key is None:  # a view outside /v1 that asks for a key
                key = g.api_key = _identify()
            if scopes is not None and not any(key.allows(one) for one in scopes):
                wanted = " or ".join(f"'{one}'" for one in scopes)
                raise Forbidden(f"the key lacks the {wanted} scope", {"scopes": list(scopes)})
            return view(*args, **kwargs)
        wrapper.required_scopes = scopes  # read by web/openapi.py
        return wrapper
    return decorate
