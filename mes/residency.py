"""Decide which models stay loaded: at most `max_loaded` per backend, least recently used out.

Ollama evicts models by its own rules (and in spite of keep_alive, ollama#10948); MES makes
the policy explicit. Before a job needs a model that is not loaded and the cap is reached,
MES unloads the least recently used model that has no running job. Decisions are taken
under a Redis lock, so two workers never unload the same model or both load over the cap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlparse

from mes.backends.ollama import OllamaClient
from mes.concurrency import slots_in_use
from mes.errors import MESError
from mes.store import RedisJobStore

log = logging.getLogger("mes.residency")

# Per backend: zset model -> when MES last let it be loaded or used, and the decision lock.
RESIDENT_KEY = "mes:resident:{backend}"
LOCK_KEY = "mes:residency:{backend}:lock"
LOADING_GRACE_S = 60


@dataclass(frozen=True)
class Admission:
    """Tell the runner whether the model may be used now, and what was evicted for it."""

    admitted: bool
    evicted: str | None = None
    reason: str = ""


class Residency:
    """Admit models onto a backend under the loaded-models cap."""

    def __init__(self, store: RedisJobStore, backend: OllamaClient, max_loaded: int,
                 lock_timeout_s: float = 30):
        self._store = store
        self._redis = store.redis
        self._backend = backend
        self.max_loaded = max_loaded
        self._lock_timeout_s = lock_timeout_s
        backend_name = urlparse(backend.base_url).netloc
        self._resident = RESIDENT_KEY.format(backend=backend_name)
        self._lock = LOCK_KEY.format(backend=backend_name)

    def admit(self, model_id: str, now: float) -> Admission:
        """Make room for a model if needed; refuse only if every loaded model is busy."""
        if self.max_loaded <= 0:
            return Admission(True)
        with self._redis.lock(self._lock, timeout=self._lock_timeout_s, blocking_timeout=10):
            loaded = self._loaded_now(now)
            if model_id in loaded or len(loaded) < self.max_loaded:
                self._redis.zadd(self._resident, {model_id: now})
                return Admission(True)
            victim = self.pick_victim(loaded - {model_id})
            if victim is None:
                return Admission(False, reason="every loaded model has running jobs")
            try:
                self._backend.unload(victim)
            except MESError as exc:
                return Admission(False, reason=f"could not unload {victim}: {exc.code}")
            self._redis.zrem(self._resident, victim)
            self._redis.zadd(self._resident, {model_id: now})
            log.info("event=model_evicted model=%s for=%s", victim, model_id)
            return Admission(True, evicted=victim)

    def _loaded_now(self, now: float) -> set[str]:
        """Return the backend's loaded models plus those MES just admitted and that are still loading."""
        loaded = self._backend.loaded_models()
        # A model admitted moments ago may still be loading and not yet in /api/ps: count it.
        recent = self._redis.zrangebyscore(self._resident, now - LOADING_GRACE_S, "+inf")
        return loaded | set(recent)

    def pick_victim(self, candidates: set[str]) -> str | None:
        """Return the least recently used candidate that no job is using."""
        last_used = self._store.last_used(sorted(candidates))
        admitted = dict(self._redis.zrange(self._resident, 0, -1, withscores=True))
        for model in sorted(candidates, key=lambda m: max(last_used.get(m, 0.0),
                                                         admitted.get(m, 0.0))):
            # Slots are taken before admission, so a job about to start counts as busy too.
            if slots_in_use(self._redis, model) == 0 and \
                    self._redis.scard(f"mes:running:{model}") == 0:
                return model
        return None
