"""Build a JSON value that validates against a JSON Schema, for `format` structured outputs.

Covers the subset models are asked for in practice: object/properties/required/
additionalProperties, array/items/prefixItems/minItems/maxItems/uniqueItems, string
(enum, minLength/maxLength, common formats), integer/number (minimum/maximum, exclusive
bounds, multipleOf), boolean, null, enum/const, allOf (merged), anyOf/oneOf (first
branch) and local `$ref`s such as pydantic's `#/$defs/...`. `pattern` is not honoured.
"""

from __future__ import annotations

import math
from typing import Any

from mes.engine.words import HashRng

_DEEP = 4  # below this depth only required properties and minItems are generated
_MAX_DEPTH = 12


def instance_for(schema: Any, rng: HashRng) -> Any:
    """Return a value valid against SCHEMA, chosen deterministically from RNG."""
    return _value(schema, rng, schema, 0)


def _value(schema: Any, rng: HashRng, root: Any, depth: int) -> Any:
    if schema is True or not isinstance(schema, dict):
        return rng.word()
    if depth > _MAX_DEPTH:
        return None
    schema = _flatten(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    kind = _kind(schema)
    if kind == "object":
        return _object(schema, rng, root, depth)
    if kind == "array":
        return _array(schema, rng, root, depth)
    if kind == "integer":
        return _integer(schema, rng)
    if kind == "number":
        return _number(schema, rng)
    if kind == "boolean":
        return rng.below(2) == 1
    if kind == "null":
        return None
    return _string(schema, rng)


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return {}  # remote references are out of scope; anything goes
    node = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit():
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return {}
    return node


def _merge(base: dict[str, Any], extra: Any) -> dict[str, Any]:
    if not isinstance(extra, dict):
        return base
    merged = {**base, **{k: v for k, v in extra.items() if k not in ("properties", "required")}}
    if "properties" in base or "properties" in extra:
        merged["properties"] = {**base.get("properties", {}), **extra.get("properties", {})}
    if "required" in base or "required" in extra:
        merged["required"] = list(dict.fromkeys([*base.get("required", []), *extra.get("required", [])]))
    return merged


def _flatten(schema: dict[str, Any], root: Any) -> dict[str, Any]:
    """Inline $ref, merge allOf and pick the first anyOf/oneOf branch, repeatedly."""
    for _ in range(_MAX_DEPTH):
        if "$ref" in schema:
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            target = _resolve(schema["$ref"], root)
            schema = _merge(dict(target) if isinstance(target, dict) else {}, rest)
        elif "allOf" in schema:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"] or []:
                rest = _merge(rest, _flatten(part, root) if isinstance(part, dict) else part)
            schema = rest
        elif "anyOf" in schema or "oneOf" in schema:
            key = "anyOf" if "anyOf" in schema else "oneOf"
            rest = {k: v for k, v in schema.items() if k != key}
            branches = schema[key] or [{}]
            schema = _merge(rest, branches[0])
        else:
            break
    return schema


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        kind = concrete[0] if concrete else (kind[0] if kind else None)
    if isinstance(kind, str):
        return kind
    if any(k in schema for k in ("properties", "required", "additionalProperties", "minProperties")):
        return "object"
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _object(schema: dict[str, Any], rng: HashRng, root: Any, depth: int) -> dict[str, Any]:
    props = schema.get("properties") or {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    extra = schema.get("additionalProperties", True)
    out: dict[str, Any] = {}
    for key, sub in props.items():
        if depth < _DEEP or key in required:
            out[key] = _value(sub, rng, root, depth + 1)
    for key in required:
        if key not in out:
            out[key] = _value(extra if isinstance(extra, dict) else True, rng, root, depth + 1)
    n = 0
    while len(out) < int(schema.get("minProperties", 0)) and extra is not False:
        out[f"{rng.word()}_{n}"] = _value(extra if isinstance(extra, dict) else True, rng, root, depth + 1)
        n += 1
    return out


def _array(schema: dict[str, Any], rng: HashRng, root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems") or []
    items = schema.get("items", True)
    if isinstance(items, list):  # draft-04 tuple form
        prefix, items = items, schema.get("additionalItems", True)
    low = int(schema.get("minItems", 0))
    high = schema.get("maxItems")
    count = low if depth >= _DEEP else max(low, 2 if high is None else min(2, int(high)))
    out: list[Any] = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else items
        value = _value(sub, rng, root, depth + 1)
        for attempt in range(8):
            if not schema.get("uniqueItems") or value not in out:
                break
            value = _value(sub, rng, root, depth + 1)
            if isinstance(value, str) and value in out:
                value = f"{value}-{attempt + i}"
        out.append(value)
    return out


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    low, high = schema.get("minimum"), schema.get("maximum")
    low_open = high_open = False
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(ex_low, bool):  # draft-04: boolean flag on minimum
        low_open = ex_low
    elif isinstance(ex_low, (int, float)) and (low is None or ex_low >= low):
        low, low_open = ex_low, True
    if isinstance(ex_high, bool):
        high_open = ex_high
    elif isinstance(ex_high, (int, float)) and (high is None or ex_high <= high):
        high, high_open = ex_high, True
    return low, low_open, high, high_open


def _integer(schema: dict[str, Any], rng: HashRng) -> int:
    low, low_open, high, high_open = _bounds(schema)
    lo = None if low is None else (math.floor(low) + 1 if low_open else math.ceil(low))
    hi = None if high is None else (math.ceil(high) - 1 if high_open else math.floor(high))
    if lo is None and hi is None:
        lo, hi = 0, 100
    elif lo is None:
        lo = hi - 100
    elif hi is None:
        hi = lo + 100
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        first, last = math.ceil(lo / step), math.floor(hi / step)
        if last >= first:
            return int((first + rng.below(last - first + 1)) * step)
    return lo + rng.below(max(0, hi - lo) + 1)


def _number(schema: dict[str, Any], rng: HashRng) -> float | int:
    if isinstance(schema.get("multipleOf"), (int, float)):
        return _integer(schema, rng)
    low, low_open, high, high_open = _bounds(schema)
    if low is None and high is None:
        lo, hi = 0.0, 100.0
    elif low is None:
        hi = float(high)
        lo = hi - 100.0
    elif high is None:
        lo = float(low)
        hi = lo + 100.0
    else:
        lo, hi = float(low), float(high)
    value = round(lo + (hi - lo) * rng.random(), 2)
    if value < lo or value > hi or (low_open and value <= lo) or (high_open and value >= hi):
        value = (lo + hi) / 2.0
    return value


_FORMATS = {
    "date-time": lambda r: f"2024-{1 + r.below(12):02d}-{1 + r.below(28):02d}T{r.below(24):02d}:{r.below(60):02d}:00Z",
    "date": lambda r: f"2024-{1 + r.below(12):02d}-{1 + r.below(28):02d}",
    "time": lambda r: f"{r.below(24):02d}:{r.below(60):02d}:00Z",
    "email": lambda r: f"{r.word()}@example.com",
    "uri": lambda r: f"https://example.com/{r.word()}",
    "url": lambda r: f"https://example.com/{r.word()}",
    "hostname": lambda r: f"{r.word()}.example.com",
    "ipv4": lambda r: f"192.0.2.{1 + r.below(254)}",
    "uuid": lambda r: "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}".format(
        r.below(2**32), r.below(2**16), r.below(2**12), r.below(2**12), r.below(2**48)
    ),
}


def _string(schema: dict[str, Any], rng: HashRng) -> str:
    maker = _FORMATS.get(schema.get("format", ""))
    text = maker(rng) if maker else " ".join(rng.words(1 + rng.below(3)))
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    while len(text) < low:
        text += " " + rng.word()
    if high is not None and len(text) > int(high):
        text = text[: int(high)]
    return text
