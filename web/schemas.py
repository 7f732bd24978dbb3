"""Validate request bodies and shape responses with marshmallow."""

from __future__ import annotations

import json

from marshmallow import (INCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate,
                         validates, validates_schema)

from mes.clock import iso
from mes.jobs import PRIORITIES, JobKind, JobStatus
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
    stream = fields.Boolean(load_default=False, metadata={
        "description": "Answer with the job's event stream (text/event-stream) instead."})
    cancel_on_disconnect = fields.Boolean(load_default=False, metadata={
        "description": "With stream: cancel the job if the stream is closed before it ends."})


class EventsQuerySchema(Schema):
    """Validate ?after= on GET /v1/jobs/{id}/events (the Last-Event-ID header wins)."""

    class Meta:
        unknown = RAISE

    after = fields.String(metadata={
        "description": "Resume after this event id; the `Last-Event-ID` header does the same "
                       "and wins when both are given."})
    cancel_on_disconnect = fields.Boolean(load_default=False, metadata={
        "description": "Cancel the job if this stream is closed before the job is final."})


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
        [status.value for status in JobStatus]))
    model = fields.String(validate=validate.Length(1, 200))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.Integer(validate=validate.Range(min=0))
    batch = fields.String(validate=validate.Length(1, 64), metadata={
        "description": "Only this batch's jobs, in request order (the cursor is an index)."})


class Timestamp(fields.Field):
    """Dump epoch seconds as RFC 3339 UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)


# How the computed fields look, for the OpenAPI document (web/openapi.py).
RESULT_DOC = {
    "type": "object",
    "description": "Null until the job succeeds; `json` and `schema_valid` only with `format`.",
    "properties": {
        "text": {"type": "string"},
        "json": {"nullable": True},
        "schema_valid": {"type": "boolean"},
        "format_attempts": {"type": "integer"},
        "done_reason": {"type": "string", "nullable": True},
        "usage": {"type": "object", "properties": {
            "prompt_tokens": {"type": "integer", "nullable": True},
            "completion_tokens": {"type": "integer", "nullable": True}}},
        "timings": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
JOB_ERROR_DOC = {
    "type": "object",
    "description": "Null unless the job failed, was cancelled or expired.",
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}


PROGRESS_DOC = {
    "type": "object", "nullable": True,
    "description": "A pull operation's progress while it runs and after: bytes done and to do "
                   "(summed over layers, null before the first), the last status line and the "
                   "distinct status lines so far. Null for other jobs.",
    "properties": {"status": {"type": "string", "nullable": True},
                   "completed": {"type": "integer", "nullable": True},
                   "total": {"type": "integer", "nullable": True},
                   "lines": {"type": "array", "items": {"type": "string"}},
                   "updated_at": {"type": "string", "format": "date-time"}},
}


class JobSchema(Schema):
    """Shape a job for the API; Celery's state never appears here."""

    id = fields.String(required=True)
    kind = fields.Function(lambda job: job.kind.value, required=True, metadata={
        "type": "string", "enum": [kind.value for kind in JobKind]})
    status = fields.Function(lambda job: job.status.value, required=True, metadata={
        "type": "string", "enum": [status.value for status in JobStatus]})
    model = fields.String(required=True)
    priority = fields.String(required=True, metadata={"enum": list(PRIORITIES)})
    created_at = Timestamp(required=True)
    started_at = Timestamp(required=True, allow_none=True)
    finished_at = Timestamp(required=True, allow_none=True)
    deadline_at = Timestamp(required=True)
    attempts = fields.Integer(required=True)
    queue_position = fields.Method("get_queue_position", required=True, allow_none=True, metadata={
        "type": "integer", "description": "Only while the job is queued; best-effort."})
    result = fields.Method("get_result", required=True, allow_none=True, metadata=RESULT_DOC)
    error = fields.Method("get_error", required=True, allow_none=True, metadata=JOB_ERROR_DOC)
    metadata = fields.Dict(required=True)
    batch_id = fields.String(required=True, allow_none=True, metadata={
        "description": "The batch the job belongs to, or null."})
    custom_id = fields.String(required=True, allow_none=True, metadata={
        "description": "The job's custom_id within its batch, or null."})
    progress = fields.Method("get_progress", allow_none=True, metadata=PROGRESS_DOC)

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

    def get_progress(self, job):
        """Give a pull's progress; other jobs have none."""
        return self.context_progress.get(job.id) if job.kind is JobKind.PULL else None

    def __init__(self, *args, positions: dict[str, int] | None = None,
                 progress: dict[str, dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.context_positions = positions or {}
        self.context_progress = progress or {}


class ModelSchema(Schema):
    """Shape a model's state for GET /v1/models."""

    id = fields.String(required=True)
    family = fields.String(required=True)
    queue = fields.String(required=True)
    loaded = fields.Boolean(required=True, allow_none=True,
                            metadata={"description": "null when the backend cannot be asked"})
    available_on_backend = fields.Boolean(required=True, allow_none=True, metadata={
        "description": "whether the backend has the model (its /api/tags); null when it "
                       "cannot be asked. `POST /v1/models/{id}/pull` fetches a missing one."})
    max_concurrency = fields.Integer(required=True)
    running = fields.Integer(required=True)
    queued = fields.Integer(required=True)
    json_mode = fields.String(required=True)
    keep_alive = fields.String(required=True)
    warmup = fields.String(required=True, allow_none=True)
    last_used_at = Timestamp(required=True, allow_none=True)


class ModelListSchema(Schema):
    """Shape GET /v1/models."""

    models = fields.List(fields.Nested(ModelSchema), required=True)


class JobListSchema(Schema):
    """Shape GET /v1/jobs: one page of the caller's jobs, newest first."""

    jobs = fields.List(fields.Nested(JobSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class ErrorDetailSchema(Schema):
    """Describe one error: a stable code, words for people, and details."""

    code = fields.String(required=True, metadata={"pattern": "^[a-z_]+$"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(Schema):
    """Shape every error the API answers with."""

    error = fields.Nested(ErrorDetailSchema, required=True)


class HealthSchema(Schema):
    """Describe GET /health."""

    status = fields.String(required=True, metadata={"enum": ["ok"]})


class ReadySchema(Schema):
    """Describe GET /ready: each part's state, live workers per family, and the verdict."""

    class Meta:
        unknown = INCLUDE

    ready = fields.Boolean(required=True)
    redis = fields.String(required=True, metadata={"description": '"ok" or "down: <why>"'})
    backend = fields.String(required=True, metadata={"description": '"ok", "down: ..." or "degraded: ..."'})
    backend_version = fields.String()
    workers = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    breaker = fields.Dict()
    missing_models = fields.List(fields.String(), allow_none=True, metadata={
        "description": "the registry's models the backend lacks (null when it cannot tell); "
                       "reported, never a reason to be unready"})


class StatusSchema(Schema):
    """Describe GET /v1/status; a part that cannot be read says so in place of its figures."""

    class Meta:
        unknown = INCLUDE

    redis = fields.String(required=True)
    backend = fields.Dict(required=True, metadata={"description": "status and version"})
    queues = fields.Dict(required=True, metadata={"description": "per queue: depth, lanes, workers"})
    workers = fields.Dict(required=True)
    models = fields.Dict(required=True)
    loaded_models = fields.List(fields.Dict(), required=True, allow_none=True)
    missing_models = fields.List(fields.String(), required=True, allow_none=True, metadata={
        "description": "the registry's models the backend lacks; null when it cannot tell"})
    breaker = fields.Dict(required=True)
    counters = fields.Dict(required=True)
    batches = fields.Dict(required=True, metadata={
        "description": "batches in progress and their jobs by state"})
    scheduling = fields.Dict(required=True, metadata={
        "description": "swap-aware scheduling per backend: grants, loaded models, loads, "
                       "swaps avoided; {enabled: false} when off"})
