"""Choose which models a shared backend serves next, so that it loads models as rarely as it can.

The rule, decided each time capacity frees up (a job ends, a job arrives, beat's sweep):

1. **Grants.** At most `cap` models hold a grant on the backend (the loaded-models cap, less
   the pinned models, which always hold one). Only granted models' held jobs are released to
   the workers; everything else waits, held in MES, spending no attempt and no broker message.
2. **Keep a loaded model busy.** A granted model keeps its grant while it has work, so its
   queue drains in one load: A B C A B C becomes A A B B C C.
3. **Quantum.** A grant older than `quantum_s` yields, at the next job boundary, to other
   waiting work that is worth a load: it stops being released and drains (its jobs already
   sent finish), then the slot goes to the next model. Batch work therefore waits at most
   about a quantum per model ahead of it.
4. **Interactive first.** Held interactive work is released before batch work of the same
   model, and an interactive job for a model without a grant takes one at the next job
   boundary: the grant of a model serving only batch work drains at once. So an interactive
   job waits at most for the jobs already running, one swap, and its own run.
5. **Group what is cheap to wait.** A model whose waiting batch work is small against its
   load time (work × run time < `group_factor` × load time) waits to gather more, unless the
   backend would otherwise sit idle, or its oldest job has waited `max_batch_wait_s` (aging:
   nothing starves).

Draining grants still count against the cap, so MES never asks the backend for more models
than it can hold. The rule is a pure function of a constructed state (`decide`), so it is
tested without Redis; mes.scheduling.backend reads the state and applies the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelWork:
    """Say what one model has waiting and in flight, and what a load and a job of it cost."""

    model: str
    interactive: int = 0              # held interactive jobs
    batch: int = 0                    # held batch jobs
    oldest_interactive: float | None = None  # when the oldest held one was created (s)
    oldest_batch: float | None = None
    in_flight: int = 0                # released and not final: in the broker or running
    loaded: bool = False
    load_s: float = 10.0
    run_s: float = 1.0
    pinned: bool = False

    @property
    def held(self) -> int:
        """Return all held jobs."""
        return self.interactive + self.batch


@dataclass(frozen=True)
class Knobs:
    """Hold the rule's settings."""

    cap: int
    quantum_s: float = 30.0
    group_factor: float = 1.0
    max_batch_wait_s: float = 300.0


@dataclass
class Decision:
    """Say what to release and the grants that follow."""

    grants: dict[str, dict[str, Any]]
    release: dict[str, int]
    swaps_avoided: int = 0
    notes: list[str] = field(default_factory=list)


def worth_a_load(work: ModelWork, knobs: Knobs, now: float) -> bool:
    """Tell whether a model's waiting work justifies loading it now."""
    if work.loaded or work.interactive:
        return True
    if work.oldest_batch is not None and now - work.oldest_batch >= knobs.max_batch_wait_s:
        return True  # aging: it has waited long enough
    return work.batch * work.run_s >= knobs.group_factor * work.load_s


def decide(work: dict[str, ModelWork], grants: dict[str, dict[str, Any]], knobs: Knobs,
           now: float) -> Decision:
    """Apply the rule to one backend's state."""
    pinned = {m for m, w in work.items() if w.pinned}
    slots = max(0, knobs.cap - len(pinned))
    notes: list[str] = []
    g = {m: dict(v) for m, v in grants.items() if m in work and m not in pinned}
    for m in list(g):
        w = work[m]
        if g[m]["state"] == "draining" and w.in_flight == 0:
            del g[m]
            notes.append(f"{m}: drained")
        elif g[m]["state"] == "active" and w.held == 0 and w.in_flight == 0:
            del g[m]
            notes.append(f"{m}: done")
    waiting = [m for m, w in work.items() if m not in g and m not in pinned and w.held]

    def active() -> list[str]:
        return sorted((m for m in g if g[m]["state"] == "active"), key=lambda m: g[m]["since"])

    # Interactive work without a grant takes one at the next job boundary.
    for m in sorted((m for m in waiting if work[m].interactive),
                    key=lambda m: work[m].oldest_interactive or now):
        if len(g) < slots or any(g[a]["state"] == "draining" for a in g):
            break  # a slot is free, or one is already being freed
        victims = [a for a in active() if work[a].interactive == 0]
        if victims:
            g[victims[0]]["state"] = "draining"
            notes.append(f"{victims[0]}: drains for interactive work of {m}")
    # A grant past its quantum yields to other waiting work that is worth a load.
    worthy = [m for m in waiting if worth_a_load(work[m], knobs, now)]
    for a in active():
        if len(g) < slots or not worthy:
            break
        if work[a].interactive == 0 and now - g[a]["since"] >= knobs.quantum_s:
            g[a]["state"] = "draining"
            notes.append(f"{a}: quantum over, yields to {worthy[0]}")
            worthy = worthy[1:]
    # Fill free slots: interactive work first, then batch work worth a load, oldest first;
    # with nothing granted at all, any waiting work rather than an idle backend.
    def age(m: str) -> float:
        w = work[m]
        return min(t for t in (w.oldest_interactive, w.oldest_batch) if t is not None)
    order = (sorted((m for m in waiting if work[m].interactive),
                    key=lambda m: work[m].oldest_interactive)
             + sorted((m for m in waiting if not work[m].interactive
                       and worth_a_load(work[m], knobs, now)), key=age))
    if not order and not g and waiting:
        order = sorted(waiting, key=lambda m: -work[m].batch * work[m].run_s)
    for m in order:
        if len(g) >= slots:
            break
        if m not in g:
            g[m] = {"since": now, "state": "active"}
            notes.append(f"{m}: granted")
    release = {m: work[m].held for m in work
               if (m in pinned or g.get(m, {}).get("state") == "active") and work[m].held}
    # FIFO would have served the oldest waiting job first, swapping to its model.
    still_waiting = [age(m) for m in work if m not in release and work[m].held]
    avoided = sum(1 for m in release if still_waiting and age(m) > min(still_waiting))
    return Decision(grants=g, release=release, swaps_avoided=avoided, notes=notes)
