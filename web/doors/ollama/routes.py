"""Serve Ollama's API at /ollama: every generate, chat and embed request is an ordinary MES job.

The views only wire protocol.py (the wire checks) and translate.py (wire to job and back) to
URLs; every job goes in through web/submission.py, with MES's auth, limits and policy. A
client that goes away cancels its job, streaming or not, as Ollama stops generating when
its client leaves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from mes.errors import InvalidRequest, JobTimeout, MESError
from mes.jobs import Job, JobKind, JobStatus
from mes.structured.formats import json_depth
from web.auth import require
from web.context import ctx
from web.doors.ollama import catalog, protocol, translate
from web.doors.ollama.errors import failure, wire_error
from web.limits import MAX_JSON_DEPTH
from web.schemas import JobRequestSchema
from web.submission import ClientGone, submit_request, wait_or_cancel
from web.views.events import followed_events

bp = Blueprint("ollama", __name__, url_prefix="/ollama")

DOOR = "ollama"
NDJSON = "application/x-ndjson"
IGNORED_HEADER = "X-MES-Ignored"
GRACE_S = 5.0  # a job past its deadline is ended by its worker within moments; wait that long


def json_body() -> Any:
    """Return the body as JSON whatever its Content-Type: Ollama's curl examples send none."""
    if not request.get_data(cache=True):
        raise InvalidRequest("missing request body")
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:
        body, depth = None, MAX_JSON_DEPTH + 1
    else:
        # web/limits.py checks only application/json bodies; a door body is checked the same.
        depth = 0 if request.is_json else json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest(f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep")
    if body is None:
        raise InvalidRequest("the request body is not valid JSON")
    return body


def _headers(ignored: list[str]) -> dict[str, str]:
    value = translate.header_value(ignored)
    return {IGNORED_HEADER: value} if value else {}


def _now() -> float:
    return ctx().services.clock.now()


def _final(job: Job, model: str) -> Job:
    """Wait for the job to be final, cancelling it if the client leaves; raise unless it succeeded.

    The wait lasts until the job's deadline (plus a grace), at most MES_WAIT_MAX_S.
    """
    wait_s = min(job.deadline_at - _now() + GRACE_S, ctx().services.settings.wait_max_s)
    job = wait_or_cancel(job, max(0.0, wait_s))
    if not job.status.is_final:
        raise JobTimeout(f"job {job.id} is still {job.status.value} after {wait_s:.0f} s of "
                         f"waiting; it goes on: read it at /v1/jobs/{job.id}", {"job_id": job.id})
    if job.status is not JobStatus.SUCCEEDED:
        raise failure(job, model)
    return job


@bp.post("/api/generate")
@require(("jobs", "models"))
def generate():
    """Generate a completion, as NDJSON unless stream is false; no prompt loads or unloads."""
    return _complete("generate", protocol.load_generate(json_body()))


@bp.post("/api/chat")
@require(("jobs", "models"))
def chat():
    """Generate the next chat message, as NDJSON unless stream is false; no messages loads."""
    return _complete("chat", protocol.load_chat(json_body()))


def _complete(endpoint: str, wire: dict[str, Any]):
    model = translate.resolve_model(wire["model"], ctx().services.registry)
    kind = translate.operation(endpoint, wire)
    if kind is not None:
        return _operate(endpoint, wire, model, kind)
    return _infer(endpoint, wire, model)


@require("models")
def _operate(endpoint: str, wire: dict[str, Any], model: str, kind: JobKind):
    """Load or unload through MES's operation (as POST /v1/models/{id}/load); answer when final."""
    job, _ = submit_request({"model": model}, kind=kind, door=DOOR)
    _final(job, wire["model"])
    used = ("keep_alive",) if kind is JobKind.UNLOAD else ()
    ignored = [*translate.job_options(wire.get("options") or {})[1],
               *translate.ignored_fields(wire, used=used)]
    return (translate.operation_answer(endpoint, wire["model"], kind, _now()), 200,
            _headers(ignored))


@require("jobs")
def _infer(endpoint: str, wire: dict[str, Any], model: str):
    """Queue the request as a job; stream its events, or wait for it."""
    body, ignored = translate.job_body(endpoint, wire, model)
    job, _ = submit_request(JobRequestSchema().load(body), door=DOOR)
    if wire["stream"]:
        return _stream(endpoint, wire["model"], job, _headers(ignored), buffered="format" in body)
    job = _final(job, wire["model"])
    answer = translate.final(endpoint, wire["model"], job, _now(), text=translate.answer_text(job))
    return answer, 200, _headers(ignored)


def _line(chunk: dict[str, Any]) -> str:
    return json.dumps(chunk, ensure_ascii=False, separators=(",", ":")) + "\n"


def _stream(endpoint: str, model: str, job: Job, headers: dict[str, str], *, buffered: bool):
    """Answer with the job's text as NDJSON; every header is set before the first byte.

    The events up to the first chunk are read before answering, so a job that fails before
    any text gets a real status, as Ollama answers an error that comes before any content.
    """
    translator = translate.StreamTranslator(endpoint, model, buffered=buffered)
    events = followed_events(job, cancel_on_disconnect=True)
    head = _head(events, translator, job, model)
    return Response(stream_with_context(_lines(head, events, translator, job, model)),
                    mimetype=NDJSON, headers=headers)


def _final_chunks(translator: translate.StreamTranslator, job: Job, model: str):
    final = ctx().services.store.get(job.id) or job
    if final.status is JobStatus.SUCCEEDED:
        return final, translator.finish(final, _now())
    return final, translator.finish(final, _now(), wire_error(failure(final, model))[1])


def _head(events: Iterator, translator: translate.StreamTranslator, job: Job,
          model: str) -> list[dict[str, Any]]:
    for event in events:
        if event is None:
            continue  # a heartbeat: NDJSON has no comments, and Ollama too says nothing meanwhile
        if event.type == "done":
            final, chunks = _final_chunks(translator, job, model)
            if final.status is not JobStatus.SUCCEEDED:
                raise failure(final, model)
            return chunks
        chunks = translator.feed(event.type, event.data, _now())
        if chunks:
            return chunks
    raise ClientGone(job.id)  # the events stopped before `done`: the client left, the job is cancelled


def _lines(head: list[dict[str, Any]], events: Iterator, translator: translate.StreamTranslator,
           job: Job, model: str) -> Iterator[str]:
    try:
        yield from map(_line, head)
        for event in () if translator.ended else events:
            if event is None:
                continue
            if event.type == "done":
                yield from map(_line, _final_chunks(translator, job, model)[1])
                return
            yield from map(_line, translator.feed(event.type, event.data, _now()))
            if translator.ended:
                return  # a restart after text: the error line said so; the job is cancelled
    finally:
        events.close()


@bp.post("/api/embed")
@require("jobs")
def embed():
    """Embed a string or a list of strings as an MES embed job on the model's queue."""
    wire = protocol.load_embed(json_body())
    body, ignored = translate.embed_body(wire, translate.resolve_model(
        wire["model"], ctx().services.registry))
    job, _ = submit_request(body, kind=JobKind.EMBED, door=DOOR)
    job = _final(job, wire["model"])
    return translate.embed_answer(wire["model"], job), 200, _headers(ignored)


def _backend_tags() -> list[dict[str, Any]] | None:
    try:
        return ctx().services.backend.tags()
    except MESError:
        return None  # the backend cannot be asked: the registry still answers


@bp.get("/api/tags")
@require(None)
def tags():
    """List the registry's models, with what the backend knows of each."""
    return catalog.tags(ctx().services.registry, _backend_tags())


@bp.post("/api/show")
@require(None)
def show():
    """Describe one registry model: its details and the options MES fixes for it."""
    registry = ctx().services.registry
    name = protocol.load_show(json_body())
    return catalog.show(registry.get(translate.resolve_model(name, registry)), _backend_tags())


@bp.get("/api/ps")
@require(None)
def ps():
    """List the models the backend has loaded now, as the backend reports them."""
    return {"models": ctx().services.backend.ps()}


@bp.get("/api/version")
@require(None)
def version():
    """Return the backend's version (MES's own when the backend cannot be asked)."""
    try:
        return {"version": ctx().services.backend.version()}
    except MESError:
        return {"version": metadata.version("mes")}
