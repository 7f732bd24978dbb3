"""Hand held jobs to a family's queue as its workers free up: the order is decided late.

A batch's jobs are not sent to Celery when the batch is accepted. They wait, held per model,
in Redis; a release, run when a batch arrives, when a batch job ends and every few seconds by
beat, sends each family as many as its live workers can start soon (twice their slots, less
what already runs or waits in the broker). So 10,000 jobs cost the broker nothing until
they can run, interactive jobs never queue behind a whole batch in the broker, and which job
runs next is chosen when a worker is free: the place where swap-aware scheduling decides.

Each batch job's own timeout starts as it is handed over (until then its deadline is its
batch's window), so its place in a long batch does not eat into its run.

A job popped from the held queue but not sent (the releaser died in between) is still a
queued job in the store: the reaper's stranded-job sweep sends it, so nothing is lost.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from mes.jobs import Job, JobStatus
from mes.registry import FamilySpec, ModelRegistry
from mes.store.held import HeldQueues
from mes.store.jobs import RedisJobStore

log = logging.getLogger("mes.release")

PREFETCH = 2  # jobs per worker slot kept ready in the broker, so no slot waits for a release


@dataclass(frozen=True)
class Released:
    """Say what one release did for a family."""

    sent: int = 0
    room: int = 0
    skipped: bool = False  # another releaser held the family's lock


def release_family(family: FamilySpec, *, store: RedisJobStore, registry: ModelRegistry,
                   dispatch: Callable[[Job], None], allowed: dict[str, int] | None = None
                   ) -> Released:
    """Send up to the family's free room of held jobs to its queue.

    The room is shared evenly among the models with held jobs (interactive ones first within
    a model, then the oldest); with `allowed` (the scheduler's plan), only among those models
    and at most that many of each.
    """
    held = HeldQueues(store.redis)
    token = uuid.uuid4().hex
    if not held.lock(family.queue, token):
        return Released(skipped=True)
    try:
        models = [spec.id for spec in registry.models if spec.family == family]
        waiting = held.counts(models)
        if allowed is not None:
            waiting = {m: min(n, allowed.get(m, 0)) for m, n in waiting.items()}
        if not any(waiting.values()):
            return Released()
        room = held.room(family.queue, models, family.concurrency, PREFETCH)
        if room <= 0:
            return Released(room=room)
        plan = share_evenly({m: n for m, n in waiting.items() if n}, room)
        sent = 0
        now = time.time()
        for model_id, count in plan.items():
            jobs = held.start_clocks(store.get_many(held.take(model_id, family.queue, count)),
                                     now)
            for job in jobs:
                if job.status is not JobStatus.QUEUED:
                    continue  # ended (cancelled, expired) while held
                try:
                    dispatch(job)
                except Exception as exc:  # noqa: BLE001 - the broker failed: keep it held
                    held.put_back([job])
                    log.warning("event=release_failed job_id=%s model=%s error=%s", job.id,
                                job.model, exc.__class__.__name__)
                    return Released(sent=sent, room=room)
                sent += 1
        if sent:
            log.info("event=released queue=%s sent=%d room=%d", family.queue, sent, room)
        return Released(sent=sent, room=room)
    finally:
        held.unlock(family.queue, token)


def share_evenly(waiting: dict[str, int], room: int) -> dict[str, int]:
    """Split the room among models in turn, one job at a time, oldest model first."""
    plan = dict.fromkeys(waiting, 0)
    left = dict(waiting)
    while room > 0 and any(left.values()):
        for model_id in waiting:
            if room and left[model_id]:
                plan[model_id] += 1
                left[model_id] -= 1
                room -= 1
    return {model_id: count for model_id, count in plan.items() if count}


def release_all(*, store: RedisJobStore, registry: ModelRegistry,
                dispatch: Callable[[Job], None], families: list[FamilySpec] | None = None,
                allowed: dict[str, int] | None = None) -> dict[str, Released]:
    """Release held jobs for each family (every family by default)."""
    return {family.name: release_family(family, store=store, registry=registry,
                                        dispatch=dispatch, allowed=allowed)
            for family in (families or registry.families)}
