"""Serve a job's event stream as Server-Sent Events: GET /v1/jobs/{id}/events."""

from __future__ import annotations

from typing import Iterator

from flask import Blueprint, Response, request, stream_with_context

from mes.errors import Conflict, InvalidRequest
from mes.intake.cancel import cancel_job
from mes.intake.streams import follow_job
from mes.jobs import Job
from mes.store.events import Event, valid_id
from web import sse
from web.auth import require
from web.context import ctx
from web.disconnect import gone_check
from web.schemas import EventsQuerySchema
from web.views.reading import job_body, owned

bp = Blueprint("events", __name__, url_prefix="/v1")

RECONNECT_MS = 1000


def resume_point(query: dict) -> str | None:
    """Return where a stream resumes: Last-Event-ID, else ?after=, else the start."""
    after = request.headers.get("Last-Event-ID") or query.get("after")
    if after is None or after == "":
        return None
    after = after.removesuffix(".done")
    if not valid_id(after):
        raise InvalidRequest("Last-Event-ID (or ?after=) must be an event id such as "
                             "1733072000000-0", {"after": after})
    return after


def followed_events(job: Job, after: str | None = None, *, cancel_on_disconnect: bool = False
                    ) -> Iterator[Event | None]:
    """Yield the job's events until `done` (None when a heartbeat is due).

    With cancel_on_disconnect, a client that goes away before the job is final cancels it:
    the generator notices within a second, or is closed by the server when a write fails.
    """
    c = ctx()
    gone = gone_check(request.environ)
    finished = False
    try:
        for event in follow_job(job.id, after=after, log=c.services.store.events, hub=c.hub,
                                heartbeat_s=c.services.settings.stream_heartbeat_s, gone=gone):
            if event is not None and event.type == "done":
                finished = True
            yield event
    finally:
        if cancel_on_disconnect and not finished:
            cancel_quietly(job)


def native_events(job: Job, after: str | None, *, cancel_on_disconnect: bool = False
                  ) -> Iterator[str]:
    """Yield the job's events as SSE lines, ending with `done` and the final job."""
    store = ctx().services.store
    yield sse.retry(RECONNECT_MS)
    for event in followed_events(job, after, cancel_on_disconnect=cancel_on_disconnect):
        if event is None:
            yield sse.comment("ping")
        elif event.type == "done":
            yield sse.event("done", job_body(store.get(job.id) or job), event.id)
        else:
            yield sse.event(event.type, event.data, event.id)


def cancel_quietly(job: Job) -> None:
    """Cancel a job whose client went away; one that ended meanwhile is left as it is."""
    s = ctx().services
    current = s.store.get(job.id)
    if current is None or current.status.is_final:
        return
    try:
        cancel_job(current, store=s.store, clock=s.clock)
    except Conflict:
        pass  # it became final while we cancelled: nothing to stop


def stream_response(job: Job, after: str | None = None, *, cancel_on_disconnect: bool = False,
                    status: int = 200) -> Response:
    """Answer with the job's event stream; every header is set before the first byte."""
    body = stream_with_context(native_events(job, after, cancel_on_disconnect=cancel_on_disconnect))
    return Response(body, status=status, mimetype="text/event-stream",
                    headers={**sse.HEADERS, "X-MES-Job-ID": job.id})


@bp.get("/jobs/<job_id>/events")
@require(("jobs", "models"))
def job_events(job_id: str):
    """Stream a job's events; a final job replays them, then `done`."""
    query = EventsQuerySchema().load(request.args)
    return stream_response(owned(job_id), resume_point(query),
                           cancel_on_disconnect=query["cancel_on_disconnect"])
