"""Submit a job request for any door: the one path every request takes into the queue.

Every door (our /v1, the OpenAI and Ollama doors) comes through here, so auth scopes
aside, input limits, queue limits, priorities, idempotency and prompt logging are the same.
"""

from __future__ import annotations

import time

from flask import g, request

from mes.errors import InvalidRequest
from mes.intake.submit import submit_job
from mes.jobs import Job, JobKind
from web.auth import current_key
from web.context import ctx
from web.disconnect import gone_check
from web.limits import check_job_request
from web.promptlog import log_prompt
from web.views.events import cancel_quietly

SLICE_S = 0.5


class ClientGone(Exception):
    """Signal that the client closed its connection while waiting; its job was cancelled."""


def idempotency_key() -> str | None:
    """Return the request's Idempotency-Key, checked."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable characters")
    return key


def submit_request(body: dict, *, kind: JobKind = JobKind.INFERENCE,
                   door: str = "native") -> tuple[Job, bool]:
    """Queue a validated job request as the calling key; return the job and whether it is new."""
    c = ctx()
    s = c.services
    key = idempotency_key()
    check_job_request(body, registry=s.registry, settings=s.settings)
    job, created = submit_job(body, owner=current_key().name, store=s.store, registry=s.registry,
                              dispatcher=c.dispatcher, clock=s.clock,
                              max_timeout_s=s.settings.task_soft_time_limit_s,
                              request_id=g.get("request_id"), kind=kind, idempotency_key=key,
                              door=door, schedule=schedule_now(c))
    g.job_id = job.id  # every answer about this job carries X-MES-Job-ID
    if created and s.settings.log_prompts:
        log_prompt(job, body)
    return job, created


def schedule_now(c):
    """Return what runs the scheduler once in this request, or None when it is off."""
    if c.scheduler is None:
        return None
    return lambda: c.scheduler.run(c.dispatcher.send, c.services.clock.now())


def wait_or_cancel(job: Job, wait_s: float) -> Job:
    """Wait up to wait_s for the job to be final; cancel it if the client goes away first.

    Raises ClientGone after cancelling, since nobody is left to answer.
    """
    waiter = ctx().waiter
    gone = gone_check(request.environ)
    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        job = waiter.wait(job.id, max(0.0, min(SLICE_S, left))) or job
        if job.status.is_final or left <= 0:
            return job
        if gone():
            cancel_quietly(job)
            raise ClientGone(job.id)
