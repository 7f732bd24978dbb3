"""Read MES's one frozen Settings object from MES_* environment variables."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

from mes.errors import ConfigError
from mes.keys import ApiKey, check_name, is_example_key, parse_api_keys

# Parsers raise ValueError with a message for people; from_env collects them all.


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ValueError(f"must be a URL with scheme {' or '.join(schemes)}, got {raw!r}")
        return raw.rstrip("/")
    return parse


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return value
    return parse


def _path(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {raw}")
    return path


def _secret(raw: str) -> str:
    value = raw.strip()
    if len(value) < 16:
        raise ValueError("must be at least 16 characters")
    return value


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _basic_auth(raw: str) -> str:
    """Check Flower's `user:password[,user:password...]`; Flower compares the pairs as given."""
    pairs = [pair.strip() for pair in raw.split(",")]
    for index, pair in enumerate(pairs):
        user, sep, password = pair.partition(":")
        if not sep or not user or len(password) < 8:
            raise ValueError(f"entry {index + 1} must be user:password with a password of at "
                             "least 8 characters")
    return ",".join(pairs)


DEFAULT_RATE_LIMIT = "1200/minute"
UNLIMITED = "unlimited"
_RATE = re.compile(r"^\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?$")


def _rate_limits(raw: str) -> tuple[tuple[str, str], ...]:
    """Parse `default=600/minute;alice=60/minute,5/second;ops=unlimited`: a name, its limits."""
    entries: dict[str, str] = {}
    for entry in (part.strip() for part in raw.split(";")):
        if not entry:
            continue
        name, sep, limits = (piece.strip() for piece in entry.partition("="))
        if not sep:
            raise ValueError(f"{entry!r} must be name=limit, as in default=600/minute")
        check_name(name)
        if name in entries:
            raise ValueError(f"{name} is given twice")
        rates = [rate.strip() for rate in limits.split(",")]
        if rates == [UNLIMITED]:
            entries[name] = UNLIMITED
            continue
        bad = [rate for rate in rates if not _RATE.match(rate)]
        if bad or not rates:
            raise ValueError(f"{name}: {', '.join(bad) or limits!r} is not a rate such as "
                             "60/minute or 10 per second")
        entries[name] = ",".join(rates)
    entries.setdefault("default", DEFAULT_RATE_LIMIT)
    return tuple(entries.items())


@dataclass(frozen=True)
class Settings:
    """Hold every MES setting, parsed and checked."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    ollama_url: str = "http://127.0.0.1:11434"
    models_file: Path = Path("config/models.json")
    api_keys: tuple[ApiKey, ...] = ()
    env: str = "development"
    job_ttl_s: int = 86400
    ollama_connect_timeout_s: float = 5.0
    ollama_read_timeout_s: float = 300.0
    wait_default_s: int = 60
    wait_max_s: int = 300
    task_time_limit_s: int = 1800
    task_soft_time_limit_s: int = 1740
    backend_max_retries: int = 5
    max_body_bytes: int = 1_048_576
    worker_heartbeat_s: int = 10
    lease_ttl_s: int = 30
    max_worker_lost: int = 3
    reaper_interval_s: int = 30
    breaker_threshold: int = 5
    max_loaded_models: int = 0
    batch_max_wait_s: int = 300
    metrics_token: str = field(default="", repr=False)
    log_format: str = "json"
    log_level: str = "info"
    breaker_cooldown_s: float = 10.0
    log_prompts: bool = False
    flower_basic_auth: str = field(default="", repr=False)
    # Per-key request rates: ("default", ...) applies to every non-admin key without its own.
    rate_limits: tuple[tuple[str, str], ...] = (("default", DEFAULT_RATE_LIMIT),)
    max_prompt_chars: int = 200_000
    max_messages: int = 1000
    # Seconds between `: ping` comments on an idle event stream, so proxies keep it open.
    stream_heartbeat_s: float = 15.0
    batch_ttl_s: int = 7 * 86400          # a batch and its jobs are kept this long after it ends
    max_batch_requests: int = 50_000
    max_batch_bytes: int = 200 * 1_048_576
    # What one key's uploaded files (OpenAI's Files API, kept in Redis) may hold at once.
    max_file_bytes_per_key: int = 1024 * 1_048_576
    # Swap-aware scheduling (docs/scheduling.md): on with "auto" when MES_MAX_LOADED_MODELS > 0.
    scheduler: str = "auto"
    sched_quantum_s: float = 20.0
    sched_group_factor: float = 1.0

    @property
    def scheduling_on(self) -> bool:
        """Tell whether jobs are held and released by the swap-aware scheduler."""
        return self.scheduler == "on" or (self.scheduler == "auto" and self.max_loaded_models > 0)

    def rate_limit_for(self, key_name: str, *, admin: bool = False) -> str:
        """Return a key's rate limit, or 'unlimited'.

        A key's own entry wins. Otherwise "default" applies, except to admin keys: they are
        the operators' own (status, benchmarks), limited only when named.
        """
        limits = dict(self.rate_limits)
        if key_name in limits:
            return limits[key_name]
        return UNLIMITED if admin else limits.get("default", DEFAULT_RATE_LIMIT)

    @property
    def visibility_timeout_s(self) -> int:
        """Return the broker visibility timeout: twice the hard limit, so no running task is redelivered."""
        return 2 * self.task_time_limit_s

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        """Build Settings from MES_* variables, reporting every bad value at once."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for name, suffix, parser in _SPEC:
            var = f"MES_{suffix}"
            raw = environ.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parser(raw)
            except ValueError as exc:
                problems.append(f"{var}: {exc}")
        if "models_file" not in values and not cls.models_file.is_file():
            problems.append(f"MES_MODELS_FILE: not set and the default {cls.models_file} "
                            "does not exist here")
        soft = values.get("task_soft_time_limit_s", cls.task_soft_time_limit_s)
        hard = values.get("task_time_limit_s", cls.task_time_limit_s)
        if soft >= hard:
            problems.append(f"MES_TASK_SOFT_TIME_LIMIT_S ({soft}) must be below "
                            f"MES_TASK_TIME_LIMIT_S ({hard})")
        wait_default = values.get("wait_default_s", cls.wait_default_s)
        wait_max = values.get("wait_max_s", cls.wait_max_s)
        if wait_default > wait_max:
            problems.append(f"MES_WAIT_DEFAULT_S ({wait_default}) must not exceed "
                            f"MES_WAIT_MAX_S ({wait_max})")
        if values.get("env") == "production":
            problems.extend(_production_problems(values))
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        """Return a copy with some fields changed (for tests and `mes up`)."""
        return dataclasses.replace(self, **changes)


def _production_problems(values: dict[str, Any]) -> list[str]:
    """List what MES_ENV=production refuses: the README's key, and Flower without a password.

    Having no key at all is checked at start-up against Redis too (mes.keystore.check_keys_exist),
    since keys made with `mes keys create` live there.
    """
    problems = []
    if any(is_example_key(key) for key in values.get("api_keys", ())):
        problems.append("MES_API_KEYS: holds the README's example key; MES_ENV=production "
                        "refuses it (make one with `mes keys create`)")
    if not values.get("flower_basic_auth"):
        problems.append("MES_FLOWER_BASIC_AUTH: required with MES_ENV=production, so that "
                        "Flower is never open (user:password)")
    return problems


_SPEC: list[tuple[str, str, Callable[[str], Any]]] = [
    ("redis_url", "REDIS_URL", _url(("redis", "rediss", "unix"))),
    ("ollama_url", "OLLAMA_URL", _url(("http", "https"))),
    ("models_file", "MODELS_FILE", _path),
    ("api_keys", "API_KEYS", parse_api_keys),
    ("env", "ENV", _choice("development", "production", "test")),
    ("job_ttl_s", "JOB_TTL_S", _int(60, 30 * 86400)),
    ("ollama_connect_timeout_s", "OLLAMA_CONNECT_TIMEOUT_S", _float(0.1, 120)),
    ("ollama_read_timeout_s", "OLLAMA_READ_TIMEOUT_S", _float(1, 3600)),
    ("wait_default_s", "WAIT_DEFAULT_S", _int(0, 3600)),
    ("wait_max_s", "WAIT_MAX_S", _int(1, 3600)),
    ("task_time_limit_s", "TASK_TIME_LIMIT_S", _int(10, 86400)),
    ("task_soft_time_limit_s", "TASK_SOFT_TIME_LIMIT_S", _int(5, 86400)),
    ("backend_max_retries", "BACKEND_MAX_RETRIES", _int(0, 100)),
    ("max_body_bytes", "MAX_BODY_BYTES", _int(1024, 256 * 1_048_576)),
    ("worker_heartbeat_s", "WORKER_HEARTBEAT_S", _int(1, 300)),
    ("lease_ttl_s", "LEASE_TTL_S", _int(2, 3600)),
    ("max_worker_lost", "MAX_WORKER_LOST", _int(1, 100)),
    ("reaper_interval_s", "REAPER_INTERVAL_S", _int(1, 3600)),
    ("breaker_threshold", "BREAKER_THRESHOLD", _int(1, 1000)),
    ("max_loaded_models", "MAX_LOADED_MODELS", _int(0, 1000)),
    ("batch_max_wait_s", "BATCH_MAX_WAIT_S", _int(1, 86400)),
    ("metrics_token", "METRICS_TOKEN", _secret),
    ("log_format", "LOG_FORMAT", _choice("json", "text")),
    ("log_level", "LOG_LEVEL", _choice("debug", "info", "warning", "error")),
    ("breaker_cooldown_s", "BREAKER_COOLDOWN_S", _float(0.1, 3600)),
    ("log_prompts", "LOG_PROMPTS", _bool),
    ("flower_basic_auth", "FLOWER_BASIC_AUTH", _basic_auth),
    ("rate_limits", "RATE_LIMITS", _rate_limits),
    ("max_prompt_chars", "MAX_PROMPT_CHARS", _int(1, 10_000_000)),
    ("max_messages", "MAX_MESSAGES", _int(1, 1000)),
    ("stream_heartbeat_s", "STREAM_HEARTBEAT_S", _float(0.1, 300)),
    ("batch_ttl_s", "BATCH_TTL_S", _int(60, 90 * 86400)),
    ("max_batch_requests", "MAX_BATCH_REQUESTS", _int(1, 1_000_000)),
    ("max_batch_bytes", "MAX_BATCH_BYTES", _int(1024, 4 * 1024 * 1_048_576)),
    ("max_file_bytes_per_key", "MAX_FILE_BYTES_PER_KEY", _int(1024, 64 * 1024 * 1_048_576)),
    ("scheduler", "SCHEDULER", _choice("auto", "on", "off")),
    ("sched_quantum_s", "SCHED_QUANTUM_S", _float(0.1, 86400)),
    ("sched_group_factor", "SCHED_GROUP_FACTOR", _float(0, 1000)),
]
