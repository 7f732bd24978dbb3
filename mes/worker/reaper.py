"""Find jobs that fell through the cracks and put them back on their way; run by beat."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from mes.clock import SystemClock
from mes.errors import JobExpired
from mes.store.health import count_workers
from mes.store.held import HeldQueues
from mes.jobs import Job, JobStatus
from mes.registry import FamilySpec, ModelRegistry
from mes.store.jobs import RedisJobStore, StaleJob

log = logging.getLogger("mes.worker.reaper")


@dataclass
class ReapReport:
    """Count what one sweep did."""

    requeued: int = 0
    expired: int = 0
    dropped: int = 0
    stranded: int = 0
    promoted: int = 0


def reap_family(family: FamilySpec, *, store: RedisJobStore, registry: ModelRegistry,
                clock: SystemClock, dispatch: Callable[[Job], None], grace_s: float,
                batch_max_wait_s: float = 300) -> ReapReport:
    """Requeue running jobs whose worker died, and expire queued jobs past their deadline.

    A running job without a live lease lost its worker: with the whole worker killed, its
    message would only come back after the visibility timeout, so we send it again now.
    The job's next run counts the loss and fails it as worker_lost after too many.
    """
    report = ReapReport()
    now = clock.now()
    for spec in registry.models:
        if spec.family != family:
            continue
        ids = sorted(store.running_ids(spec.id))
        found = {job.id: job for job in store.get_many(ids)}
        for job_id in ids:
            job = found.get(job_id)
            if job is None or job.status is not JobStatus.RUNNING:
                store.forget_running(spec.id, job_id)
                report.dropped += 1
                continue
            started = job.started_at or job.created_at
            if store.leases.lease_alive(job_id) or now - started < grace_s:
                continue
            dispatch(job)
            report.requeued += 1
            log.info("event=reaper_requeue job_id=%s model=%s queue=%s state=running",
                     job.id, job.model, job.queue)
        report.expired += _expire_queued(spec.id, store, clock)
    report.stranded = _redispatch_stranded(family, store=store, registry=registry, clock=clock,
                                           dispatch=dispatch, grace_s=grace_s)
    report.promoted = _promote_old_batch(family, store=store, clock=clock, dispatch=dispatch,
                                         max_wait_s=batch_max_wait_s)
    return report


def _promote_old_batch(family: FamilySpec, *, store: RedisJobStore, clock: SystemClock,
                       dispatch: Callable[[Job], None], max_wait_s: float) -> int:
    """Send batch jobs that waited longer than max_wait_s again, in the interactive lane.

    Interactive jobs always go first, so a steady interactive load could starve batch work
    for ever; this aging rule bounds a batch job's wait to about max_wait_s plus one sweep.
    The job's first message becomes a no-op once the promoted one has run it.
    """
    now = clock.now()
    promoted = 0
    for job in store.queued_in_queue(family.queue, 500):
        if (job.status is not JobStatus.QUEUED or job.priority != "batch"
                or job.promoted_at is not None or now - job.created_at < max_wait_s):
            continue
        try:
            job = store.save(job.evolve(promoted_at=now))
        except StaleJob:
            continue
        dispatch(job)
        promoted += 1
        log.info("event=batch_promoted job_id=%s model=%s queue=%s state=queued", job.id,
                 job.model, job.queue)
    return promoted


def _redispatch_stranded(family: FamilySpec, *, store: RedisJobStore, registry: ModelRegistry,
                         clock: SystemClock, dispatch: Callable[[Job], None], grace_s: float) -> int:
    """Send again queued jobs that idle workers have not picked up for too long.

    A healthy family never has a job waiting while its workers sit idle. When it does, the
    job's message was lost in flight (a worker's connection dropped while Redis restarted
    and its unacked messages could not be restored until the visibility timeout). Sending
    it again is safe: the lease and the final-state check make the extra message a no-op.
    """
    models = [spec.id for spec in registry.models if spec.family == family]
    running = sum(counts[1] for counts in store.model_counts(models).values())
    workers = count_workers(store.redis, [family.queue])[family.queue]
    free = workers * family.concurrency - running
    if free <= 0:
        return 0
    now = clock.now()
    sent = 0
    stranded = [job for job in store.queued_in_queue(family.queue, free)
                if job.status is JobStatus.QUEUED
                and now - max(job.created_at, job.not_before or 0.0) > grace_s]
    # A batch job whose message was lost was never handed over: its timeout starts now.
    for job in HeldQueues(store.redis).start_clocks(stranded, now):
        if job.status is JobStatus.QUEUED:
            dispatch(job)
            sent += 1
            log.info("event=reaper_redispatch job_id=%s model=%s queue=%s state=queued",
                     job.id, job.model, job.queue)
    return sent


def _expire_queued(model_id: str, store: RedisJobStore, clock: SystemClock) -> int:
    # Queued ids are scored by creation time, so the oldest come first.
    now = clock.now()
    expired = 0
    # The interactive lane too: a batch's held jobs wait against their window, which ends
    # long after an interactive job's deadline, and can fill a model's oldest 200.
    oldest = store.queued_for_model(model_id, 200)
    seen = {job.id for job in oldest}
    lane = [job for job in store.queued_for_model(model_id, 200, interactive=True)
            if job.id not in seen]
    for job in oldest + lane:
        if job.status is JobStatus.QUEUED and now >= job.deadline_at:
            try:
                store.save(job.evolve(status=JobStatus.EXPIRED, finished_at=now,
                                      error=JobExpired().to_dict()))
                expired += 1
            except StaleJob:
                pass
    return expired
