"""Decide which models stay loaded: at most `max_loaded` per backend, least recently used out.

Ollama evicts models by its own rules (and in spite of keep_alive, ollama#10948); MES makes
the policy explicit. Before a job needs a model that is not loaded and the cap is reached,
MES unloads the least recently used model that has no running job. Decisions are taken
under a Redis lock per backend, so two workers never unload the same model or both load
over the cap. The backend's /api/ps is asked before the lock is taken, so a slow backend
never holds every other worker's decision up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from mes.backends.ollama import OllamaClient
from mes.errors import MESError
from mes.store.grants import GrantRecords
from mes.store.jobs import RedisJobStore

log = logging.getLogger("mes.residency")

LOADING_GRACE_S = 60


@dataclass(frozen=True)
class Admission:
    """Tell the runner whether the model may be used now, and what was evicted for it."""

    admitted: bool
    evicted: str | None = None
    reason: str = ""


class Residency:
    """Admit models onto a backend under the loaded-models cap."""

    def __init__(self, store: RedisJobStore, backend: OllamaClient, backend_name: str,
                 max_loaded: int, lock_timeout_s: float = 30, lock_wait_s: float = 10,
                 pinned: frozenset[str] = frozenset()):
        self._store = store
        self._backend = backend
        self.max_loaded = max_loaded
        self.pinned = pinned
        self._records = store.residency(backend_name, lock_timeout_s, lock_wait_s)
        self._counts = GrantRecords(store.redis, backend_name)

    def admit(self, model_id: str, now: float) -> Admission:
        """Make room for a model if needed; refuse only if every loaded model is busy.

        Raises the backend's MESError when /api/ps fails, and redis's LockError when the
        decision lock cannot be had: the runner defers the job for both.
        """
        if self.max_loaded <= 0:
            return Admission(True)
        on_backend = self._backend.loaded_models()
        with self._records.lock():
            # A model admitted moments ago may still be loading and not yet in /api/ps.
            loaded = on_backend | self._records.admitted_since(now - LOADING_GRACE_S)
            if model_id in loaded or len(loaded) < self.max_loaded:
                self._records.admit(model_id, now)
                return Admission(True)
            victim = self.pick_victim(loaded - {model_id})
            if victim is None:
                return Admission(False, reason="every loaded model has running jobs")
            # Counted before the call: the scheduler, reading /api/ps meanwhile, must know
            # that MES unloaded it, not the backend by itself.
            self._counts.count(f"unloads|{victim}")
            started = time.perf_counter()
            try:
                self._backend.unload(victim)
            except MESError as exc:
                self._counts.count(f"unloads|{victim}", -1)
                return Admission(False, reason=f"could not unload {victim}: {exc.code}")
            self._counts.add_seconds(f"unload_s|{victim}", time.perf_counter() - started)
            self._records.admit(model_id, now, evicted=victim)
            log.info("event=model_evicted model=%s for=%s", victim, model_id)
            return Admission(True, evicted=victim)

    def _registry_pinned(self, model: str) -> bool:
        return model in self.pinned

    def pick_victim(self, candidates: set[str]) -> str | None:
        """Return the least recently used candidate that no job is using.

        A model admitted moments ago scores as just used, so it is the last candidate
        while its job takes its slot.
        """
        last_used = self._store.last_used(sorted(candidates))
        admitted = self._records.admitted()
        for model in sorted(candidates, key=lambda m: max(last_used.get(m, 0.0),
                                                         admitted.get(m, 0.0))):
            if self._registry_pinned(model):
                continue  # pinned: never evicted, though it counts against the cap
            if not self._records.busy(model):
                return model
        return None
