"""What the simulated model says: determinism, num_predict, stop strings, JSON and schema formats."""

from __future__ import annotations

import json

import jsonschema
import pytest

from mes.engine.generator import Shaper
from mes.engine.schema_instance import instance_for
from mes.engine.words import HashRng

MODEL = "mistral:7b"


def generate(engine, http, **body):
    body = {"model": MODEL, "prompt": "Tell me about rivers", "stream": False, **body}
    response = http.post(engine.url + "/api/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def stream(engine, http, path="/api/generate", **body):
    body = {"model": MODEL, "prompt": "Tell me about rivers", **body}
    lines = [json.loads(line) for line in http.post(engine.url + path, json=body, stream=True).iter_lines() if line]
    key = "response" if path == "/api/generate" else "message"
    pieces = [(l[key] if key == "response" else l[key]["content"]) for l in lines[:-1]]
    return pieces, lines[-1]


def test_same_input_same_text(engine, http):
    first = generate(engine, http)["response"]
    assert generate(engine, http)["response"] == first
    assert "".join(stream(engine, http)[0]) == first
    assert generate(engine, http, prompt="Tell me about stones")["response"] != first
    assert generate(engine, http, system="You are terse.")["response"] != first
    assert generate(engine, http, model="gemma:2b")["response"] != first


def test_seed_matters_unless_temperature_is_zero(engine, http):
    one = generate(engine, http, options={"seed": 1})["response"]
    two = generate(engine, http, options={"seed": 2})["response"]
    assert one != two and generate(engine, http, options={"seed": 1})["response"] == one
    greedy = [generate(engine, http, options={"seed": s, "temperature": 0})["response"] for s in (1, 2)]
    assert greedy[0] == greedy[1]


def test_num_predict_stops_with_length(engine, http):
    reply = generate(engine, http, options={"num_predict": 5})
    full = generate(engine, http)["response"]
    assert reply["done_reason"] == "length" and reply["eval_count"] == 5
    assert full.startswith(reply["response"]) and len(reply["response"].split()) == 5
    pieces, last = stream(engine, http, options={"num_predict": 3})
    assert len(pieces) == 3 and last["done_reason"] == "length" and last["eval_count"] == 3
    bigger = generate(engine, http, options={"num_predict": 100})
    assert bigger["done_reason"] == "stop" and bigger["eval_count"] == 16


def test_stop_string_cuts_the_reply(engine, http):
    full = generate(engine, http)["response"]
    word = full.split()[6]
    reply = generate(engine, http, options={"stop": [word, "zzz-never"]})
    assert reply["done_reason"] == "stop"
    assert reply["response"] == full[: full.index(word)]


def test_stop_string_spanning_tokens_never_streams(engine, http):
    full = generate(engine, http)["response"]
    words = full.split(" ")  # ['', 'W1', 'w2', ...]
    stop = f"{words[4][-2:]} {words[5][:2]}"
    pieces, last = stream(engine, http, options={"stop": [stop]})
    assert "".join(pieces) == full[: full.index(stop)]
    assert last["done_reason"] == "stop" and all(stop not in p for p in pieces)


def test_prompt_eval_count_is_whitespace_tokens(engine, http):
    assert generate(engine, http, prompt="one two  three\nfour", system="five six")["prompt_eval_count"] == 6
    chat = http.post(engine.url + "/api/chat", json={
        "model": MODEL, "stream": False,
        "messages": [{"role": "system", "content": "a b"}, {"role": "user", "content": "c d e"}],
    }).json()
    assert chat["prompt_eval_count"] == 5


def test_json_mode_streams_an_object(engine, http):
    pieces, last = stream(engine, http, format="json")
    assert len(pieces) > 5 and isinstance(json.loads("".join(pieces)), dict)
    assert last["eval_count"] == len(pieces)


SCHEMAS = [
    {"type": "object", "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
     "required": ["age", "available"]},
    {"type": "object", "additionalProperties": False, "required": ["items", "status"],
     "properties": {
         "items": {"type": "array", "minItems": 3, "maxItems": 5, "uniqueItems": True,
                   "items": {"type": "object", "required": ["id", "score"],
                             "properties": {"id": {"type": "string", "minLength": 12},
                                            "score": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}}}},
         "status": {"enum": ["ok", "degraded"]},
         "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
         "kind": {"const": "report"},
         "nothing": {"type": "null"},
     }},
    {"$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
                          "required": ["name", "email"]}},
     "type": "object", "properties": {"people": {"type": "array", "items": {"$ref": "#/$defs/Person"}}},
     "required": ["people"]},
    {"type": "array", "prefixItems": [{"type": "integer", "minimum": 10, "maximum": 10}, {"type": "string"}], "minItems": 2},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 7, "minimum": 1}}, "required": ["a"]},
               {"properties": {"b": {"type": ["boolean", "null"]}}, "required": ["b"]}]},
    {"oneOf": [{"type": "integer", "exclusiveMinimum": 5, "maximum": 6}, {"type": "string"}]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_format_output_validates(engine, http, schema):
    reply = generate(engine, http, format=schema)
    jsonschema.validate(json.loads(reply["response"]), schema)
    pieces, last = stream(engine, http, path="/api/chat", messages=[{"role": "user", "content": "data"}], format=schema)
    jsonschema.validate(json.loads("".join(pieces)), schema)
    assert last["done_reason"] == "stop"


@pytest.mark.parametrize("seed", range(25))
def test_schema_instances_validate_for_many_seeds(seed):
    for schema in SCHEMAS:
        jsonschema.validate(instance_for(schema, HashRng(seed)), schema)


@pytest.mark.parametrize("schema", [
    {"type": "integer", "minimum": -3, "maximum": -3},
    {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 0.51},
    {"type": "string", "minLength": 40, "maxLength": 41},
    {"type": "string", "format": "uuid"},
    {"type": "string", "format": "date-time"},
    {"type": "object", "minProperties": 3, "additionalProperties": {"type": "integer"}},
    {"type": "array", "items": {"type": "boolean"}, "maxItems": 0},
    {"properties": {"x": {"minimum": 3}}},
    True,
])
def test_schema_edge_cases(schema):
    jsonschema.validate(instance_for(schema, HashRng("edge")), schema)


def test_shaper_holds_back_possible_stop_prefixes():
    shaper = Shaper(iter([" ab", "c", "d e"]), None, ["cd"])
    assert list(shaper) == [" ab"] and shaper.done_reason == "stop" and shaper.count == 3
    shaper = Shaper(iter([" ab", "c", "x"]), None, ["cd"])
    assert "".join(shaper) == " abcx" and shaper.done_reason == "stop"
    shaper = Shaper(iter(["a", "b", "c"]), 2, [])
    assert list(shaper) == ["a", "b"] and shaper.done_reason == "length"
