"""Serve job submission, polling and synchronous inference."""

from __future__ import annotations

from flask import Blueprint, request, url_for

from mes.errors import InvalidRequest
from mes.intake.cancel import cancel_job
from mes.jobs import Job
from web.auth import current_key, require
from web.context import ctx
from web.views.events import stream_response
from web.views.reading import check_owned, job_body, owned
from web.submission import submit_request
from web.schemas import (InferenceRequestSchema, JobRequestSchema, JobSchema, ListQuerySchema,
                         WaitQuerySchema)

bp = Blueprint("jobs", __name__, url_prefix="/v1")


def _body(schema) -> dict:
    if not request.is_json:
        raise InvalidRequest("the body must be JSON with Content-Type: application/json")
    return schema.load(request.get_json())


def job_response(job: Job, status: int):
    """Dump a job, with its queue position and a Location header."""
    return job_body(job), status, {"Location": url_for("jobs.get_job", job_id=job.id)}


def _submit(body: dict) -> tuple[Job, bool]:
    return submit_request(body)


@bp.post("/jobs")
@require("jobs")
def create_job():
    """Queue a job and answer 202 with it; a replayed Idempotency-Key answers 200."""
    job, created = _submit(_body(JobRequestSchema()))
    return job_response(job, 202 if created else 200)


@bp.get("/jobs/<job_id>")
@require(("jobs", "models"))  # a models key reads the load/unload operations it started
def get_job(job_id: str):
    """Return a job, waiting up to ?wait= seconds for it to become final."""
    wait = WaitQuerySchema().load(request.args)["wait"]
    # One read: the waiter's first read is the ownership check.
    job = ctx().waiter.wait(job_id, wait, check=lambda found: check_owned(found, job_id))
    return job_response(job, 200)


@bp.delete("/jobs/<job_id>")
@require("jobs")
def delete_job(job_id: str):
    """Cancel a job: 200 with the cancelled job, 409 if it was already final."""
    s = ctx().services
    return job_response(cancel_job(owned(job_id), store=s.store, clock=s.clock), 200)


@bp.post("/inference")
@require("jobs")
def inference():
    """Queue a job and wait for it: 200 when final, 202 when wait_s runs out first.

    With "stream": true, answer with the job's event stream instead.
    """
    body = _body(InferenceRequestSchema())
    wait_s = body.pop("wait_s", ctx().services.settings.wait_default_s)
    cancel_on_disconnect = body.pop("cancel_on_disconnect", False)
    if body.pop("stream", False):
        job, _ = _submit(body)
        return stream_response(job, cancel_on_disconnect=cancel_on_disconnect)
    job, _ = _submit(body)
    job = ctx().waiter.wait(job.id, wait_s) or job
    return job_response(job, 200 if job.status.is_final else 202)


@bp.get("/jobs")
@require("jobs")
def list_jobs():
    """List the caller's jobs, newest first (every key's for admin)."""
    query = ListQuerySchema().load(request.args)
    if "batch" in query:
        return _batch_jobs(query)
    key = current_key()
    jobs, cursor = ctx().services.store.list_owned(
        None if key.is_admin else key.name, limit=query["limit"], before_ms=query.get("cursor"),
        status=query.get("status"), model=query.get("model"))
    return {"jobs": JobSchema(many=True).dump(jobs),
            "next_cursor": str(cursor) if cursor is not None else None}


def _batch_jobs(query: dict) -> dict:
    """List one batch's jobs in request order; the cursor is the index to start at."""
    from web.views.batches import batch_store, owned_batch
    batch = owned_batch(query["batch"])
    start = query.get("cursor") or 0
    ids = batch_store().job_ids(batch.id, start, query["limit"])
    jobs = [job for job in ctx().services.store.get_many(ids)
            if (not query.get("status") or job.status.value == query["status"])
            and (not query.get("model") or job.model == query["model"])]
    after = start + len(ids)
    return {"jobs": JobSchema(many=True).dump(jobs),
            "next_cursor": str(after) if after < batch.total else None}
