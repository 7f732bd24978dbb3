"""Loaded-model bookkeeping: generation slots, the pending queue, keep_alive expiry, LRU eviction.

Mirrors Ollama's scheduler closely enough for clients to notice the same behaviour:
`num_parallel` generations per model, at most `max_queue` requests waiting (beyond that
`QueueFull`, which the server turns into 503), at most `max_loaded_models` resident
(loading another evicts the least recently used idle one, or waits for one to go idle).
A request whose runner options (`num_ctx`, ...) differ from the loaded model's waits for
the model to go idle, then reloads it; meanwhile no new request gets a slot on the old
runner, so the reload cannot starve. Expiry is lazy: it is applied whenever the
scheduler is consulted.

All counters are changed under one lock so tests can assert on them exactly.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from mes.engine.config import EngineConfig

_POLL_S = 0.05  # waiters wake this often to notice a client that went away
_COUNTERS = ("requests", "completed", "cancelled", "failed", "loads", "unloads", "tokens")


class QueueFull(Exception):
    """Raise when max_queue requests are already waiting."""


class Cancelled(Exception):
    """Raise when the caller's should_stop() turned true while it waited."""


@dataclass(frozen=True)
class Lease:
    """Record one granted request: the model, its keep_alive and the load time it paid."""

    model: str
    keep_alive: float
    load_ns: int
    generation: bool


class _Model:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loaded = False
        self.loading = False
        self.runner: Hashable = None  # what the model was loaded with
        self.reloaders = 0  # waiters that need a different runner
        self.unload_requested = False
        self.active = 0
        self.max_active = 0
        self.waiting = 0
        self.last_used = 0.0
        self.expires = math.inf  # monotonic deadline
        self.counts = dict.fromkeys(_COUNTERS, 0)

    def idle(self) -> bool:
        return self.loaded and not self.loading and self.active == 0 and self.waiting == 0

    def snapshot(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "active": self.active, "max_active": self.max_active,
                "waiting": self.waiting, **self.counts}


class Scheduler:
    """Grant generation slots and track which models are resident."""

    def __init__(
        self,
        config: EngineConfig,
        load: Callable[[str, Any], None],
        unload: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._load = load
        self._unload = unload
        self._clock = clock
        self._cond = threading.Condition()
        self._models: dict[str, _Model] = {}
        self._waiting = 0
        self._requests = 0
        for spec in config.models:  # so stats list every catalogue model, zeros included
            self._model(spec.name)

    def _model(self, name: str) -> _Model:
        state = self._models.get(name)
        if state is None:
            state = self._models[name] = _Model(name)
        return state

    def _slots(self, name: str) -> int:
        spec = self._config.model(name)
        return self._config.slots(spec) if spec else max(1, self._config.num_parallel)

    def note_request(self, name: str) -> None:
        """Count one generate/chat request for NAME (a catalogue model; 400/404s are not counted)."""
        with self._cond:
            self._requests += 1
            self._model(name).counts["requests"] += 1

    def note_outcome(self, name: str, outcome: str) -> None:
        """Count a request for NAME that ended ("failed" or "cancelled") before it got a slot."""
        with self._cond:
            self._model(name).counts[outcome] += 1

    def acquire(self, name: str, keep_alive: float, should_stop: Callable[[], bool], generation: bool = True,
                runner: Hashable = None) -> Lease:
        """Wait until NAME is loaded with RUNNER (loading it if needed) and, for a generation, a slot is free.

        A lease with generation=False (a plain load request) holds no slot and needs no release.
        """
        state = None
        queued = False
        reloading = False
        with self._cond:
            state = self._model(name)
            try:
                while True:
                    self._expire_locked()
                    if should_stop():
                        raise Cancelled()
                    same = state.runner == runner
                    if state.loaded and not same and not reloading:
                        reloading = True
                        state.reloaders += 1
                    if (state.loaded and same and (reloading or state.reloaders == 0)
                            and (not generation or state.active < self._slots(name))):
                        return self._grant_locked(state, keep_alive, generation, 0)
                    if state.loaded and not same and state.active == 0 and not state.loading:
                        self._unload_locked(state)  # a runner option changed: reload, as Ollama does
                    if not state.loaded and not state.loading and self._make_room_locked():
                        state.loading = True
                        state.runner = runner
                        break
                    if not queued:
                        if self._waiting >= self._config.max_queue:
                            raise QueueFull()
                        queued = True
                        self._waiting += 1
                        state.waiting += 1
                    self._cond.wait(_POLL_S)
            finally:
                if queued:
                    self._waiting -= 1
                    state.waiting -= 1
                if reloading:
                    state.reloaders -= 1
                    self._cond.notify_all()
        # Load outside the lock so other models, stats and ps stay responsive meanwhile.
        started = time.perf_counter_ns()
        try:
            self._load(name, runner)
        except BaseException:
            with self._cond:
                state.loading = False
                self._cond.notify_all()
            raise
        load_ns = max(1, time.perf_counter_ns() - started)
        with self._cond:
            state.loading = False
            state.loaded = True
            state.counts["loads"] += 1
            lease = self._grant_locked(state, keep_alive, generation, load_ns)
            self._cond.notify_all()
            return lease

    def _grant_locked(self, state: _Model, keep_alive: float, generation: bool, load_ns: int) -> Lease:
        now = self._clock()
        state.last_used = now
        state.unload_requested = False
        state.expires = now + keep_alive
        if generation:
            state.active += 1
            state.max_active = max(state.max_active, state.active)
        elif keep_alive == 0 and state.active == 0:
            self._unload_locked(state)
        return Lease(state.name, keep_alive, load_ns, generation)

    def release(self, lease: Lease, outcome: str, tokens: int = 0) -> None:
        """Return LEASE's slot; OUTCOME is "completed", "cancelled" or "failed"."""
        if not lease.generation:
            return
        with self._cond:
            state = self._model(lease.model)
            state.active -= 1
            state.counts[outcome] += 1
            state.counts["tokens"] += tokens
            now = self._clock()
            state.last_used = now
            keep_alive = 0.0 if state.unload_requested else lease.keep_alive
            state.expires = now + keep_alive
            if keep_alive == 0 and state.active == 0 and state.loaded:
                self._unload_locked(state)
            self._cond.notify_all()

    def unload(self, name: str) -> None:
        """Unload NAME now, or as soon as its running generations finish."""
        with self._cond:
            state = self._model(name)
            if state.loaded and state.active == 0 and not state.loading:
                self._unload_locked(state)
            elif state.loaded or state.loading:
                state.unload_requested = True
                state.expires = self._clock()
            self._cond.notify_all()

    def _unload_locked(self, state: _Model) -> None:
        state.loaded = False
        state.unload_requested = False
        state.counts["unloads"] += 1
        self._unload(state.name)
        self._cond.notify_all()

    def _make_room_locked(self) -> bool:
        cap = self._config.max_loaded_models
        resident = [m for m in self._models.values() if m.loaded or m.loading]
        if cap <= 0 or len(resident) < cap:
            return True
        idle = [m for m in resident if m.idle()]
        if not idle:
            return False
        self._unload_locked(min(idle, key=lambda m: m.last_used))
        return True

    def _expire_locked(self) -> None:
        now = self._clock()
        for state in self._models.values():
            if state.idle() and state.expires <= now:
                self._unload_locked(state)

    def loaded(self) -> list[tuple[str, float]]:
        """Return (model, expires_at as Unix time or inf) for resident models, longest-lived first."""
        with self._cond:
            self._expire_locked()
            offset = time.time() - self._clock()
            rows = [(m.name, m.expires + offset) for m in self._models.values() if m.loaded]
        return sorted(rows, key=lambda row: -row[1])

    def runner_of(self, name: str) -> Hashable:
        """Return the runner options NAME was last loaded with (None if never)."""
        with self._cond:
            return self._model(name).runner

    def stats(self) -> dict[str, Any]:
        """Return total requests, waiting count, resident models and per-model counters."""
        with self._cond:
            self._expire_locked()
            return {
                "total_requests": self._requests,
                "waiting": self._waiting,
                "loaded_models": sorted(m.name for m in self._models.values() if m.loaded),
                "models": {name: m.snapshot() for name, m in sorted(self._models.items())},
            }

    def reset(self) -> None:
        """Zero counters and unload every idle model (running generations keep their slot)."""
        with self._cond:
            for state in self._models.values():
                if state.loaded and state.active == 0 and not state.loading:
                    self._unload_locked(state)
            self._requests = 0
            for state in self._models.values():
                state.counts = dict.fromkeys(_COUNTERS, 0)
                state.max_active = state.active
