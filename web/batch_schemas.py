"""Validate batch requests and shape batches for the API (the native /v1/batches)."""

from __future__ import annotations

import json

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from mes.jobs import PRIORITIES
from web.schemas import METADATA_MAX_BYTES, JobRequestSchema, Timestamp


class BatchLineSchema(JobRequestSchema):
    """Validate one request of a batch: a job body plus its custom_id."""

    custom_id = fields.String(required=True, validate=validate.Length(1, 256))


class BatchSubmitSchema(Schema):
    """Validate the JSON body of POST /v1/batches (its requests are checked line by line)."""

    class Meta:
        unknown = RAISE

    requests = fields.List(fields.Raw(), required=True)
    priority = fields.String(load_default="batch", validate=validate.OneOf(PRIORITIES))
    timeout_s = fields.Integer(validate=validate.Range(1, 86400), strict=True)
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
    estimated_seconds_left = fields.Float(required=True, allow_none=True)


class BatchListSchema(Schema):
    """Shape a page of batches."""

    batches = fields.List(fields.Nested(BatchSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)
