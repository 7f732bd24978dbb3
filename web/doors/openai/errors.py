"""Answer every error under /openai/ in OpenAI's shape: {"error": {message, type, param, code}}.

Statuses are the ones openai-python maps to its exception classes (400 BadRequestError, 401
AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 422, 429 RateLimitError,
5xx InternalServerError); the door's differences from MES's own statuses are in
translate.DOOR_STATUS (an unknown model is 404 model_not_found here).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify

from mes.errors import MESError, UnknownModel
from web.doors.openai.protocol import UNSUPPORTED
from web.doors.openai.translate import wire_error
from web.errors import register_door, with_error_headers

PREFIX = "/openai/"


def first_field(fields: dict[Any, Any]) -> tuple[list[Any], list[str]]:
    """Return the path to the first field error in marshmallow's nested messages, and it."""
    path: list[Any] = []
    node: Any = fields
    while isinstance(node, dict) and node:
        key, node = next(iter(node.items()))
        path.append(key)
    return path, node if isinstance(node, list) else [str(node)]


def param_name(path: list[Any]) -> str | None:
    """Name a field path as OpenAI does: messages[0].content; MES's options.x is just x."""
    if path[:1] == ["options"]:
        path = path[1:]
    if not path or path[0] == "_schema":
        return None
    name = str(path[0])
    for part in path[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def describe(exc: MESError) -> tuple[str, str | None, str]:
    """Return the message, the param and the code of an error, read from its details."""
    details = exc.details or {}
    if isinstance(exc, UnknownModel):
        return exc.message, "model", exc.code
    if "param" in details:
        return exc.message, details["param"], exc.code
    if not isinstance(details.get("fields"), dict) or not details["fields"]:
        return exc.message, None, exc.code
    path, messages = first_field(details["fields"])
    param = param_name(path)
    if messages == ["Unknown field."]:
        return f"Unrecognized request argument supplied: {param}", param, exc.code
    words = "; ".join(str(message) for message in messages)
    code = "unsupported_parameter" if words.startswith(UNSUPPORTED) else exc.code
    if not param:
        return words, None, code
    if words.startswith(("is ", "must ")):
        return f"'{param}' {words}", param, code
    return f"Invalid value for '{param}': {words}", param, code


def error_response(exc: MESError) -> Response:
    """Return the door's answer for one of MES's errors."""
    message, param, code = describe(exc)
    status, body = wire_error(exc.http_status, code, message, param)
    response = jsonify(body)
    response.status_code = status
    return with_error_headers(response, exc)


def init_app(app: Flask) -> None:
    """Answer errors of every request under /openai/ in OpenAI's shape."""
    register_door(app, PREFIX, error_response)
