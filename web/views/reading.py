"""Read jobs for the views: the caller's own job, and a job as the API shows it."""

from __future__ import annotations

from mes.errors import NotFound
from mes.jobs import Job
from web.auth import current_key
from web.context import ctx
from web.schemas import JobSchema


def job_body(job: Job) -> dict:
    """Dump a job as GET /v1/jobs/{id} shows it, with its queue position while queued."""
    positions = {}
    if job.status.value == "queued":
        position = ctx().services.store.queue_position(job)
        if position is not None:
            positions[job.id] = position
    return JobSchema(positions=positions).dump(job)


def owned(job_id: str) -> Job:
    """Return the caller's job, or raise NotFound (another key's job looks missing)."""
    return check_owned(ctx().services.store.get(job_id), job_id)


def check_owned(job: Job | None, job_id: str) -> Job:
    """Return the job if the caller may see it; raise NotFound if not."""
    key = current_key()
    # Another key's job is reported exactly like a missing one.
    if job is None or (job.owner != key.name and not key.is_admin):
        raise NotFound(f"no job {job_id}")
    return job
