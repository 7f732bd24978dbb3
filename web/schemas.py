"""Validate request bodies and shape responses with marshmallow."""

from __future__ import annotations

import json

from marshmallow import (RAISE, Schema, ValidationError, fields, pre_load, validate,
                         validates, validates_schema)

from mes.clock import iso
from mes.jobs import PRIORITIES
from mes.registry import RUNNER_OPTIONS

METADATA_MAX_BYTES = 4096


class MessageSchema(Schema):
    """Validate one chat message."""

    class Meta:
        unknown = RAISE

    role = fields.String(required=True,
                         validate=validate.OneOf(["system", "user", "assistant", "tool"]))
    content = fields.String(required=True)


class OptionsSchema(Schema):
    """Validate the sampling options a job may set."""

    class Meta:
        unknown = RAISE

    temperature = fields.Float(validate=validate.Range(0, 2))
    top_p = fields.Float(validate=validate.Range(0, 1))
    top_k = fields.Integer(validate=validate.Range(1, 1000), strict=True)
    seed = fields.Integer(strict=True)
    max_tokens = fields.Integer(validate=validate.Range(1, 1_000_000), strict=True)
    stop = fields.List(fields.String(validate=validate.Length(1, 200)),
                       validate=validate.Length(max=16))

    @pre_load
    def refuse_runner_options(self, data, **kwargs):
        """Say why a runner option is refused, rather than just 'unknown field'."""
        if isinstance(data, dict):
            fixed = sorted(set(data) & RUNNER_OPTIONS)
            if fixed:
                raise ValidationError({key: ["is fixed per model in its configuration"]
                                       for key in fixed})
        return data


class JobRequestSchema(Schema):
    """Validate the body of POST /v1/jobs."""

    class Meta:
        unknown = RAISE

    model = fields.String(required=True, validate=validate.Length(1, 200))
    prompt = fields.String(validate=validate.Length(min=1))
    messages = fields.List(fields.Nested(MessageSchema), validate=validate.Length(1, 1000))
    system = fields.String()
    options = fields.Nested(OptionsSchema)
    format = fields.Raw()
    priority = fields.String(load_default="interactive", validate=validate.OneOf(PRIORITIES))
    timeout_s = fields.Integer(validate=validate.Range(1, 86400), strict=True)
    metadata = fields.Dict(keys=fields.String())

    @validates("metadata")
    def small_metadata(self, value, **kwargs):
        """Keep metadata to 4 KiB of JSON."""
        if len(json.dumps(value)) > METADATA_MAX_BYTES:
            raise ValidationError(f"must be at most {METADATA_MAX_BYTES} bytes of JSON")

    @validates_schema
    def prompt_or_messages(self, data, **kwargs):
        """Require exactly one of prompt and messages."""
        if ("prompt" in data) == ("messages" in data):
            raise ValidationError("give exactly one of prompt and messages", "prompt")


class InferenceRequestSchema(JobRequestSchema):
    """Validate the body of POST /v1/inference."""

    wait_s = fields.Integer(validate=validate.Range(0, 300), strict=True)


class WaitQuerySchema(Schema):
    """Validate ?wait= on GET /v1/jobs/{id}."""

    class Meta:
        unknown = RAISE

    wait = fields.Float(load_default=0, validate=validate.Range(0, 60))


class ListQuerySchema(Schema):
    """Validate the query of GET /v1/jobs."""

    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(
        ["queued", "running", "succeeded", "failed", "cancelled", "expired"]))
    model = fields.String(validate=validate.Length(1, 200))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.Integer(validate=validate.Range(min=0))


class Timestamp(fields.Field):
    """Dump epoch seconds as RFC 3339 UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)


class JobSchema(Schema):
    """Shape a job for the API; Celery's state never appears here."""

    id = fields.String()
    kind = fields.Function(lambda job: job.kind.value)
    status = fields.Function(lambda job: job.status.value)
    model = fields.String()
    priority = fields.String()
    created_at = Timestamp()
    started_at = Timestamp()
    finished_at = Timestamp()
    deadline_at = Timestamp()
    attempts = fields.Integer()
    queue_position = fields.Method("get_queue_position")
    result = fields.Method("get_result")
    error = fields.Method("get_error")
    metadata = fields.Dict()

    def get_queue_position(self, job):
        """Give the position only while queued."""
        return self.context_positions.get(job.id) if job.status.value == "queued" else None

    def get_result(self, job):
        """Give the result only once the job succeeded."""
        return job.result if job.status.value == "succeeded" else None

    def get_error(self, job):
        """Give the error unless the job succeeded or is still on its way."""
        if job.status.value in ("succeeded", "queued", "running"):
            return None
        return job.error

    def __init__(self, *args, positions: dict[str, int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.context_positions = positions or {}


class ModelSchema(Schema):
    """Shape a model's state for GET /v1/models."""

    id = fields.String()
    family = fields.String()
    queue = fields.String()
    loaded = fields.Boolean(allow_none=True)
    max_concurrency = fields.Integer()
    running = fields.Integer()
    queued = fields.Integer()
    json_mode = fields.String()
    keep_alive = fields.String()
    warmup = fields.String(allow_none=True)
    last_used_at = Timestamp()
