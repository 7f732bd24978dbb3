"""quick_line gives what BatchLineSchema's load gives for a plain line, and leaves the rest to it."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from web.batch_schemas import BatchLineSchema, quick_line

BASE = {"custom_id": "c-1", "model": "smollm2:135m"}

VALID = [
    {**BASE, "prompt": "Hi"},
    {**BASE, "prompt": "Hi", "options": {"max_tokens": 8}},
    {"prompt": "Hi", **BASE, "options": {"stop": ["\n", "END"], "max_tokens": 8, "seed": -3,
                                         "top_k": 40, "top_p": 1, "temperature": 0}},
    {**BASE, "prompt": "Hi", "options": {"temperature": 1.5, "top_p": 0.25}},
    {**BASE, "messages": [{"role": "system", "content": ""}, {"content": "Hi", "role": "user"}],
     "system": "be brief", "priority": "batch", "timeout_s": 60},
    {**BASE, "prompt": "ünï", "priority": "interactive", "metadata": {"z": 1, "a": {"b": [None]}}},
    {**BASE, "prompt": "Hi", "options": {}, "metadata": {}},
    {"custom_id": "x" * 256, "model": "m" * 200, "prompt": "p", "timeout_s": 86400,
     "options": {"max_tokens": 1_000_000, "stop": ["s" * 200] * 16}},
]

INVALID_OR_UNUSUAL = [
    "a string", ["a", "list"], None,
    {**BASE},  # neither prompt nor messages
    {**BASE, "prompt": "Hi", "messages": [{"role": "user", "content": "Hi"}]},
    {**BASE, "prompt": ""},
    {"model": "smollm2:135m", "prompt": "Hi"},  # no custom_id
    {**BASE, "custom_id": "", "prompt": "Hi"},
    {**BASE, "custom_id": 7, "prompt": "Hi"},
    {**BASE, "model": "", "prompt": "Hi"},
    {**BASE, "prompt": "Hi", "format": "json"},  # valid, but not the plain shape
    {**BASE, "prompt": "Hi", "unknown": 1},
    {**BASE, "prompt": "Hi", "options": {"temperature": True}},
    {**BASE, "prompt": "Hi", "options": {"temperature": 2.5}},
    {**BASE, "prompt": "Hi", "options": {"temperature": float("nan")}},
    {**BASE, "prompt": "Hi", "options": {"temperature": "0.5"}},
    {**BASE, "prompt": "Hi", "options": {"max_tokens": 8.0}},
    {**BASE, "prompt": "Hi", "options": {"max_tokens": 0}},
    {**BASE, "prompt": "Hi", "options": {"max_tokens": True}},
    {**BASE, "prompt": "Hi", "options": {"num_ctx": 4096}},  # a runner option
    {**BASE, "prompt": "Hi", "options": {"stop": ["s"] * 17}},
    {**BASE, "prompt": "Hi", "options": {"stop": [""]}},
    {**BASE, "prompt": "Hi", "options": []},
    {**BASE, "messages": []},
    {**BASE, "messages": [{"role": "robot", "content": "Hi"}]},
    {**BASE, "messages": [{"role": ["user"], "content": "Hi"}]},
    {**BASE, "messages": [{"role": "user"}]},
    {**BASE, "messages": [{"role": "user", "content": "Hi", "name": "x"}]},
    {**BASE, "prompt": "Hi", "priority": "urgent"},
    {**BASE, "prompt": "Hi", "priority": ["batch"]},
    {**BASE, "prompt": "Hi", "timeout_s": 0},
    {**BASE, "prompt": "Hi", "timeout_s": True},
    {**BASE, "prompt": "Hi", "metadata": {"big": "x" * 5000}},
    {**BASE, "prompt": "Hi", "metadata": ["not", "a", "dict"]},
    {**BASE, "prompt": "Hi", "system": 5},
]


@pytest.mark.parametrize("raw", VALID)
def test_a_plain_line_is_what_the_schema_loads_in_the_same_order(raw):
    loaded = BatchLineSchema().load(raw)
    quick = quick_line(raw)
    assert quick == loaded
    assert json.dumps(quick) == json.dumps(loaded)  # key order too, nested ones included


@pytest.mark.parametrize("raw", INVALID_OR_UNUSUAL)
def test_anything_else_is_left_to_the_schema(raw):
    assert quick_line(raw) is None


def test_the_unusual_cases_hold_invalid_lines_for_the_schema_to_explain():
    refused = 0
    for raw in INVALID_OR_UNUSUAL:
        try:
            BatchLineSchema().load(raw)
        except (ValidationError, TypeError):
            refused += 1
    # All but two valid lines the quick check leaves alone: one with a format, and a
    # temperature given as the string "0.5" (marshmallow's Float takes it).
    assert refused == len(INVALID_OR_UNUSUAL) - 2
