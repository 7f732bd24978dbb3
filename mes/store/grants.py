"""Keep what swap-aware scheduling knows per backend: grants, loaded models, costs, counts."""

from __future__ import annotations

import json
from typing import Any

from mes.store import names

LOADED_TTL_S = 30  # /api/ps is asked again by beat's sweep well before this runs out
KNOCK_MS = 10_000  # a knock nobody took (its decider died) goes by itself


class GrantRecords:
    """Read and write one backend's scheduling records."""

    def __init__(self, redis, backend: str):
        self._redis = redis
        self.backend = backend
        self._knock_key = names.sched_lock(backend) + ":again"

    def lock(self, token: str, ttl_ms: int = 5000) -> bool:
        """Take the backend's scheduling lock if free (it expires by itself)."""
        return bool(self._redis.set(names.sched_lock(self.backend), token, nx=True, px=ttl_ms))

    def unlock(self, token: str) -> None:
        """Give the lock back if it is still ours."""
        key = names.sched_lock(self.backend)
        if self._redis.get(key) == token:
            self._redis.delete(key)

    def knock(self) -> None:
        """Ask the lock's holder to decide once more: the state changed while it decided."""
        self._redis.set(self._knock_key, "1", px=KNOCK_MS)

    def take_knock(self) -> bool:
        """Tell whether someone knocked since the last call, and forget the knock."""
        return bool(self._redis.delete(self._knock_key))

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
        seen = self._seen()
        return None if seen is None else set(seen)

    def _seen(self) -> dict[str, float] | None:
        # model -> MES's unload count for it when it was seen loaded (an older record: a list)
        raw = self._redis.get(names.backend_loaded(self.backend))
        if raw is None:
            return None
        value = json.loads(raw)
        return {model: None for model in value} if isinstance(value, list) else value

    def set_loaded(self, models: set[str]) -> list[str]:
        """Remember what the backend says it has loaded now; count and return what it dropped.

        A model seen loaded last time and gone now, which MES did not unload meanwhile (its
        unload count has not moved), was unloaded by the backend itself: its keep_alive ran
        out, or it restarted.
        """
        seen = self._seen() or {}
        counters = self.counters()
        unloads = {model: counters.get(f"unloads|{model}", 0.0)
                   + counters.get(f"requested_unloads|{model}", 0.0)
                   for model in set(seen) | models}
        dropped = sorted(model for model, count in seen.items()
                         if model not in models and count is not None
                         and unloads[model] == count)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(names.backend_loaded(self.backend),
                 json.dumps({model: unloads[model] for model in sorted(models)}), ex=LOADED_TTL_S)
        for model in dropped:
            pipe.hincrby(names.sched_counters(self.backend), f"self_unloads|{model}", 1)
        pipe.execute()
        return dropped

    def costs(self) -> dict[str, dict[str, float]]:
        """Return per model its last measured load time and run time per job (seconds)."""
        found: dict[str, dict[str, float]] = {}
        for field, value in self._redis.hgetall(names.model_costs(self.backend)).items():
            model, _, kind = field.rpartition("|")
            found.setdefault(model, {})[kind] = float(value)
        return found

    def cost_commands(self, model: str, timings: dict, *, wall_s: float) -> list[tuple]:
        """Return the commands that record a job's costs, to ride along with its final save.

        The run time is what the backend spent on the job (prompt and generation), not its
        wall time, which also holds waiting for another job's load; without those timings
        (an embedding), the wall time less the load it paid.
        """
        load_s = timings.get("load_ms", 0) / 1000
        run_s = (timings.get("prompt_ms", 0) + timings.get("generate_ms", 0)) / 1000
        if run_s <= 0:
            run_s = max(0.0, wall_s - load_s)
        key = names.model_costs(self.backend)
        commands: list[tuple] = [("HSET", key, f"{model}|run", repr(run_s))]
        if load_s > 0.05:  # the job paid a load: remember how long one takes, and count it
            counters = names.sched_counters(self.backend)
            commands += [("HSET", key, f"{model}|load", repr(load_s)),
                         ("HINCRBY", counters, f"loads|{model}", 1),
                         ("HINCRBYFLOAT", counters, f"load_s|{model}", repr(load_s))]
        return commands

    def requested_unload_commands(self, model: str) -> list[tuple]:
        """Return the command that counts an unload someone asked for, to ride along with its save."""
        return [("HINCRBY", names.sched_counters(self.backend), f"requested_unloads|{model}", 1)]

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of the backend's scheduling counters."""
        self._redis.hincrby(names.sched_counters(self.backend), name, amount)

    def add_seconds(self, name: str, seconds: float) -> None:
        """Add a duration to one of the backend's scheduling counters."""
        self._redis.hincrbyfloat(names.sched_counters(self.backend), name, repr(seconds))

    def counters(self) -> dict[str, float]:
        """Return the backend's scheduling counters."""
        return {field: float(value) for field, value in
                self._redis.hgetall(names.sched_counters(self.backend)).items()}
