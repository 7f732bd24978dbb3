"""Limit each API key's request rate with Flask-Limiter, counting in Redis.

One shared bucket per key covers every /v1 route, at the key's rate from MES_RATE_LIMITS
(admin keys only when named there).
Routes outside /v1 (/health, /ready, /metrics, /openapi.json, /docs) carry no key and are
never limited. Breaches surface as RateLimitExceeded, which web/errors.py maps to
`429 rate_limited` with Retry-After.
"""

from __future__ import annotations

import math
import time

from flask import Flask, current_app, g
from flask_limiter import Limit, Limiter

from mes.settings import UNLIMITED, Settings
from mes.store import names

KEY_PREFIX = names.RATE_LIMIT_PREFIX
LIMITER_KEY = "mes_limiter"  # where the app keeps its limiter (app.extensions)


def _key_name() -> str:
    key = g.get("api_key")
    return key.name if key is not None else ""


def _no_key() -> bool:
    return g.get("api_key") is None


def build_limiter(settings: Settings, redis) -> Limiter:
    """Build the limiter on the app's own Redis connection pool, so tests can pass fakeredis."""
    uri = settings.redis_url
    if uri.startswith("unix://"):
        uri = "redis+unix://" + uri.removeprefix("unix://")

    def limit_for_key() -> str:
        # Flask-Limiter resolves the limit before it asks exempt_when: keyless routes
        # (/health, /metrics) must get "no limit" here rather than an AttributeError.
        key = g.get("api_key")
        if key is None:
            return ""
        limit = settings.rate_limit_for(key.name, admin=key.is_admin)
        return "" if limit == UNLIMITED else limit  # no limit string: nothing is counted

    per_key = Limit(limit_for_key, key_function=_key_name, shared=True, scope="api",
                    exempt_when=_no_key)
    return Limiter(_key_name, default_limits=[per_key], storage_uri=uri,
                   storage_options={"connection_pool": redis.connection_pool,
                                    "key_prefix": KEY_PREFIX},
                   strategy="sliding-window-counter",
                   headers_enabled=False,
                   # If Redis cannot count, serve the request rather than fail it.
                   swallow_errors=True)


def init_app(app: Flask, limiter: Limiter) -> None:
    """Attach the limiter; call after web.auth.init_app so that keys are known when it runs."""
    limiter.init_app(app)
    app.extensions[LIMITER_KEY] = limiter


def retry_after_s() -> int:
    """Return the whole seconds until the breached limit lets the key in again (at least 1)."""
    limiter = current_app.extensions.get(LIMITER_KEY)
    limit = limiter.current_limit if limiter is not None else None
    if limit is None:
        return 1
    window_s = limit.limit.get_expiry()
    return max(1, min(window_s, math.ceil(limit.reset_at - time.time())))
