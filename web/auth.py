"""Authenticate API keys and check scopes on /v1 routes."""

from __future__ import annotations

import functools

from flask import current_app, g, request

from mes.errors import Forbidden, Unauthorized
from mes.keys import ApiKey


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


def current_key() -> ApiKey:
    """Return the key that authenticated this request."""
    return g.api_key


def require(scope: str | tuple[str, ...] | None):
    """Require a valid key holding the scope (any of several), or any key for None."""
    scopes = (scope,) if isinstance(scope, str) else scope

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = current_app.extensions["mes"].keyring.authenticate(_presented_secret())
            if key is None:
                raise Unauthorized("the API key is not valid")
            if scopes is not None and not any(key.allows(one) for one in scopes):
                wanted = " or ".join(f"'{one}'" for one in scopes)
                raise Forbidden(f"the key lacks the {wanted} scope", {"scopes": list(scopes)})
            g.api_key = key
            return view(*args, **kwargs)
        return wrapper
    return decorate
