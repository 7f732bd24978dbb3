"""Answer errors under /ollama/ as Ollama does: `{"error": "<message>"}` with its statuses.

Ollama's clients raise ResponseError(message, status_code) for any such answer. The statuses
are MES's own (web/errors.py has already made every exception a MESError), except that a
model MES does not know, or the backend lacks, is Ollama's `404 model '<name>' not found`.
429 keeps its Retry-After header and 401 its WWW-Authenticate.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from mes.errors import (
    ConfigError,
    MESError,
    ModelNotFound,
    RateLimited,
    Unauthorized,
    UnknownModel,
)
from mes.jobs import Job


def _by_code() -> dict[str, type[MESError]]:
    found: dict[str, type[MESError]] = {}
    pending = [MESError]
    while pending:
        cls = pending.pop()
        if cls is not ConfigError:  # a start-up error, never a job's, and built otherwise
            found.setdefault(cls.code, cls)
        pending += cls.__subclasses__()
    return found


ERRORS_BY_CODE = _by_code()


# MES's names for the fields whose Ollama name differs (translate.OPTION_NAMES).
WIRE_NAMES = {"options.max_tokens": "options.num_predict"}


def _fields_text(fields: Any, path: str = "") -> list[str]:
    if isinstance(fields, dict):
        return [line for key, value in fields.items()
                for line in _fields_text(value, f"{path}.{key}" if path else str(key))]
    path = WIRE_NAMES.get(path, path)
    if isinstance(fields, list) and all(isinstance(item, str) for item in fields):
        # marshmallow's words; one that already names its field ("model is required") stands alone
        return [item if item.startswith(path.rsplit(".", 1)[-1] + " ") else f"{path}: {item}"
                for item in fields]
    return [f"{path}: {fields}"]


def message(exc: MESError) -> str:
    """Return the words of an error as one line, naming each field that failed validation."""
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    if fields:
        return "; ".join(_fields_text(fields))
    return exc.message


def wire_error(exc: MESError) -> tuple[int, str]:
    """Return the status and message Ollama would answer for an error."""
    if isinstance(exc, (UnknownModel, ModelNotFound)):
        model = exc.details.get("model") if isinstance(exc.details, dict) else None
        return 404, f"model '{model}' not found" if model else exc.message
    return exc.http_status, message(exc)


def mapper(exc: MESError) -> Response:
    """Answer an error under /ollama/ in Ollama's shape."""
    status, words = wire_error(exc)
    response = jsonify({"error": words})
    response.status_code = status
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, int(exc.retry_after_s)))
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="mes"'
    return response


def failure(job: Job, model: str) -> MESError:
    """Return the error a job that did not succeed ended with, as the exception it was."""
    error = job.error or {}
    code = error.get("code") or "internal_error"
    words = error.get("message") or f"the job ended {job.status.value}"
    cls = ERRORS_BY_CODE.get(code, MESError)
    found = cls(f"{words} (job {job.id})", {"model": model, "job_id": job.id})
    if cls is MESError:
        found.code = code  # keep the job's own code
    return found
