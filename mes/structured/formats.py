"""Check a job's `format`, ask for JSON the model's way, and validate what comes back."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from mes.errors import InvalidSchema

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def check_format(fmt: Any) -> None:
    """Refuse a `format` that is neither "json" nor a valid, reasonably sized JSON Schema."""
    if fmt is None or fmt == "json":
        return
    if not isinstance(fmt, dict):
        raise InvalidSchema('format must be "json" or a JSON Schema object')
    size = len(json.dumps(fmt))
    if size > MAX_SCHEMA_BYTES:
        raise InvalidSchema(f"the schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES}",
                            {"limit_bytes": MAX_SCHEMA_BYTES})
    depth = json_depth(fmt)
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidSchema(f"the schema nests {depth} levels; the limit is {MAX_SCHEMA_DEPTH}",
                            {"limit_depth": MAX_SCHEMA_DEPTH})
    try:
        validator_for(fmt).check_schema(fmt)
    except jsonschema.SchemaError as exc:
        raise InvalidSchema(f"format is not a valid JSON Schema: {exc.message}",
                            {"path": "/".join(str(p) for p in exc.absolute_path)}) from None


def json_depth(value: Any) -> int:
    """Return how deep a parsed JSON value nests, without recursing (a scalar is 1)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def prompt_instructions(fmt: Any) -> str:
    """Return the system-prompt text that asks a model without native JSON mode for JSON."""
    if fmt == "json":
        return "Answer with one JSON object and nothing else: no prose, no code fences."
    return ("Answer with one JSON document that validates against this JSON Schema, and nothing "
            "else: no prose, no code fences.\nSchema:\n" + json.dumps(fmt, separators=(",", ":")))


@dataclass(frozen=True)
class Checked:
    """Hold the outcome of checking model text against a format."""

    value: Any
    is_json: bool
    valid: bool
    errors: tuple[str, ...]


def extract_json(text: str) -> tuple[Any, bool]:
    """Find the JSON document in model text: whole, fenced, or wrapped in prose."""
    candidates = [text.strip()]
    candidates += [match.strip() for match in _FENCE.findall(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if start != -1 and end > start:
            candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate), True
        except ValueError:
            continue
    return None, False


def check_output(text: str, fmt: Any) -> Checked:
    """Parse model text and validate it against `format`, listing every error."""
    value, is_json = extract_json(text)
    if not is_json:
        return Checked(None, False, False, ("the output is not JSON",))
    if fmt == "json":
        valid = isinstance(value, dict)
        return Checked(value, True, valid, () if valid else ("the output is not a JSON object",))
    validator = validator_for(fmt)(fmt)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    messages = tuple(f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
                     for e in errors[:20])
    return Checked(value, True, not errors, messages)
