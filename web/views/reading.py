"""Read jobs for the views: the caller's own job, and a job as the API shows it."""

from __future__ import annotations

from mes.errors import NotFound
from mes.jobs import Job, JobKind
from mes.store.progress import ProgressStore
from web.auth import current_key
from web.context import ctx
from web.schemas import JobSchema


def job_body(job: Job) -> dict:
    """Dump a job as GET /v1/jobs/{id} shows it: its queue position while queued, a pull's progress."""
    positions = {}
    if job.status.value == "queued":
        position = ctx().services.store.queue_position(job)
        if position is not None:
            positions[job.id] = position
    progress = {}
    if job.kind is JobKind.PULL:
        s = ctx().services
        found = ProgressStore(s.redis, s.store.ttl_s).read(job.id)
        if found is not None:
            progress[job.id] = found
    return JobSchema(positions=positions, progress=progress).dump(job)


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
