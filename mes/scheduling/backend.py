"""Apply swap-aware scheduling to one backend: read its state, decide, release, record.

Runs wherever capacity may have changed: in the web after a job is held, in a worker after
a job ends, and in beat's sweep (which also asks the backend what it has loaded, so a model
the backend unloaded by itself is noticed). One lock per backend keeps two deciders apart.
One that finds the lock taken knocks and leaves: the holder may have read the state before
the change that brought the other one here (the job that just ended), so after letting go
it looks for a knock and, if there is one, decides again. Nothing waits on the lock, and no
change is left for the next sweep.
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
from mes.store.health import count_workers
from mes.store.held import HeldQueues
from mes.store.jobs import RedisJobStore

log = logging.getLogger("mes.scheduler")

ROUNDS = 5  # decisions one run makes at most while others knock


@dataclass(frozen=True)
class Scheduler:
    """Hold what scheduling one backend needs."""

    store: RedisJobStore
    registry: ModelRegistry
    backend: str
    knobs: Knobs
    default_load_s: float = 10.0
    default_run_s: float = 1.0
    clock: Callable[[], float] | None = None  # the time of a second round, after a knock

    def records(self) -> GrantRecords:
        """Return the backend's scheduling records."""
        return GrantRecords(self.store.redis, self.backend)

    def state(self, now: float) -> dict[str, ModelWork]:
        """Read every model's held work, work in flight, loaded state and costs."""
        records = self.records()
        models = [spec.id for spec in self.registry.models]
        lanes = HeldQueues(self.store.redis).lanes(models)
        counts = self.store.model_counts(models)
        queues = sorted({spec.queue for spec in self.registry.models})
        workers = count_workers(self.store.redis, queues, now)
        loaded = records.loaded() or set()
        grants = records.grants()
        costs = records.costs()
        # Models on one backend load in about the same time: until a model's own load is
        # measured, the others' stand in for it.
        known = [cost["load"] for cost in costs.values() if "load" in cost]
        default_load_s = sum(known) / len(known) if known else self.default_load_s
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
                load_s=cost.get("load", default_load_s),
                run_s=cost.get("run", self.default_run_s), pinned=spec.resident,
                servable=workers[spec.queue] > 0, slots=spec.concurrency_limit,
                load_known=bool(known))
        return work

    def run(self, dispatch: Callable[[Job], None], now: float,
            loaded_now: set[str] | None = None) -> Decision | None:
        """Decide and release; None when another decider holds the lock (it was knocked)."""
        records = self.records()
        token = uuid.uuid4().hex
        decision = None
        for _ in range(ROUNDS):
            if not records.lock(token):
                records.knock()
                if not records.lock(token):  # the holder looks for the knock after letting go
                    return decision
            try:
                records.take_knock()  # what we read next is the state any knock so far saw
                if loaded_now is not None:
                    for model in records.set_loaded(loaded_now):
                        log.info("event=schedule backend=%s %s: unloaded by the backend itself",
                                 self.backend, model)
                    loaded_now = None
                decision = self._decide(records, dispatch, now)
            finally:
                records.unlock(token)
            if not records.take_knock():
                return decision
            now = self.clock() if self.clock is not None else now
        return decision

    def _decide(self, records: GrantRecords, dispatch: Callable[[Job], None],
                now: float) -> Decision:
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

    def status(self, now: float) -> dict:
        """Describe the backend's scheduling for /v1/status: grants, loaded models, counts."""
        records = self.records()
        counters = records.counters()

        def per_model(kind: str, shape=int) -> dict:
            return {key.split("|", 1)[1]: shape(value) for key, value in counters.items()
                    if key.startswith(kind + "|")}
        models = [spec.id for spec in self.registry.models]
        held = {m: {"interactive": lanes["interactive"][0], "batch": lanes["batch"][0]}
                for m, lanes in HeldQueues(self.store.redis).lanes(models).items()
                if lanes["interactive"][0] or lanes["batch"][0]}
        return {"enabled": True, "backend": self.backend, "cap": self.knobs.cap,
                "quantum_s": self.knobs.quantum_s,
                "grants": {m: {"state": g["state"], "since_s": round(now - g["since"], 1)}
                           for m, g in records.grants().items()},
                "loaded": sorted(records.loaded() or []), "held": held,
                "loads": per_model("loads"), "load_s": per_model("load_s", lambda v: round(v, 3)),
                "unloads": per_model("unloads"),
                "unload_s": per_model("unload_s", lambda v: round(v, 3)),
                "self_unloads": per_model("self_unloads"),
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
                                 max_batch_wait_s=s.batch_max_wait_s),
                     clock=services.clock.now)
