"""Apply swap-aware scheduling to one backend: read its state, decide, release, record.

Runs wherever capacity may have changed: in the web after a job is held, in a worker after
a job ends, and in beat's sweep (which also asks the backend what it has loaded, so a model
the backend unloaded by itself is noticed). One lock per backend keeps two deciders apart;
one that finds the lock taken skips, since the holder sees the same state.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Callable

from mes.jobs import Job
from mes.registry import ModelRegistry
from mes.scheduling.release import release_all
from mes.scheduling.swap import Decision, Knobs, ModelWork, decide
from mes.store.grants import GrantRecords
from mes.store.held import HeldQueues
from mes.store.jobs import RedisJobStore

log = logging.getLogger("mes.scheduler")


@dataclass(frozen=True)
class Scheduler:
    """Hold what scheduling one backend needs."""

    store: RedisJobStore
    registry: ModelRegistry
    backend: str
    knobs: Knobs
    default_load_s: float = 10.0
    default_run_s: float = 1.0

    def records(self) -> GrantRecords:
        """Return the backend's scheduling records."""
        return GrantRecords(self.store.redis, self.backend)

    def state(self, now: float) -> dict[str, ModelWork]:
        """Read every model's held work, work in flight, loaded state and costs."""
        records = self.records()
        models = [spec.id for spec in self.registry.models]
        lanes = HeldQueues(self.store.redis).lanes(models)
        counts = self.store.model_counts(models)
        loaded = records.loaded() or set()
        grants = records.grants()
        costs = records.costs()
        work = {}
        for spec in self.registry.models:
            (n_i, oldest_i), (n_b, oldest_b) = (lanes[spec.id]["interactive"],
                                                lanes[spec.id]["batch"])
            queued, running = counts[spec.id]
            cost = costs.get(spec.id, {})
            work[spec.id] = ModelWork(
                spec.id, interactive=n_i, batch=n_b, oldest_interactive=oldest_i,
                oldest_batch=oldest_b, in_flight=max(0, queued - n_i - n_b) + running,
                loaded=spec.id in loaded or spec.id in grants,
                load_s=cost.get("load", self.default_load_s),
                run_s=cost.get("run", self.default_run_s), pinned=spec.resident)
        return work

    def run(self, dispatch: Callable[[Job], None], now: float,
            loaded_now: set[str] | None = None) -> Decision | None:
        """Decide and release once; None when another decider holds the lock."""
        records = self.records()
        token = uuid.uuid4().hex
        if not records.lock(token):
            return None
        try:
            if loaded_now is not None:
                records.set_loaded(loaded_now)
            decision = decide(self.state(now), records.grants(), self.knobs, now)
            records.set_grants(decision.grants)
            if decision.swaps_avoided:
                records.count("swaps_avoided", decision.swaps_avoided)
            for note in decision.notes:
                log.info("event=schedule backend=%s %s", self.backend, note)
            if decision.release:
                release_all(store=self.store, registry=self.registry, dispatch=dispatch,
                            allowed=decision.release)
            return decision
        finally:
            records.unlock(token)

    def status(self, now: float) -> dict:
        """Describe the backend's scheduling for /v1/status: grants, loaded models, counts."""
        records = self.records()
        counters = records.counters()
        loads = {key.split("|", 1)[1]: int(value) for key, value in counters.items()
                 if key.startswith("loads|")}
        load_s = {key.split("|", 1)[1]: round(value, 3) for key, value in counters.items()
                  if key.startswith("load_s|")}
        return {"backend": self.backend,
                "grants": {m: {"state": g["state"], "since_s": round(now - g["since"], 1)}
                           for m, g in records.grants().items()},
                "loaded": sorted(records.loaded() or []), "loads": loads, "load_s": load_s,
                "swaps_avoided": int(counters.get("swaps_avoided", 0))}


def scheduler_for(services) -> Scheduler | None:
    """Build the process's scheduler from its Services, or None when scheduling is off."""
    s = services.settings
    if not s.scheduling_on:
        return None
    # With no cap the backend holds every model: "on" alone still groups, one model at a time.
    cap = s.max_loaded_models or 1
    return Scheduler(store=services.store, registry=services.registry,
                     backend=services.backend_name,
                     knobs=Knobs(cap=cap, quantum_s=s.sched_quantum_s,
                                 group_factor=s.sched_group_factor,
                                 max_batch_wait_s=s.batch_max_wait_s))
