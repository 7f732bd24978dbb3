"""Cancel a job: a queued one never runs, a running one has its stream closed."""

from __future__ import annotations

from mes.clock import SystemClock
from mes.errors import Conflict, JobCancelled
from mes.jobs import Job, JobStatus
from mes.store import RedisJobStore, StaleJob

CANCEL_POLL_S = 0.25


def cancel_job(job: Job, *, store: RedisJobStore, clock: SystemClock) -> Job:
    """Mark a job cancelled; raise Conflict if it is already final."""
    error = JobCancelled("the job was cancelled by the client").to_dict()
    for _ in range(10):
        if job.status.is_final:
            raise Conflict(f"job {job.id} is already {job.status.value}",
                           {"status": job.status.value})
        if job.status is JobStatus.RUNNING:
            # Flag first: the worker polls the flag and closes the backend stream.
            store.request_cancel(job.id)
        try:
            return store.save(job.evolve(status=JobStatus.CANCELLED, finished_at=clock.now(),
                                         error=error))
        except StaleJob:
            job = store.get(job.id) or job
    raise Conflict(f"job {job.id} kept changing; try again")


class StopCheck:
    """Tell a streaming call to stop at the deadline or on cancel, polling Redis at most 4/s."""

    def __init__(self, job: Job, store: RedisJobStore, clock: SystemClock):
        self._job = job
        self._store = store
        self._clock = clock
        self._next_poll = 0.0
        self.reason: str | None = None

    def __call__(self) -> bool:
        now = self._clock.monotonic()
        if self._clock.now() >= self._job.deadline_at:
            self.reason = "deadline"
            return True
        if now >= self._next_poll:
            self._next_poll = now + CANCEL_POLL_S
            if self._store.cancel_requested(self._job.id):
                self.reason = "cancelled"
                return True
        return False
