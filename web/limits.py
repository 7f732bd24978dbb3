"""Refuse inputs over the configured limits before they reach the core.

The body size is Flask's MAX_CONTENT_LENGTH (413). Here: how deep a JSON body nests, how long
the prompt is, how many messages there are, and `max_tokens` against the model's cap. Field
types, unknown fields and metadata size are web/schemas.py's; schema size and depth are
mes/structured.py's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, current_app, g, request

from mes.errors import InvalidRequest, PayloadTooLarge
from mes.intake.batches import let_others_run
from mes.structured.formats import json_depth
from mes.registry import ModelRegistry
from mes.settings import Settings

MAX_JSON_DEPTH = 64
BATCH_BODY_PATHS = frozenset({"/v1/batches"})
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # what JSON allows between tokens


def check_json_body() -> None:
    """Parse a JSON body once, refusing one that nests too deep for the code that walks it."""
    if request.method not in ("POST", "PUT", "PATCH") or not request.is_json:
        return  # no view reads any other body
    if request.path in BATCH_BODY_PATHS:
        # A batch's body may be as large as MES_MAX_BATCH_BYTES, not the general request limit;
        # it must be raised before the body is read here, or Flask refuses it with a bare 413.
        request.max_content_length = current_app.extensions["mes"].services.settings.max_batch_bytes
        try:
            g.batch_json, depth = load_in_pieces(request.get_data())
        except RecursionError:
            _too_deep(MAX_JSON_DEPTH + 1)
        except ValueError:
            pass  # malformed, or not an object: read whole below, as any other body
        else:
            _too_deep(depth)
            return
    try:
        # silent: a malformed body is left for the view, which answers 400 with the reason.
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = json_depth(body)
    _too_deep(depth)


def _too_deep(depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest(f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep",
                             {"max_depth": MAX_JSON_DEPTH})


def batch_json() -> Any:
    """Return the JSON body of a batch request as check_json_body parsed it (get_json's)."""
    if "batch_json" in g:
        return g.batch_json
    return request.get_json()


def load_in_pieces(data: bytes) -> tuple[dict[str, Any], int]:
    """Parse a JSON object and measure its depth an array item at a time; ValueError if unsure.

    A batch's body is one object holding a long array. json.loads and a depth walk over all
    of it (1 MB, 10,000 requests) run for tens of ms without a turn for the process's other
    requests under gevent; this takes one value of the object, or one item of its arrays, at
    a time and yields every YIELD_EVERY items. The result is json.loads's (duplicate keys: the
    last wins). Anything but a UTF-8 object raises ValueError, for get_json to read whole.
    """
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError: get_json decides
    decode = _DECODER.raw_decode
    at = _skip(text, 0)
    if not text.startswith("{", at):
        raise ValueError("not an object")
    body: dict[str, Any] = {}
    depth = 1
    at = _skip(text, at + 1)
    if text.startswith("}", at):
        return _end(text, at, body), depth
    while True:
        if not text.startswith('"', at):
            raise ValueError("expected a key")
        key, at = decode(text, at)
        at = _skip(text, at)
        if not text.startswith(":", at):
            raise ValueError("expected ':'")
        at = _skip(text, at + 1)
        if text.startswith("[", at):
            value, value_depth, at = _array(text, at)
        else:
            value, at = decode(text, at)
            value_depth = json_depth(value)
        body[key] = value
        depth = max(depth, 1 + value_depth)
        at = _skip(text, at)
        if text.startswith("}", at):
            return _end(text, at, body), depth
        if not text.startswith(",", at):
            raise ValueError("expected ',' or '}'")
        at = _skip(text, at + 1)


def _array(text: str, at: int) -> tuple[list[Any], int, int]:
    """Parse the array at `at` item by item; return it, its depth and the index after it."""
    items: list[Any] = []
    deepest = 0
    at = _skip(text, at + 1)
    if text.startswith("]", at):
        return items, 1, at + 1
    while True:
        let_others_run(len(items))
        item, at = _DECODER.raw_decode(text, at)
        items.append(item)
        deepest = max(deepest, json_depth(item))
        at = _skip(text, at)
        if text.startswith("]", at):
            return items, 1 + deepest, at + 1
        if not text.startswith(",", at):
            raise ValueError("expected ',' or ']'")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    return _WHITESPACE.match(text, at).end()


def _end(text: str, at: int, body: dict[str, Any]) -> dict[str, Any]:
    if _skip(text, at + 1) != len(text):
        raise ValueError("extra data after the object")
    return body


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
