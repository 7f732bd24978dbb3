"""Serve native batches: submit many jobs at once, follow them, read their results, cancel them."""

from __future__ import annotations

import json
from typing import Any, Iterator

from flask import Blueprint, Response, g, request, stream_with_context, url_for
from marshmallow import ValidationError

from mes.errors import InvalidRequest, NotFound, PayloadTooLarge
from mes.intake.batches import (BatchRequest, batch_view, cancel_batch, check_lines,
                                let_others_run, submit_batch)
from mes.scheduling.release import release_all
from mes.store.batches import BatchRecord, BatchStore
from web.auth import current_key, require
from web.batch_schemas import (BatchListQuerySchema, BatchLineSchema, BatchQuerySchema,
                               BatchSchema, BatchSubmitSchema, ResultsQuerySchema,
                               quick_line)
from web.context import ctx
from web.limits import batch_json, check_job_request
from web.views.reading import job_body

bp = Blueprint("batches", __name__, url_prefix="/v1")

RESULTS_CHUNK = 500


def batch_store() -> BatchStore:
    """Return the batch store over this process's job store."""
    return BatchStore(ctx().services.store)


def batch_response(batch: BatchRecord, status: int):
    """Dump a batch with a Location header."""
    body = BatchSchema().dump(batch_view(batch, ctx().services.clock.now()))
    return body, status, {"Location": url_for("batches.get_batch", batch_id=batch.id)}


def owned_batch(batch_id: str) -> BatchRecord:
    """Return the caller's batch, or raise NotFound (another key's batch looks missing)."""
    batch = batch_store().get(batch_id)
    key = current_key()
    if batch is None or (batch.owner != key.name and not key.is_admin):
        raise NotFound(f"no batch {batch_id}")
    return batch


def _read_body() -> tuple[list[Any], dict[str, Any]]:
    """Read the batch's requests and its own fields, from JSON or NDJSON."""
    settings = ctx().services.settings
    request.max_content_length = settings.max_batch_bytes
    length = request.content_length
    if length is not None and length > settings.max_batch_bytes:
        raise PayloadTooLarge(f"the batch is {length} bytes; the limit is "
                              f"{settings.max_batch_bytes} (MES_MAX_BATCH_BYTES)",
                              {"limit_bytes": settings.max_batch_bytes})
    if request.mimetype in ("application/x-ndjson", "application/jsonl", "application/jsonlines"):
        fields = BatchQuerySchema().load(request.args)
        lines = []
        for number, text in enumerate(request.get_data(as_text=True).splitlines()):
            let_others_run(number)
            if text.strip():
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    raise InvalidRequest(f"line {number} is not JSON",
                                         {"line": number}) from None
        return lines, {**fields, "metadata": {}}
    if not request.is_json:
        raise InvalidRequest("the body must be JSON (application/json) or NDJSON "
                             "(application/x-ndjson)")
    body = batch_json()
    if isinstance(body, dict) and isinstance(body.get("requests"), list):
        # The schema's List(Raw) would copy 10,000 items in one go without a turn for the
        # process's other requests; a list is all it checks of them, and check_lines does
        # the rest. The batch's own fields still go through the schema.
        fields = BatchSubmitSchema().load({**body, "requests": []})
        fields.pop("requests")
        return body["requests"], fields
    fields = BatchSubmitSchema().load(body)  # it says what is wrong with the body
    return fields.pop("requests"), fields


def _parse_line(raw: Any, timeout_s: int | None, schema: BatchLineSchema) -> BatchRequest:
    """Validate one line as POST /v1/jobs would, plus its custom_id."""
    s = ctx().services
    if not isinstance(raw, dict):
        raise InvalidRequest("a request must be a JSON object")
    body = quick_line(raw)
    if body is None:  # not the plain shape, or invalid: the schema decides, and says why
        try:
            body = schema.load(raw)
        except ValidationError as exc:
            raise InvalidRequest("the request failed validation",
                                 {"fields": exc.normalized_messages()}) from None
    custom_id = body.pop("custom_id")
    body.pop("priority", None)  # a batch has one lane, its own
    if timeout_s is not None:
        body.setdefault("timeout_s", timeout_s)
    check_job_request(body, registry=s.registry, settings=s.settings)
    return BatchRequest(custom_id, body)


@bp.post("/batches")
@require("jobs")
def create_batch():
    """Accept a batch, all or nothing, and answer 202 with it."""
    c = ctx()
    s = c.services
    raw_lines, fields = _read_body()
    if len(raw_lines) > s.settings.max_batch_requests:
        raise PayloadTooLarge(f"the batch has {len(raw_lines)} requests; the limit is "
                              f"{s.settings.max_batch_requests} (MES_MAX_BATCH_REQUESTS)",
                              {"limit_requests": s.settings.max_batch_requests})
    # One schema for every line: building one (its fields deep-copied) costs more than a load.
    schema = BatchLineSchema()
    lines = check_lines(raw_lines, s.registry,
                        parse=lambda raw: _parse_line(raw, fields.get("timeout_s"), schema),
                        max_timeout_s=s.settings.task_soft_time_limit_s)
    batch = submit_batch(lines, owner=current_key().name, store=s.store, batches=batch_store(),
                         registry=s.registry, clock=s.clock, priority=fields["priority"],
                         metadata=fields.get("metadata"),
                         max_timeout_s=s.settings.task_soft_time_limit_s,
                         window_s=fields["completion_window_s"], request_id=g.get("request_id"))
    release(batch)
    return batch_response(batch_store().get(batch.id) or batch, 202)


def release(batch: BatchRecord) -> None:
    """Hand a new batch's jobs to its models' workers as they have room (or the scheduler)."""
    c = ctx()
    s = c.services
    if c.scheduler is not None:
        c.scheduler.run(c.dispatcher.send, s.clock.now())
        return
    families = [f for f in s.registry.families if any(
        s.registry.get(model).family == f for model in batch.models)]
    release_all(store=s.store, registry=s.registry, dispatch=c.dispatcher.send,
                families=families)


@bp.get("/batches")
@require("jobs")
def list_batches():
    """List the caller's batches, newest first (every key's for admin)."""
    query = BatchListQuerySchema().load(request.args)
    key = current_key()
    found, cursor = batch_store().list_owned(None if key.is_admin else key.name,
                                             limit=query["limit"], before_ms=query.get("cursor"))
    now = ctx().services.clock.now()
    return {"batches": BatchSchema(many=True).dump([batch_view(b, now) for b in found]),
            "next_cursor": str(cursor) if cursor is not None else None}


@bp.get("/batches/<batch_id>")
@require("jobs")
def get_batch(batch_id: str):
    """Return a batch with its counts and the time left."""
    return batch_response(owned_batch(batch_id), 200)


@bp.delete("/batches/<batch_id>")
@require("jobs")
def delete_batch(batch_id: str):
    """Cancel every job of the batch not yet final; answer with the counts."""
    s = ctx().services
    batch = cancel_batch(owned_batch(batch_id), store=s.store, batches=batch_store(),
                         clock=s.clock)
    return batch_response(batch, 200)


@bp.get("/batches/<batch_id>/results")
@require("jobs")
def batch_results(batch_id: str):
    """Stream the batch's final jobs as JSONL, in request order, from ?cursor=.

    Each line is {"index", "custom_id", "job"}; the stream stops at the first job that is
    not final yet, so a client resumes from the index after its last line.
    """
    batch = owned_batch(batch_id)
    start = ResultsQuerySchema().load(request.args)["cursor"]
    return Response(stream_with_context(_results(batch, start)), mimetype="application/x-ndjson",
                    headers={"X-MES-Batch-Total": str(batch.total)})


def _results(batch: BatchRecord, start: int) -> Iterator[str]:
    for index, job in batch_store().final_jobs(batch.id, start, RESULTS_CHUNK):
        yield json.dumps({"index": index, "custom_id": job.custom_id, "job": job_body(job)},
                         ensure_ascii=False, separators=(",", ":")) + "\n"
