"""Serve OpenAI's API at /openai/v1: each view loads the wire request, submits, translates back.

Every request becomes an ordinary MES job through web/submission.py (auth, limits, queue
limits, priorities, idempotency, metrics by door); nothing here decides policy.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, request, stream_with_context

from mes.errors import InvalidRequest
from mes.jobs import Job, JobKind, JobStatus
from web import sse
from web.auth import require
from web.context import ctx
from web.doors.openai import chunks, protocol, translate
from web.submission import submit_request, wait_or_cancel
from web.views.events import followed_events

bp = Blueprint("openai", __name__, url_prefix="/openai/v1")

DOOR = "openai"
# A job is final by its deadline; the worker needs a moment to say so before we answer 504.
GRACE_S = 5
# The job exists and may still run: an SDK retry would only queue a second one.
NO_RETRY = {"x-should-retry": "false"}


def wire_body(schema) -> dict:
    """Load a JSON body with the door's schema (unknown fields refused, types strict)."""
    if not request.is_json:
        raise InvalidRequest("the body must be JSON with Content-Type: application/json")
    return schema.load(request.get_json())


def wait_bound(job: Job) -> float:
    """Return how long to wait: until the job's deadline (plus grace), at most wait_max_s."""
    s = ctx().services
    left = job.deadline_at - s.clock.now() + GRACE_S
    return max(0.0, min(left, float(s.settings.wait_max_s)))


def _answered(job: Job, build) -> Response | tuple:
    """Wait for the job (cancelling it if the client goes), then answer it or its error."""
    started = time.monotonic()
    job = wait_or_cancel(job, wait_bound(job))
    if job.status is JobStatus.SUCCEEDED:
        return build(job)
    status, body = translate.job_error(job, waited_s=time.monotonic() - started)
    return body, status, NO_RETRY


def _streamed(job: Job, *, chat: bool, wire: dict) -> Response:
    """Answer with OpenAI's SSE chunks of the job's events; every header before the body."""
    store = ctx().services.store
    include_usage = bool((wire.get("stream_options") or {}).get("include_usage"))

    def body():
        events = followed_events(job, cancel_on_disconnect=True)
        try:
            yield from chunks.stream_chunks(events, job, lambda: store.get(job.id) or job,
                                            chat=chat, include_usage=include_usage)
        finally:
            events.close()  # before `done`, this cancels the job

    return Response(stream_with_context(body()), mimetype="text/event-stream",
                    headers=sse.HEADERS)


def _priority_header() -> str | None:
    return request.headers.get(translate.PRIORITY_HEADER)


def _completed(schema, to_job_request, answer, *, chat: bool):
    """Submit a (chat) completion request; answer it whole, or streamed with "stream": true."""
    wire = wire_body(schema)
    job, _ = submit_request(to_job_request(wire, _priority_header()), door=DOOR)
    if wire["stream"]:
        return _streamed(job, chat=chat, wire=wire)
    return _answered(job, answer)


@bp.post("/chat/completions")
@require("jobs")
def chat_completions():
    """Create a chat completion: one JSON answer, or SSE chunks with "stream": true."""
    return _completed(protocol.ChatCompletionRequest(), translate.chat_request,
                      translate.chat_completion, chat=True)


@bp.post("/completions")
@require("jobs")
def completions():
    """Create a text completion: one JSON answer, or SSE chunks with "stream": true."""
    return _completed(protocol.CompletionRequest(), translate.completion_request,
                      translate.text_completion, chat=False)


@bp.post("/embeddings")
@require("jobs")
def embeddings():
    """Embed text inputs on the model's queue; vectors as floats or base64."""
    wire = wire_body(protocol.EmbeddingRequest())
    job, _ = submit_request(translate.embedding_request(wire, _priority_header()),
                            kind=JobKind.EMBED, door=DOOR)
    return _answered(job, lambda done: translate.embedding_list(done, wire["encoding_format"]))


@bp.get("/models")
@require(None)
def list_models():
    """List the registry's models in OpenAI's shape."""
    return translate.model_list(list(ctx().services.registry.models))


@bp.get("/models/<path:model_id>")
@require(None)
def get_model(model_id: str):
    """Return one model; an id may contain ':' and '/'; an unknown one is 404."""
    return translate.model_entry(ctx().services.registry.get(model_id))
