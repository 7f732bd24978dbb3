"""Refuse inputs over the configured limits before they reach the core.

The body size is Flask's MAX_CONTENT_LENGTH (413). Here: how deep a JSON body nests, how long
the prompt is, how many messages there are, and `max_tokens` against the model's cap. Field
types, unknown fields and metadata size are web/schemas.py's; schema size and depth are
mes/structured.py's.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request

from mes.errors import InvalidRequest, PayloadTooLarge
from mes.structured.formats import json_depth
from mes.registry import ModelRegistry
from mes.settings import Settings

MAX_JSON_DEPTH = 64
BATCH_BODY_PATHS = frozenset({"/v1/batches"})


def check_json_body() -> None:
    """Parse a JSON body once, refusing one that nests too deep for the code that walks it."""
    if request.method not in ("POST", "PUT", "PATCH") or not request.is_json:
        return  # no view reads any other body
    if request.path in BATCH_BODY_PATHS:
        # A batch's body may be as large as MES_MAX_BATCH_BYTES, not the general request limit;
        # it must be raised before the body is read here, or Flask refuses it with a bare 413.
        request.max_content_length = current_app.extensions["mes"].services.settings.max_batch_bytes
    try:
        # silent: a malformed body is left for the view, which answers 400 with the reason.
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest(f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep",
                             {"max_depth": MAX_JSON_DEPTH})


def prompt_chars(body: dict[str, Any]) -> int:
    """Count the characters of text a job sends to the model: prompt, system, messages, input."""
    total = len(body.get("prompt") or "") + len(body.get("system") or "")
    total += sum(len(text) for text in body.get("input") or ())  # an embed job's texts
    return total + sum(len(message.get("content") or "") for message in body.get("messages") or ())


def check_job_request(body: dict[str, Any], *, registry: ModelRegistry, settings: Settings) -> None:
    """Refuse a validated job body over a limit: 413 for the prompt, 400 for the rest."""
    spec = registry.get(body["model"])
    chars = prompt_chars(body)
    if chars > settings.max_prompt_chars:
        raise PayloadTooLarge(f"the prompt is {chars} characters; the limit is "
                              f"{settings.max_prompt_chars}",
                              {"chars": chars, "max_prompt_chars": settings.max_prompt_chars})
    messages = body.get("messages") or ()
    if len(messages) > settings.max_messages:
        raise InvalidRequest(f"at most {settings.max_messages} messages are allowed",
                             {"fields": {"messages": [f"must hold at most {settings.max_messages} "
                                                      "messages"]},
                              "max_messages": settings.max_messages})
    max_tokens = (body.get("options") or {}).get("max_tokens")
    if max_tokens is not None and max_tokens > spec.max_tokens:
        raise InvalidRequest(f"max_tokens may be at most {spec.max_tokens} for {spec.id}",
                             {"fields": {"options": {"max_tokens": [
                                 f"must be at most {spec.max_tokens} for {spec.id}"]}},
                              "max_tokens": spec.max_tokens, "model": spec.id})


def init_app(app: Flask) -> None:
    """Check JSON bodies on every request; call after auth, so strangers' bodies go unread."""
    app.before_request(check_json_body)
