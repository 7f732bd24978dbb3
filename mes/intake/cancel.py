"""Cancel a job: a queued one never runs, a running one has its stream closed."""

from __future__ import annotations

from mes.clock import SystemClock
from mes.errors import Conflict, JobCancelled
from mes.jobs import Job, JobStatus
from mes.store.jobs import RedisJobStore, StaleJob


def cancel_job(job: Job, *, store: RedisJobStore, clock: SystemClock) -> Job:
    """Mark a job cancelled; raise Conflict if it is already final."""
    error = JobCancelled("the job was cancelled by the client").to_dict()
    for _ in range(10):
        if job.status.is_final:
            raise Conflict(f"job {job.id} is already {job.status.value}",
                           {"status": job.status.value})
        if job.status is JobStatus.RUNNING:
            # Flag first: the worker hears it and closes the backend stream.
            store.request_cancel(job.id)
        try:
            return store.save(job.evolve(status=JobStatus.CANCELLED, finished_at=clock.now(),
                                         error=error))
        except StaleJob:
            job = store.get(job.id) or job
    raise Conflict(f"job {job.id} kept changing; try again")
