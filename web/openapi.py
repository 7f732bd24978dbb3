"""Build the OpenAPI document from the marshmallow schemas and serve it with Swagger UI.

Every route of the app must have an entry in OPERATIONS (building the document fails
otherwise). Paths and methods come from the app's URL map, summaries from the views'
docstrings and scopes from `web.auth.require`, so the document follows the code; statuses
and schemas come from the table below, and tests check them against API.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin, resolver
from flask import Blueprint, Flask, current_app, render_template_string
from marshmallow import Schema
from swagger_ui_bundle import swagger_ui_path

from web import batch_schemas, schemas
from web.doors.ollama import protocol as ollama_protocol
from web.doors.openai import answers as openai_answers, protocol as openai_protocol
from web.doors.openai import batches as openai_batches, files as openai_files

OPENAPI_VERSION = "3.0.3"  # what the bundled Swagger UI 4 renders
API_VERSION = "1.0.0"

# Every error code, by status, as API.md's table gives them.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: ("invalid_request", "unknown_model", "invalid_schema"),
    401: ("unauthorized",),
    403: ("forbidden",),
    404: ("not_found",),
    409: ("conflict",),
    413: ("payload_too_large",),
    422: ("idempotency_mismatch",),
    429: ("rate_limited", "queue_full"),
    503: ("backend_unavailable",),
}
ERROR_WORDS = {
    400: "The body or query fails validation (`details.fields`), the model is not in the "
         "registry, or `format` is not a valid JSON Schema.",
    401: "The key is missing, malformed, unknown or revoked.",
    403: "The key lacks the scope.",
    404: "No such job, or it belongs to another key (never told apart).",
    409: "The state forbids the action.",
    413: "The body or prompt is over the configured limit.",
    422: "An Idempotency-Key is reused with a different body.",
    429: "The key is over its rate (`rate_limited`) or the model's queue is full "
         "(`queue_full`). Retry after `Retry-After` seconds.",
    503: "The job could not be queued.",
}
V1_ERRORS = (401, 429)  # any /v1 route: no valid key, or over its rate
# The compatible doors (web/doors): their routes need a key as /v1's do, and each answers
# errors in its own shape, named here by its route prefix: (component name, JSON Schema).
DOOR_ERRORS: dict[str, tuple[str, dict | type[Schema]]] = {
    "/ollama/": ("OllamaError", {"type": "object", "required": ["error"],
                                 "properties": {"error": {"type": "string"}}}),
    "/openai/v1/": ("OpenAIError", openai_answers.Error),
}
# Statuses only a door answers with: the OpenAI door's wait that ran out before the job ended.
DOOR_ONLY_ERRORS = {504: "The job is not final when the wait runs out (`wait_timeout`); it "
                         "goes on, and `X-MES-Job-ID` names it."}
# Component names of the doors' marshmallow schemas, by module: OpenAI's Model is not MES's.
DOOR_SCHEMA_PREFIX = {"web.doors.openai": "OpenAI", "web.doors.ollama": "Ollama"}


def schema_name(schema) -> str:
    """Name a schema's component; a door's schemas carry the door's prefix."""
    cls = schema if isinstance(schema, type) else type(schema)
    prefix = next((name for module, name in DOOR_SCHEMA_PREFIX.items()
                   if cls.__module__.startswith(module + ".")), "")
    return prefix + resolver(schema)


def door_error(path: str) -> str | None:
    """Return the error component of the door a path belongs to, None outside the doors."""
    return next((name for prefix, (name, _) in DOOR_ERRORS.items() if path.startswith(prefix)),
                None)


@dataclass(frozen=True)
class Operation:
    """Describe one route's answers beyond what the code itself says."""

    success: dict[int, tuple[str, Any]]  # status -> (description, schema class or content)
    errors: tuple[int, ...] = ()
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    idempotent: bool = False
    location: tuple[int, ...] = ()  # statuses answered with a Location header
    path_words: dict[str, str] = field(default_factory=dict)
    makes_job: bool = False  # answers carry a job id that GET/DELETE /v1/jobs/{job_id} take
    example: dict[str, Any] | None = None  # the request body's example; "model" is filled in
    model_in_example: bool = True  # False: the body names no model
    form: dict[str, Any] | None = None  # a multipart/form-data body's schema


JOB_PATH = {"job_id": "The job's id, as `POST /v1/jobs` gave it."}
MODEL_PATH = {"model_id": "The model's id; it may contain `:` and `/`."}
CHAT_EXAMPLE = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
TEXT = {"text/plain": {"schema": {"type": "string"}}}
HTML = {"text/html": {"schema": {"type": "string"}}}
ANY_JSON = {"application/json": {"schema": {"type": "object"}}}
# Each event of a stream, as a client (and schemathesis) reads it: its id, type and data.
SSE = {"text/event-stream": {"schema": {"type": "object", "properties": {
    "id": {"type": "string"}, "event": {"type": "string"}, "data": {"type": "string"}}}}}
OLLAMA_COMPLETION = {"application/x-ndjson": {"schema": {"type": "string"}},
                     "application/json": {"schema": {"type": "object"}}}
NDJSON = {"application/x-ndjson": {"schema": {"type": "string"}}}
BATCH_PATH = {"batch_id": "The batch's id, as `POST /v1/batches` gave it."}
FILE_PATH = {"file_id": "An uploaded file's id, or a batch's `output_file_id` or "
                        "`error_file_id`."}
OPENAI_BATCH_PATH = {"batch_id": "The batch's id, as `POST /openai/v1/batches` gave it."}
UPLOAD = {"type": "object", "required": ["file", "purpose"], "properties": {
    "file": {"type": "string", "format": "binary", "description": "JSONL, UTF-8."},
    "purpose": {"type": "string", "enum": ["batch"]},
    "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
    "expires_after[seconds]": {"type": "integer", "minimum": 3600}}}
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

OPERATIONS: dict[str, Operation] = {
    "service.health": Operation({200: ("Alive.", schemas.HealthSchema)}),
    "service.ready": Operation({200: ("Ready to serve.", schemas.ReadySchema),
                                503: ("Not ready: the report says which part is down.",
                                      schemas.ReadySchema)}),
    "service.metrics": Operation({200: ("Prometheus text format.", TEXT)}, errors=(401,)),
    "openapi.document": Operation({200: ("This document.", ANY_JSON)}),
    "openapi.docs": Operation({200: ("A page that renders this document.", HTML)}),
    "jobs.create_job": Operation(
        {202: ("The job, queued.", schemas.JobSchema),
         200: ("The job first made with this Idempotency-Key and body.", schemas.JobSchema)},
        errors=(400, 403, 413, 422, 503), body=schemas.JobRequestSchema, idempotent=True,
        location=(200, 202), makes_job=True),
    "jobs.list_jobs": Operation({200: ("The caller's jobs, newest first.", schemas.JobListSchema)},
                                errors=(400, 403, 404), query=schemas.ListQuerySchema),
    "jobs.get_job": Operation({200: ("The job.", schemas.JobSchema)}, errors=(400, 403, 404),
                              query=schemas.WaitQuerySchema, location=(200,),
                              path_words=JOB_PATH),
    "jobs.delete_job": Operation({200: ("The cancelled job.", schemas.JobSchema)},
                                 errors=(403, 404, 409), location=(200,), path_words=JOB_PATH),
    "jobs.inference": Operation(
        {200: ("The job, final (whatever its status); with `\"stream\": true`, its event "
               "stream (text/event-stream) as `GET /v1/jobs/{job_id}/events` gives it.",
               schemas.JobSchema),
         202: ("`wait_s` ran out first: the job as it stands; poll `Location`.",
               schemas.JobSchema)},
        errors=(400, 403, 413, 422, 503), body=schemas.InferenceRequestSchema, idempotent=True,
        location=(200, 202), makes_job=True),
    "events.job_events": Operation(
        {200: ("The job's events as Server-Sent Events: `status`, `token` (`{\"text\"}`), "
               "`restart` (drop the text so far) and a last `done` whose data is the final "
               "job. Each has a stable `id:`; `: ping` comments keep an idle stream open.",
               SSE)},
        errors=(400, 403, 404), query=schemas.EventsQuerySchema, path_words=JOB_PATH),
    "models.list_models": Operation({200: ("Every model with its live state.",
                                           schemas.ModelListSchema)}),
    "models.get_model": Operation({200: ("The model.", schemas.ModelSchema)}, errors=(400,),
                                  path_words=MODEL_PATH),
    "models.load_model": Operation({202: ("The load operation, shaped like a job.",
                                          schemas.JobSchema)},
                                   errors=(400, 403, 503), location=(202,), path_words=MODEL_PATH,
                                   makes_job=True),
    "models.unload_model": Operation({202: ("The unload operation, shaped like a job.",
                                            schemas.JobSchema)},
                                     errors=(400, 403, 503), location=(202,),
                                     path_words=MODEL_PATH, makes_job=True),
    "models.pull_model": Operation({202: ("The pull operation, shaped like a job; its "
                                          "`progress` follows the download.",
                                          schemas.JobSchema)},
                                   errors=(400, 403, 503), location=(202,), path_words=MODEL_PATH,
                                   makes_job=True),
    "ollama.generate": Operation(
        {200: ("Ollama's answer: NDJSON chunks `{\"model\", \"created_at\", \"response\", "
               "\"done\": false}` then a last one with `done: true`, `done_reason` and the "
               "statistics; with `\"stream\": false` one JSON object. No prompt: the load "
               "(or, with `keep_alive: 0`, unload) answer.", OLLAMA_COMPLETION)},
        errors=(400, 403, 404, 413, 422, 503), body=ollama_protocol.GenerateSchema,
        idempotent=True, makes_job=True),
    "ollama.chat": Operation(
        {200: ("As for generate, with `message: {\"role\": \"assistant\", \"content\"}` in "
               "place of `response`; no messages loads or unloads.", OLLAMA_COMPLETION)},
        errors=(400, 403, 404, 413, 422, 503), body=ollama_protocol.ChatSchema,
        idempotent=True, makes_job=True),
    "ollama.embed": Operation(
        {200: ("`{\"model\", \"embeddings\", \"total_duration\", \"load_duration\", "
               "\"prompt_eval_count\"}`.", ANY_JSON)},
        errors=(400, 403, 404, 413, 422, 503), body=ollama_protocol.EmbedSchema,
        idempotent=True, makes_job=True),
    "ollama.tags": Operation({200: ("`{\"models\": [...]}`: every registry model.", ANY_JSON)}),
    "ollama.show": Operation({200: ("One registry model's details and fixed options.",
                                    ANY_JSON)}, errors=(400, 404), body=ollama_protocol.ShowSchema),
    "ollama.ps": Operation({200: ("`{\"models\": [...]}`: what the backend has loaded.",
                                  ANY_JSON)}, errors=(503,)),
    "ollama.version": Operation({200: ("`{\"version\"}`: the backend's version.", ANY_JSON)}),
    "status.status": Operation({200: ("Queues, workers, models, backend and counters.",
                                      schemas.StatusSchema)}, errors=(403,)),
    "openai.chat_completions": Operation(
        {200: ("A `chat.completion`; with `\"stream\": true`, `chat.completion.chunk`s as "
               "Server-Sent Events ending with `data: [DONE]`.",
               {"application/json": {"schema": openai_answers.ChatCompletion}, **SSE})},
        errors=(400, 403, 404, 422, 503, 504), body=openai_protocol.ChatCompletionRequest,
        idempotent=True, example=CHAT_EXAMPLE),
    "openai.completions": Operation(
        {200: ("A `text_completion`; with `\"stream\": true`, its chunks as Server-Sent "
               "Events ending with `data: [DONE]`.",
               {"application/json": {"schema": openai_answers.TextCompletion}, **SSE})},
        errors=(400, 403, 404, 422, 503, 504), body=openai_protocol.CompletionRequest,
        idempotent=True),
    "openai.embeddings": Operation(
        {200: ("The vectors, one per input.", openai_answers.EmbeddingList)},
        errors=(400, 403, 404, 422, 503, 504), body=openai_protocol.EmbeddingRequest,
        idempotent=True, example={"input": ["The capital of France is Paris."]}),
    "openai.list_models": Operation({200: ("The registry's models.", openai_answers.ModelList)}),
    "openai.get_model": Operation({200: ("The model.", openai_answers.Model)},
                                  path_words=MODEL_PATH),
    "openai_files.create_file": Operation(
        {200: ("The File object; the file is kept in Redis until `expires_at`.",
               openai_files.FileObject)},
        errors=(400, 403), form=UPLOAD),
    "openai_files.list_files": Operation(
        {200: ("The caller's uploaded files, newest first.", openai_files.FilePage)},
        errors=(400, 403), query=openai_files.FileListQuery),
    "openai_files.get_file": Operation(
        {200: ("The File object: an upload, or a batch's output or error file.",
               openai_files.FileObject)}, errors=(403,), path_words=FILE_PATH),
    "openai_files.file_content": Operation(
        {200: ("The file as uploaded; a batch's output or error file is JSONL built from "
               "its jobs, one `{\"id\", \"custom_id\", \"response\", \"error\"}` a line.",
               BINARY)}, errors=(403,), path_words=FILE_PATH),
    "openai_files.delete_file": Operation(
        {200: ("Deleted; `deleted: false` for a batch's output, which goes with its batch.",
               openai_files.FileDeleted)}, errors=(403,), path_words=FILE_PATH),
    "openai_batches.create_batch": Operation(
        {200: ("The batch: `in_progress`, or `failed` with `errors` when lines of its input "
               "file are bad (nothing is queued then).", openai_batches.Batch)},
        errors=(400, 403, 404), body=openai_batches.BatchCreateRequest, model_in_example=False,
        example={"input_file_id": "file_01JD...", "endpoint": "/v1/chat/completions",
                 "completion_window": "24h"}),
    "openai_batches.list_batches": Operation(
        {200: ("The caller's batches made through this door, newest first.",
               openai_batches.BatchPage)},
        errors=(400, 403, 404), query=openai_batches.BatchListQuery),
    "openai_batches.get_batch": Operation({200: ("The batch.", openai_batches.Batch)},
                                          errors=(403,), path_words=OPENAI_BATCH_PATH),
    "openai_batches.cancel": Operation(
        {200: ("The batch, `cancelling` until its running requests stop, then `cancelled`.",
               openai_batches.Batch)}, errors=(403, 409), path_words=OPENAI_BATCH_PATH),
    "batches.create_batch": Operation(
        {202: ("The batch, accepted whole; its jobs are queued.", batch_schemas.BatchSchema)},
        errors=(400, 403, 413, 503), body=batch_schemas.BatchSubmitSchema,
        query=batch_schemas.BatchQuerySchema, location=(202,)),
    "batches.list_batches": Operation(
        {200: ("The caller's batches, newest first.", batch_schemas.BatchListSchema)},
        errors=(400, 403), query=batch_schemas.BatchListQuerySchema),
    "batches.get_batch": Operation({200: ("The batch.", batch_schemas.BatchSchema)},
                                   errors=(403, 404), location=(200,), path_words=BATCH_PATH),
    "batches.delete_batch": Operation(
        {200: ("The batch, cancelling: every job not yet final is cancelled.",
               batch_schemas.BatchSchema)},
        errors=(403, 404, 409), location=(200,), path_words=BATCH_PATH),
    "batches.batch_results": Operation(
        {200: ("The batch's final jobs as JSONL, in request order: one "
               "`{\"index\", \"custom_id\", \"job\"}` a line, stopping at the first job "
               "not final yet.", NDJSON)},
        errors=(400, 403, 404), query=batch_schemas.ResultsQuerySchema, path_words=BATCH_PATH),
}

_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
bp = Blueprint("openapi", __name__, static_folder=str(swagger_ui_path),
               static_url_path="/docs/static")


def _content(schema: Any) -> dict:
    if isinstance(schema, dict):
        return schema
    return {"application/json": {"schema": schema}}


def _error_response(status: int) -> dict:
    codes = ERROR_CODES[status]
    response = {
        "description": f"{ERROR_WORDS[status]} Codes: {', '.join(codes)}.",
        "content": {"application/json": {"schema": {"allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string", "enum": list(codes)}}}}}]}}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _door_error_response(name: str, status: int) -> dict:
    schema = {"$ref": f"#/components/schemas/{name}"}
    words = ERROR_WORDS.get(status) or DOOR_ONLY_ERRORS[status]
    response = {"description": f"{words} In the door's own error shape.",
                "content": {"application/json": {"schema": schema}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


# OpenAPI links: a job's id leads to reading and cancelling it (clients and fuzzers follow them).
JOB_LINKS = {
    "GetJob": {"operationId": "jobs_get_job", "parameters": {"job_id": "$response.body#/id"}},
    "CancelJob": {"operationId": "jobs_delete_job", "parameters": {"job_id": "$response.body#/id"}},
}


def _operation(rule, method: str, view, doc: Operation, example_model: str) -> dict:
    lines = (view.__doc__ or "").strip().splitlines()
    scopes = getattr(view, "required_scopes", False)
    op: dict[str, Any] = {"operationId": rule.endpoint.replace(".", "_"),
                          "summary": lines[0] if lines else rule.endpoint,
                          "tags": [rule.endpoint.split(".")[0]], "responses": {}}
    door = door_error(rule.rule)
    keyed = rule.rule.startswith("/v1/") or door is not None
    if keyed:
        op["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
        op["description"] = ("Any valid key." if scopes is None else
                             "Needs the " + " or ".join(f"`{s}`" for s in scopes) +
                             " scope (`admin` may do everything).")
    elif rule.endpoint == "service.metrics":
        op["security"] = [{}, {"metricsToken": []}]
        op["description"] = "With MES_METRICS_TOKEN set, send it as a bearer token."
    else:
        op["security"] = []
    params = [{"in": "path", "name": name, "required": True, "schema": {"type": "string"},
               "description": doc.path_words.get(name, "")}
              for name in _PARAM.findall(rule.rule)]
    for param in params:
        if param["name"] == "model_id":
            param["example"] = example_model
    if doc.query is not None:
        params.append({"in": "query", "schema": doc.query})
    if doc.idempotent:
        params.append({"in": "header", "name": "Idempotency-Key", "required": False,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                       "description": "Replaying the same key with the same body answers 200 "
                                      "with the first job."})
    if params:
        op["parameters"] = params
    if doc.body is not None:
        example = doc.example or {"prompt": "What is the capital of France?"}
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": doc.body,
            "example": {"model": example_model, **example} if doc.model_in_example
            else example}}}
    if doc.form is not None:
        op["requestBody"] = {"required": True,
                             "content": {"multipart/form-data": {"schema": doc.form}}}
    for status, (words, schema) in sorted(doc.success.items()):
        response = {"description": words, "content": _content(schema)}
        if status in doc.location:
            response["headers"] = {"Location": {"$ref": "#/components/headers/Location"}}
        if doc.makes_job:
            response["links"] = JOB_LINKS
        op["responses"][str(status)] = response
    errors = set(doc.errors) | (set(V1_ERRORS) if keyed else set())
    if _PARAM.search(rule.rule):
        # A path parameter that cannot be part of a URL path (a newline, say) matches no
        # route at all, and the router answers 404 not_found.
        errors.add(404)
    for status in sorted(errors):
        ref = f"#/components/responses/{door or 'Error'}{status}"
        op["responses"][str(status)] = {"$ref": ref}
    return op


def build_spec(app: Flask) -> dict:
    """Return the OpenAPI document of every route the app serves."""
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(title="MES: Model Execution Service", version=API_VERSION,
                   openapi_version=OPENAPI_VERSION, plugins=[plugin],
                   info={"description": "Queue-driven LLM inference. Errors all have one shape: "
                                        "`{\"error\": {\"code\", \"message\", \"details\"}}`."})
    plugin.map_to_openapi_type(schemas.Timestamp, "string", "date-time")
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer",
                                                   "description": "Authorization: Bearer <key>"})
    spec.components.security_scheme("apiKeyHeader", {"type": "apiKey", "in": "header",
                                                     "name": "X-API-Key"})
    spec.components.security_scheme("metricsToken", {"type": "http", "scheme": "bearer",
                                                     "description": "MES_METRICS_TOKEN"})
    spec.components.schema("Error", schema=schemas.ErrorSchema)
    spec.components.header("Location", {"description": "The job's URL.",
                                        "schema": {"type": "string"}, "required": True})
    spec.components.header("RetryAfter", {"description": "Seconds to wait before trying again.",
                                          "schema": {"type": "integer", "minimum": 1},
                                          "required": True})
    for status in ERROR_CODES:
        spec.components.response(f"Error{status}", _error_response(status))
    for name, schema in DOOR_ERRORS.values():
        if isinstance(schema, dict):
            spec.components.schema(name, schema)
        else:
            spec.components.schema(name, schema=schema)
        for status in (*ERROR_CODES, *DOOR_ONLY_ERRORS):
            spec.components.response(f"{name}{status}", _door_error_response(name, status))
    paths: dict[str, dict[str, dict]] = {}
    example_model = app.extensions["mes"].services.registry.models[0].id
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in ("static", "openapi.static"):
            continue
        path = _PARAM.sub(r"{\1}", rule.rule)
        view = app.view_functions[rule.endpoint]
        doc = OPERATIONS[rule.endpoint]  # a KeyError here: a new route needs its entry
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, method, view, doc,
                                                                    example_model)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    for name in ("JobRequest", "InferenceRequest"):
        # What the schema's validates_schema says in code: exactly one of prompt and messages.
        document["components"]["schemas"][name]["oneOf"] = [{"required": ["prompt"]},
                                                            {"required": ["messages"]}]
    return document


@bp.get("/openapi.json")
def document():
    """Return the OpenAPI document."""
    cache = current_app.extensions.setdefault("mes_openapi", {})
    if "spec" not in cache:
        cache["spec"] = build_spec(current_app)
    return cache["spec"]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MES API</title>
<link rel="stylesheet" href="{{ static }}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{{ static }}/swagger-ui-bundle.js"></script>
<script>
window.onload = function () {
  window.ui = SwaggerUIBundle({url: "{{ spec_url }}", dom_id: "#swagger-ui", deepLinking: true});
};
</script></body></html>
"""


@bp.get("/docs")
def docs():
    """Render the OpenAPI document with Swagger UI, served from the package: no CDN."""
    return render_template_string(_PAGE, static="/docs/static", spec_url="/openapi.json")


def init_app(app: Flask) -> None:
    """Serve /openapi.json, /docs and Swagger UI's files."""
    app.register_blueprint(bp)
