"""Keep what swap-aware scheduling knows per backend: grants, loaded models, costs, counts."""

from __future__ import annotations

import json
from typing import Any

from mes.store import names

LOADED_TTL_S = 30  # /api/ps is asked again by beat's sweep well before this runs out


class GrantRecords:
    """Read and write one backend's scheduling records."""

    def __init__(self, redis, backend: str):
        self._redis = redis
        self.backend = backend

    def lock(self, token: str, ttl_ms: int = 5000) -> bool:
        """Take the backend's scheduling lock if free (it expires by itself)."""
        return bool(self._redis.set(names.sched_lock(self.backend), token, nx=True, px=ttl_ms))

    def unlock(self, token: str) -> None:
        """Give the lock back if it is still ours."""
        key = names.sched_lock(self.backend)
        if self._redis.get(key) == token:
            self._redis.delete(key)

    def grants(self) -> dict[str, dict[str, Any]]:
        """Return the granted models: model -> {"since": s, "state": active|draining}."""
        return {model: json.loads(raw)
                for model, raw in self._redis.hgetall(names.grant(self.backend)).items()}

    def set_grants(self, grants: dict[str, dict[str, Any]]) -> None:
        """Replace the grants."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(names.grant(self.backend))
        if grants:
            pipe.hset(names.grant(self.backend),
                      mapping={model: json.dumps(g) for model, g in grants.items()})
        pipe.execute()

    def loaded(self) -> set[str] | None:
        """Return what the backend last said it has loaded (None when not known lately)."""
        raw = self._redis.get(names.backend_loaded(self.backend))
        return None if raw is None else set(json.loads(raw))

    def set_loaded(self, models: set[str]) -> None:
        """Remember what the backend says it has loaded now."""
        self._redis.set(names.backend_loaded(self.backend), json.dumps(sorted(models)),
                        ex=LOADED_TTL_S)

    def costs(self) -> dict[str, dict[str, float]]:
        """Return per model its last measured load time and run time per job (seconds)."""
        found: dict[str, dict[str, float]] = {}
        for field, value in self._redis.hgetall(names.model_costs(self.backend)).items():
            model, _, kind = field.rpartition("|")
            found.setdefault(model, {})[kind] = float(value)
        return found

    def cost_commands(self, model: str, *, load_s: float, run_s: float) -> list[tuple]:
        """Return the commands that record a job's costs, to ride along with its final save."""
        key = names.model_costs(self.backend)
        commands: list[tuple] = [("HSET", key, f"{model}|run", repr(run_s))]
        if load_s > 0.05:  # the job paid a load: remember how long one takes, and count it
            counters = names.sched_counters(self.backend)
            commands += [("HSET", key, f"{model}|load", repr(load_s)),
                         ("HINCRBY", counters, f"loads|{model}", 1),
                         ("HINCRBYFLOAT", counters, f"load_s|{model}", repr(load_s))]
        return commands

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of the backend's scheduling counters."""
        self._redis.hincrby(names.sched_counters(self.backend), name, amount)

    def counters(self) -> dict[str, float]:
        """Return the backend's scheduling counters."""
        return {field: float(value) for field, value in
                self._redis.hgetall(names.sched_counters(self.backend)).items()}
