"""Choose which models a shared backend serves next, so that it loads models as rarely as it can.

The rule, decided each time capacity may have freed up (a job arrives, a job ends, a sweep):

1. **Grants.** At most `cap` models hold a grant on the backend (the loaded-models cap, less
   the pinned models, which are always served and count against it). Only granted models'
   held jobs are released to the workers; everything else waits, held in MES, spending no
   attempt and no broker message.
2. **Keep a loaded model busy.** A granted model keeps its grant while it has work, so its
   queue drains in one load: A B C A B C becomes A A B B C C.
3. **Quantum.** Once a grant is older than `quantum_s`, it yields to other waiting work that
   is worth a load: it stops being released and drains (the jobs already sent finish), then
   the slot goes to the next model. Batch work therefore waits at most about one quantum
   (plus a swap) per model ahead of it. A grant that had to load its model is never cut
   before it has lasted twice that model's measured load time, so a slow loader serves at
   least as long as it took to load.
4. **Interactive work goes first, at the next boundary.** Held interactive jobs are released
   before the batch jobs of their model. Interactive work for a model without a grant takes
   the next free slot before any batch work, and once it has waited a quantum (less the time
   the jobs already sent still need) the grant serving batch work yields to it. It does not
   cut in at once: two swaps per interactive job would thrash the backend, while waiting
   lets the swap it needs be the one the batch work needs anyway. So an interactive job
   waits behind at most one quantum of batch work, one swap and the interactive work ahead
   of it; once its model is loaded, that model's batch work is served in the same load.
5. **Group what is cheap to wait.** A model whose waiting batch work is small against its
   load time (work x run time < `group_factor` x load time) waits to gather more, unless the
   backend would otherwise sit idle, or its oldest job has waited `max_batch_wait_s` (aging:
   nothing starves). Batch work worth a load is served oldest first; a model that just
   yielded after its quantum goes behind the others that wait.
6. **Faults.** A model whose family has no live worker holds no grant (its jobs wait for a
   worker, the others get the backend). Work in flight for a model without a grant (a worker
   came back with released jobs, scheduling was just turned on) holds a slot as a draining
   grant until it ends, and grants over the cap drain, newest first: MES never asks the
   backend for more models than it can hold.

Draining grants still count against the cap. The rule is a pure function of a constructed
state (`decide`), so it is tested without Redis; mes.scheduling.backend reads the state and
applies the decision.
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
    servable: bool = True             # its family has a live worker
    slots: int = 1                    # its jobs that may run at once
    load_known: bool = True           # load_s was measured, not a default

    @property
    def held(self) -> int:
        """Return all held jobs."""
        return self.interactive + self.batch


@dataclass(frozen=True)
class Knobs:
    """Hold the rule's settings."""

    cap: int
    quantum_s: float = 20.0
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
    behind: set[str] = set()
    g = {m: dict(v) for m, v in grants.items() if m in work and m not in pinned}
    for m in list(g):
        w = work[m]
        if not w.servable:
            del g[m]
            notes.append(f"{m}: no live worker, grant freed")
        elif g[m]["state"] == "draining" and w.in_flight == 0:
            if g.pop(m).get("why") == "quantum":
                behind.add(m)  # it had its turn: the others waiting go first
            notes.append(f"{m}: drained")
        elif g[m]["state"] == "active" and w.held == 0 and w.in_flight == 0:
            del g[m]
            notes.append(f"{m}: done")
    for m, w in work.items():
        if m not in g and m not in pinned and w.servable and w.in_flight:
            g[m] = {"since": now, "state": "draining"}  # it runs anyway: it holds a slot
            notes.append(f"{m}: work in flight without a grant, drains")

    def active() -> list[str]:
        return sorted((m for m in g if g[m]["state"] == "active"), key=lambda m: g[m]["since"])

    while len(g) > slots and active():
        newest = active()[-1]
        g[newest]["state"] = "draining"
        notes.append(f"{newest}: over the cap, drains")
    waiting = [m for m, w in work.items()
               if m not in g and m not in pinned and w.held and w.servable]
    # A grant past its quantum yields, at the next job boundary, to waiting work worth a load.
    worthy = sorted((m for m in waiting if worth_a_load(work[m], knobs, now)),
                    key=lambda m: first_in_line(work[m]))
    for a in active():
        if len(g) < slots or not worthy:
            break
        why = must_yield(work[a], g[a], work[worthy[0]], knobs, now)
        if why:
            g[a].update(state="draining", why="quantum")
            notes.append(f"{a}: {why}, yields to {worthy[0]}")
            worthy = worthy[1:]
    # Fill free slots: interactive work first, then batch work worth a load, oldest first
    # (a model that just yielded after its quantum last); with nothing granted at all, any
    # waiting work rather than an idle backend.
    order = (sorted((m for m in waiting if work[m].interactive),
                    key=lambda m: (m in behind, work[m].oldest_interactive))
             + sorted((m for m in waiting if not work[m].interactive
                       and worth_a_load(work[m], knobs, now)),
                      key=lambda m: (m in behind, age(work[m]))))
    if not order and not g and waiting:
        order = sorted(waiting, key=lambda m: -work[m].batch * work[m].run_s)
    for m in order:
        if len(g) >= slots:
            break
        # The load it is about to pay, if known: it is not cut short before it served as long.
        paying = not work[m].loaded and work[m].load_known
        g[m] = {"since": now, "state": "active", "load_s": work[m].load_s if paying else 0.0}
        notes.append(f"{m}: granted")
    release = {m: work[m].held for m in work
               if (m in pinned or g.get(m, {}).get("state") == "active") and work[m].held}
    # FIFO would have served the oldest waiting job first, swapping to its model.
    still_waiting = [age(work[m]) for m in work if m not in release and work[m].held]
    avoided = sum(1 for m in release if still_waiting and age(work[m]) > min(still_waiting))
    return Decision(grants=g, release=release, swaps_avoided=avoided, notes=notes)


def must_yield(work: ModelWork, grant: dict[str, Any], first: ModelWork, knobs: Knobs,
               now: float) -> str | None:
    """Tell why an active grant should yield to `first`, the waiting work first in line."""
    held_for = now - grant["since"]
    if work.interactive or held_for < 2 * grant.get("load_s", 0.0):
        return None  # its own interactive work waits, or it has not served as long as it loaded
    if held_for >= knobs.quantum_s:
        return "quantum over"
    # No interactive job waits behind more than a quantum of batch work, counting the jobs
    # already sent, which still run before the swap.
    drain_s = work.in_flight * work.run_s / max(1, work.slots)
    if first.interactive and now - first.oldest_interactive >= knobs.quantum_s - drain_s:
        return "interactive work waited a quantum"
    return None


def first_in_line(work: ModelWork) -> tuple[bool, float]:
    """Order waiting work: interactive work first, by its oldest job; then the oldest."""
    if work.interactive:
        return False, work.oldest_interactive
    return True, age(work)


def age(work: ModelWork) -> float:
    """Return when a model's oldest held job was created (infinity when it holds none)."""
    return min((t for t in (work.oldest_interactive, work.oldest_batch) if t is not None),
               default=float("inf"))
