"""Assemble the core objects that web and workers share, from Settings."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import redis as redis_lib
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from mes.backends.ollama import OllamaClient
from mes.clock import SystemClock
from mes.errors import ConfigError
from mes.registry import ModelRegistry
from mes.settings import Settings
from mes.store.jobs import RedisJobStore


BLOCKING_SOCKET_TIMEOUT_S = 30


def connect_redis(url: str, *, single_connection: bool = False) -> redis_lib.Redis:
    """Open a Redis client that reconnects by itself after a restart.

    `single_connection` pins the client to one connection, for blocking reads that another
    connection must be able to interrupt by client id. Its reads may wait longer than
    redis-py's default socket timeout (5 s), which would otherwise cut a blocked XREAD short.
    """
    return redis_lib.Redis.from_url(
        url, decode_responses=True, health_check_interval=25, socket_keepalive=True,
        single_connection_client=single_connection,
        **({"socket_timeout": BLOCKING_SOCKET_TIMEOUT_S} if single_connection else {}),
        socket_connect_timeout=5,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        retry_on_error=[redis_lib.ConnectionError, redis_lib.TimeoutError])


def backend_name(url: str) -> str:
    """Return the name records are kept under per backend: its host and port."""
    return urlparse(url).netloc


@dataclass(frozen=True)
class Services:
    """Hold one process's Redis, store, registry, backend client and clock."""

    settings: Settings
    redis: redis_lib.Redis
    store: RedisJobStore
    registry: ModelRegistry
    backend: OllamaClient
    clock: SystemClock
    backend_name: str  # breaker and residency records are kept per backend

    @classmethod
    def from_settings(cls, settings: Settings) -> "Services":
        """Build every shared object; nothing connects until first used."""
        redis = connect_redis(settings.redis_url)
        registry = ModelRegistry.from_file(settings.models_file)
        too_long = [f"model {spec.id}: timeout_s {spec.timeout_s} is over "
                    f"MES_TASK_SOFT_TIME_LIMIT_S ({settings.task_soft_time_limit_s})"
                    for spec in registry.models if spec.timeout_s > settings.task_soft_time_limit_s]
        if too_long:
            # Every job of such a model would be refused at submit: say so at start-up.
            raise ConfigError(too_long)
        return cls(
            settings=settings, redis=redis,
            store=RedisJobStore(redis, ttl_s=settings.job_ttl_s, batch_ttl_s=settings.batch_ttl_s),
            registry=registry,
            backend=OllamaClient(settings.ollama_url,
                                 connect_timeout_s=settings.ollama_connect_timeout_s,
                                 read_timeout_s=settings.ollama_read_timeout_s),
            clock=SystemClock(),
            backend_name=backend_name(settings.ollama_url),
        )
