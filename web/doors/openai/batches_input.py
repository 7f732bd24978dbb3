"""Read an OpenAI batch input file: one request a line, each checked as the door checks it.

A line is `{"custom_id", "method": "POST", "url": <the batch's endpoint>, "body": {...}}`, the
body being what POST /openai/v1<url> takes (vLLM's run_batch reads the same lines). Each body
is loaded by the door's own schema and translated by translate.py into a job request, then
put to the same limits as a single request. Every bad line is named with OpenAI's error
fields (`code`, `message`, `param`, `line` counted from 1): such a file makes a failed batch,
not a refusal, as OpenAI does.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError

from mes.errors import InvalidRequest, MESError
from mes.intake.batches import MAX_LINE_ERRORS, BatchRequest
from mes.intake.submit import request_timeout
from mes.jobs import JobKind
from mes.registry import ModelRegistry
from mes.settings import Settings
from web.doors.openai import protocol, translate
from web.doors.openai.errors import describe
from web.limits import check_job_request

# What each endpoint's lines hold: the door's schema, its translation and the job's kind.
ROUTES = {
    "/v1/chat/completions": (protocol.ChatCompletionRequest, translate.chat_request,
                             JobKind.INFERENCE),
    "/v1/completions": (protocol.CompletionRequest, translate.completion_request,
                        JobKind.INFERENCE),
    "/v1/embeddings": (protocol.EmbeddingRequest, translate.embedding_request, JobKind.EMBED),
}
LINE_FIELDS = ("custom_id", "method", "url", "body")
MAX_CUSTOM_ID = 256
# Lines checked between two turns for the process's other requests: a line costs about a
# quarter of a millisecond, and under gevent time.sleep(0) lets the other greenlets run.
YIELD_EVERY = 100


class BadLine(Exception):
    """Say why one line cannot be a request, in OpenAI's terms."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(code, message, param)
        self.code, self.message, self.param = code, message, param


@dataclass
class CheckedFile:
    """Hold what an input file gave: its requests, or why it cannot run."""

    lines: list[BatchRequest] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # OpenAI's, the first 50
    base64: list[int] = field(default_factory=list)  # embedding requests that want base64


def error(code: str, message: str, param: str | None = None,
          line: int | None = None) -> dict[str, Any]:
    """Return one of a failed batch's errors."""
    return {"code": code, "message": message, "param": param, "line": line}


def _body_error(exc: MESError) -> BadLine:
    message, param, code = describe(exc)
    return BadLine(translate.DOOR_CODE.get(code, code), message,
                   f"body.{param}" if param else "body")


def read_line(text: str, endpoint: str, *, registry: ModelRegistry, settings: Settings,
              schema: Schema | None = None) -> tuple[BatchRequest, str]:
    """Check one line and return its request and its embeddings' encoding, or raise BadLine.

    `schema` is the endpoint's schema, made once per file (making one costs more than a load).
    """
    try:
        raw = json.loads(text)
    except ValueError:
        raise BadLine("invalid_json_line", "this line is not valid JSON") from None
    if not isinstance(raw, dict):
        raise BadLine("invalid_json_line", "a line must be a JSON object")
    unknown = sorted(set(raw) - set(LINE_FIELDS))
    if unknown:
        raise BadLine("invalid_request", f"Unrecognized field: {unknown[0]}", unknown[0])
    custom_id = raw.get("custom_id")
    if not isinstance(custom_id, str) or not 0 < len(custom_id) <= MAX_CUSTOM_ID:
        raise BadLine("invalid_request", f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} "
                      "characters", "custom_id")
    if raw.get("method") != "POST":
        raise BadLine("invalid_method", "method must be 'POST'", "method")
    if raw.get("url") != endpoint:
        raise BadLine("invalid_url", f"url must be the batch's endpoint, {endpoint!r}", "url")
    body = raw.get("body")
    if not isinstance(body, dict):
        raise BadLine("invalid_request", "body must be a JSON object", "body")
    make_schema, to_job_request, kind = ROUTES[endpoint]
    try:
        wire = (schema or make_schema()).load(body)
        if wire.get("stream"):
            raise BadLine("unsupported_parameter", "'stream' is not supported in a batch: each "
                          "request's answer is one line of the output file", "body.stream")
        job_body = to_job_request(wire)  # each request's run gets its model's timeout_s
        check_job_request(job_body, registry=registry, settings=settings)
        request_timeout(job_body, registry.get(job_body["model"]),
                        settings.task_soft_time_limit_s)
    except ValidationError as exc:
        raise _body_error(InvalidRequest("invalid body",
                                         {"fields": exc.normalized_messages()})) from None
    except MESError as exc:
        raise _body_error(exc) from None
    return BatchRequest(custom_id, job_body, kind), wire.get("encoding_format") or "float"


def read_file(text: str, endpoint: str, *, registry: ModelRegistry,
              settings: Settings) -> CheckedFile:
    """Check every line of an input file; a file with any bad line has errors and no lines."""
    # Not splitlines(): JSON text may hold U+2028 as it is. A byte order mark is no request.
    lines = text.removeprefix("\ufeff").split("\n")
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        return CheckedFile(errors=[error("empty_file", "the input file holds no requests")])
    if len(numbered) > settings.max_batch_requests:
        return CheckedFile(errors=[error(
            "too_many_lines", f"the input file holds {len(numbered)} requests; the limit is "
            f"{settings.max_batch_requests} (MES_MAX_BATCH_REQUESTS)")])
    checked = CheckedFile()
    schema = ROUTES[endpoint][0]()
    invalid = 0
    seen: dict[str, int] = {}
    for count, (number, line) in enumerate(numbered, start=1):
        if count % YIELD_EVERY == 0:
            time.sleep(0)
        try:
            request, encoding = read_line(line.rstrip("\r"), endpoint, registry=registry,
                                          settings=settings, schema=schema)
            if request.custom_id in seen:
                raise BadLine("duplicate_custom_id", f"custom_id {request.custom_id!r} is used "
                              f"by line {seen[request.custom_id]} too", "custom_id")
            seen[request.custom_id] = number
        except BadLine as bad:
            invalid += 1
            if invalid <= MAX_LINE_ERRORS:
                checked.errors.append(error(bad.code, bad.message, bad.param, number))
            continue
        if encoding == "base64":
            checked.base64.append(len(checked.lines))
        checked.lines.append(request)
    if invalid > MAX_LINE_ERRORS:
        checked.errors.append(error("too_many_errors", f"{invalid} of the file's "
                                    f"{len(numbered)} lines are invalid; the first "
                                    f"{MAX_LINE_ERRORS} are listed"))
    if invalid:
        checked.lines, checked.base64 = [], []
    return checked
