"""OpenAI's Batches API on the door: the create body, the list query, and the batch object.

An OpenAI batch is a native MES batch (mes.intake.batches); what only OpenAI's shape needs
(input_file_id, endpoint, completion_window, the validation errors of a failed one) is kept in
the batch's `extra`. Its status is read from the native one:

| MES batch | OpenAI status |
| --- | --- |
| queued or in_progress (its input was checked when it was made) | in_progress |
| cancel asked, jobs still running | cancelling |
| completed, cancelled, expired | the same |
| made from a bad input file (no jobs) | failed |

`validating` and `finalizing` are never seen: validation happens while the batch is made, and
the output files are views over its jobs, ready the moment the last one ends.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from mes.intake.batches import expires_at
from mes.store.batches import BatchRecord
from web.doors.openai.answers import Answer
from web.doors.openai.files import CursorPage, cursor_page, view_id
from web.doors.openai.protocol import UNSUPPORTED, WireSchema, refused
from web.doors.openai.batches_output import BASE64_LINES

DOOR = "openai"
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
STATUSES = ["validating", "failed", "in_progress", "finalizing", "completed", "expired",
            "cancelling", "cancelled"]
UNCOUNTED = ("failed", "expired", "cancelled")  # the job states OpenAI counts as failed
WINDOWS = {"24h": 86400}  # OpenAI's completion windows, in seconds


class BatchCreateRequest(WireSchema):
    """Validate the body of POST /openai/v1/batches."""

    input_file_id = fields.String(required=True, validate=validate.Length(1, 200))
    endpoint = fields.String(required=True, validate=validate.OneOf(
        ENDPOINTS, error=UNSUPPORTED + "MES batches run " + ", ".join(ENDPOINTS)),
        metadata={"enum": list(ENDPOINTS)})
    completion_window = fields.String(required=True, validate=validate.OneOf(
        list(WINDOWS), error="must be '24h'"), metadata={"enum": list(WINDOWS)})
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(1, 64)),
                           values=fields.String(validate=validate.Length(max=512)),
                           allow_none=True, validate=validate.Length(max=16))
    output_expires_after = refused(fields.Dict(allow_none=True), why=(
        "a batch's output files are views of its jobs, kept as long as the batch "
        "(MES_BATCH_TTL_S after it ends)"))


class BatchListQuery(WireSchema):
    """Validate the query of GET /openai/v1/batches as the SDK sends it."""

    after = fields.String(validate=validate.Length(1, 200))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


def door_extra(wire: dict[str, Any], *, window_s: int, base64: list[int], total: int,
               errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return what a door batch keeps in `extra`: its OpenAI fields, and how to answer it."""
    extra: dict[str, Any] = {"door": DOOR, "input_file_id": wire["input_file_id"],
                             "endpoint": wire["endpoint"],
                             "completion_window": wire["completion_window"],
                             "window_s": window_s}
    if errors is not None:
        extra["errors"] = errors
    if base64:  # embeddings asked for base64: all of them (one word), or these lines
        extra["encoding_format"] = "base64" if len(base64) == total else "mixed"
        if len(base64) < total:
            extra[BASE64_LINES] = base64
    return extra


def is_door_batch(batch: BatchRecord) -> bool:
    """Tell whether a batch was made through this door (a native one has no input file)."""
    return batch.extra.get("door") == DOOR


def openai_status(batch: BatchRecord) -> str:
    """Name a batch's state as OpenAI does (the table above)."""
    if batch.finished_at is None:
        return "cancelling" if batch.cancel_requested else "in_progress"
    return batch.status  # completed, cancelled, expired or failed


def request_counts(batch: BatchRecord) -> dict[str, int]:
    """Count requests as OpenAI does: completed succeeded; failed ended without an answer."""
    return {"total": batch.total, "completed": batch.counts["succeeded"],
            "failed": sum(batch.counts[state] for state in UNCOUNTED)}


def batch_object(batch: BatchRecord) -> dict[str, Any]:
    """Describe a door batch as OpenAI's Batch object; times are unix seconds."""
    extra = batch.extra
    status = openai_status(batch)
    created = int(batch.created_at)
    ended = int(batch.finished_at) if batch.finished_at is not None else None
    counts = request_counts(batch)
    ran = ended is not None and status != "failed"

    def at(*states: str) -> int | None:
        return ended if status in states else None

    return {
        "id": batch.id, "object": "batch", "endpoint": extra["endpoint"],
        "errors": ({"object": "list", "data": extra.get("errors", [])}
                   if status == "failed" else None),
        "input_file_id": extra["input_file_id"],
        "completion_window": extra["completion_window"], "status": status,
        "output_file_id": view_id(batch.id, "output") if ran and counts["completed"] else None,
        "error_file_id": view_id(batch.id, "errors") if ran and counts["failed"] else None,
        "created_at": created,
        "in_progress_at": None if status == "failed" else created,
        # Batches made before the window was their jobs' wait kept their deadline as timeout_s.
        "expires_at": None if status == "failed" else int(
            expires_at(batch) or batch.created_at + extra.get("timeout_s", 0)),
        "finalizing_at": at("completed"), "completed_at": at("completed"),
        "failed_at": at("failed"), "expired_at": at("expired"), "cancelling_at": None,
        "cancelled_at": at("cancelled"),
        "request_counts": counts,
        "metadata": batch.metadata or None,
        "model": next(iter(batch.models)) if len(batch.models) == 1 else None,
    }


def batch_page(batches: list[BatchRecord], has_more: bool) -> dict[str, Any]:
    """Shape a page of batches as OpenAI's cursor page."""
    return cursor_page([batch_object(batch) for batch in batches], has_more)


class BatchError(Answer):
    """Shape one validation error of a failed batch."""

    code = fields.String(required=True)
    message = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    line = fields.Integer(required=True, allow_none=True, metadata={
        "description": "The input file's line, counted from 1."})


class BatchErrors(Answer):
    """Shape a failed batch's errors."""

    object = fields.String(required=True, validate=validate.Equal("list"))
    data = fields.List(fields.Nested(BatchError), required=True)


class RequestCounts(Answer):
    """Shape a batch's request counts."""

    total = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True, metadata={
        "description": "Requests that ended without an answer: failed, expired or cancelled "
                       "(the lines of the error file)."})


def _when(words: str) -> fields.Integer:
    return fields.Integer(required=True, allow_none=True, metadata={"description": words})


class Batch(Answer):
    """Shape OpenAI's Batch object."""

    id = fields.String(required=True, metadata={"description": "The MES batch's id."})
    object = fields.String(required=True, validate=validate.Equal("batch"))
    endpoint = fields.String(required=True)
    errors = fields.Nested(BatchErrors, required=True, allow_none=True)
    input_file_id = fields.String(required=True)
    completion_window = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    output_file_id = fields.String(required=True, allow_none=True)
    error_file_id = fields.String(required=True, allow_none=True)
    created_at = fields.Integer(required=True)
    in_progress_at = _when("When it was made: its jobs are queued at once.")
    expires_at = _when("When requests not done yet expire: the batch's creation plus "
                       "MES_TASK_SOFT_TIME_LIMIT_S.")
    finalizing_at = _when("As completed_at: the output files need no finalizing.")
    completed_at = _when("When its last job ended, for a completed batch.")
    failed_at = _when("When it was made, for a batch whose input file failed validation.")
    expired_at = _when("When its last job ended, for a batch some of whose requests expired.")
    cancelling_at = _when("Always null: MES records when the batch ended, not when a cancel "
                          "was asked.")
    cancelled_at = _when("When its last job ended, for a cancelled batch.")
    request_counts = fields.Nested(RequestCounts, required=True)
    metadata = fields.Dict(required=True, allow_none=True)
    model = fields.String(required=True, allow_none=True, metadata={
        "description": "The model of every request, or null when they name several."})


class BatchPage(CursorPage):
    """Shape the answer of GET /openai/v1/batches."""

    data = fields.List(fields.Nested(Batch), required=True)
