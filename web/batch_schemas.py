"""Validate batch requests and shape batches for the API (the native /v1/batches)."""

from __future__ import annotations

import json
import math
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from mes.intake.batches import DEFAULT_WINDOW_S, MAX_WINDOW_S
from mes.jobs import PRIORITIES
from web.schemas import METADATA_MAX_BYTES, JobRequestSchema, Timestamp


class BatchLineSchema(JobRequestSchema):
    """Validate one request of a batch: a job body plus its custom_id."""

    custom_id = fields.String(required=True, validate=validate.Length(1, 256))


# The shape almost every batch line has. A line of it is checked by hand, about ten times
# faster than BatchLineSchema's load (a marshmallow load a line was two thirds of the web's CPU
# for a 10,000-line batch); anything else, and every line that fails, goes through the schema,
# so what is accepted, what it becomes and every error's wording stay the schema's.
_QUICK_TOP = frozenset({"custom_id", "model", "prompt", "messages", "system", "options",
                        "priority", "timeout_s", "metadata"})
_ROLES = frozenset({"system", "user", "assistant", "tool"})
# The options in OptionsSchema's order (its load gives them in that order), with their check.
_QUICK_OPTIONS = {
    "temperature": lambda v: _number(v) and 0 <= v <= 2,
    "top_p": lambda v: _number(v) and 0 <= v <= 1,
    "top_k": lambda v: type(v) is int and 1 <= v <= 1000,
    "seed": lambda v: type(v) is int,
    "max_tokens": lambda v: type(v) is int and 1 <= v <= 1_000_000,
    "stop": lambda v: (type(v) is list and len(v) <= 16
                       and all(type(s) is str and 1 <= len(s) <= 200 for s in v)),
}
_FLOATS = frozenset({"temperature", "top_p"})


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _text(value: Any, least: int = 0, most: int | None = None) -> bool:
    return type(value) is str and least <= len(value) and (most is None or len(value) <= most)


def quick_line(raw: Any) -> dict[str, Any] | None:
    """Return what BatchLineSchema().load(raw) returns for a plain valid line; None if unsure."""
    if type(raw) is not dict or not _QUICK_TOP.issuperset(raw):
        return None
    if not (_text(raw.get("custom_id"), 1, 256) and _text(raw.get("model"), 1, 200)):
        return None
    body: dict[str, Any] = {"model": raw["model"]}
    if ("prompt" in raw) == ("messages" in raw):
        return None
    if "prompt" in raw:
        if not _text(raw["prompt"], 1):
            return None
        body["prompt"] = raw["prompt"]
    else:
        messages = raw["messages"]
        if type(messages) is not list or not 1 <= len(messages) <= 1000:
            return None
        for message in messages:
            if (type(message) is not dict or len(message) != 2
                    or type(message.get("role")) is not str or message["role"] not in _ROLES
                    or not _text(message.get("content"))):
                return None
        body["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
    if "system" in raw:
        if not _text(raw["system"]):
            return None
        body["system"] = raw["system"]
    if "options" in raw:
        options = raw["options"]
        if type(options) is not dict or not all(
                key in _QUICK_OPTIONS and _QUICK_OPTIONS[key](value)
                for key, value in options.items()):
            return None
        body["options"] = {key: (float(options[key]) if key in _FLOATS else
                                 list(options[key]) if key == "stop" else options[key])
                           for key in _QUICK_OPTIONS if key in options}
    priority = raw.get("priority", "interactive")
    if type(priority) is not str or priority not in PRIORITIES:
        return None
    body["priority"] = priority
    if "timeout_s" in raw:
        if not (type(raw["timeout_s"]) is int and 1 <= raw["timeout_s"] <= 86400):
            return None
        body["timeout_s"] = raw["timeout_s"]
    if "metadata" in raw:
        metadata = raw["metadata"]
        if (type(metadata) is not dict or not all(type(key) is str for key in metadata)
                or len(json.dumps(metadata)) > METADATA_MAX_BYTES):
            return None
        body["metadata"] = dict(metadata)
    body["custom_id"] = raw["custom_id"]
    return body


class BatchSubmitSchema(Schema):
    """Validate the JSON body of POST /v1/batches (its requests are checked line by line)."""

    class Meta:
        unknown = RAISE

    requests = fields.List(fields.Raw(), required=True)
    priority = fields.String(load_default="batch", validate=validate.OneOf(PRIORITIES))
    timeout_s = fields.Integer(validate=validate.Range(1, 86400), strict=True)
    completion_window_s = fields.Integer(load_default=DEFAULT_WINDOW_S, strict=True,
                                         validate=validate.Range(1, MAX_WINDOW_S))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)

    @validates("metadata")
    def small_metadata(self, value, **kwargs):
        """Keep metadata to 4 KiB of JSON."""
        if len(json.dumps(value)) > METADATA_MAX_BYTES:
            raise ValidationError(f"must be at most {METADATA_MAX_BYTES} bytes of JSON")


class BatchQuerySchema(Schema):
    """Validate the query of POST /v1/batches with an NDJSON body: the batch's own fields."""

    class Meta:
        unknown = RAISE

    priority = fields.String(load_default="batch", validate=validate.OneOf(PRIORITIES))
    timeout_s = fields.Integer(validate=validate.Range(1, 86400))
    completion_window_s = fields.Integer(load_default=DEFAULT_WINDOW_S,
                                         validate=validate.Range(1, MAX_WINDOW_S))


class BatchListQuerySchema(Schema):
    """Validate the query of GET /v1/batches."""

    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.Integer(validate=validate.Range(min=0))


class ResultsQuerySchema(Schema):
    """Validate the query of GET /v1/batches/{id}/results."""

    class Meta:
        unknown = RAISE

    cursor = fields.Integer(load_default=0, validate=validate.Range(min=0), metadata={
        "description": "Start at this request index (each line carries its `index`)."})


class CountsSchema(Schema):
    """Shape a batch's request counts by state."""

    total = fields.Integer(required=True)
    queued = fields.Integer(required=True)
    running = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    cancelled = fields.Integer(required=True)
    expired = fields.Integer(required=True)


class BatchSchema(Schema):
    """Shape a batch for the API."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": [
        "queued", "in_progress", "completed", "cancelling", "cancelled", "expired",
        "failed"]})  # failed: made by the OpenAI door from a bad input file, with no jobs
    request_counts = fields.Nested(CountsSchema, required=True)
    models = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    priority = fields.String(required=True)
    metadata = fields.Dict(required=True)
    created_at = Timestamp(required=True)
    started_at = Timestamp(required=True, allow_none=True)
    finished_at = Timestamp(required=True, allow_none=True)
    expires_at = Timestamp(required=True, allow_none=True)
    estimated_seconds_left = fields.Float(required=True, allow_none=True)


class BatchListSchema(Schema):
    """Shape a page of batches."""

    batches = fields.List(fields.Nested(BatchSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
