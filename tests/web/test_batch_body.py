"""A batch's JSON body is parsed an item at a time, to the same value and depth as in one go."""

from __future__ import annotations

import json

import pytest

from mes.structured.formats import json_depth
from web import limits
from web.limits import load_in_pieces
from tests.web.conftest import ALICE

DOCS = [
    {},
    {"requests": []},
    {"requests": [{"custom_id": "a", "model": "m", "prompt": "Hi ünï \u2028"}] * 3,
     "priority": "batch", "metadata": {"a": [1, {"b": None}]}, "timeout_s": 60},
    {"requests": [[[[1]]], "x", 1.5, None, True, {}], "other": [], "n": -0.0},
    {"a": 1, "a ": 2, "requests": [1, 2], "requests2": {"deep": [[{}]]}},
]


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("spaced", [False, True])
def test_the_same_value_and_depth_as_json_loads(doc, spaced):
    text = json.dumps(doc, indent=2 if spaced else None, ensure_ascii=not spaced)
    text = "\n " + text + " \r\n" if spaced else text
    body, depth = load_in_pieces(text.encode())
    assert body == json.loads(text) and list(body) == list(json.loads(text))
    assert depth == json_depth(json.loads(text))


def test_duplicate_keys_keep_the_last_as_json_loads_does():
    text = '{"requests": [1], "requests": [2, 3]}'
    assert load_in_pieces(text.encode())[0] == json.loads(text)


@pytest.mark.parametrize("text", ['', '[1, 2]', '"s"', '{"a": 1', '{"a" 1}', '{"a": [1 2]}',
                                  '{"a": 1} x', '{a: 1}', '{"a": [1,]}', '{"a": 1,}',
                                  '\ufeff{"a": 1}'])
def test_anything_but_a_plain_object_is_left_to_get_json(text):
    with pytest.raises(ValueError):
        load_in_pieces(text.encode())


def test_a_body_that_is_not_utf8_is_left_to_get_json():
    with pytest.raises(ValueError):
        load_in_pieces('{"a": "é"}'.encode("latin-1"))


def test_it_yields_between_the_items_of_a_long_array(monkeypatch):
    turns = []
    monkeypatch.setattr(limits, "let_others_run", turns.append)
    load_in_pieces(json.dumps({"requests": list(range(250))}).encode())
    assert turns == list(range(250))  # let_others_run sleeps on every YIELD_EVERY-th


def test_a_batch_body_too_deep_is_refused_and_a_malformed_one_says_why(client):
    deep = '{"requests": [' + "[" * 70 + "]" * 70 + "]}"
    response = client.post("/v1/batches", data=deep, headers={
        **ALICE, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"max_depth": limits.MAX_JSON_DEPTH}
    malformed = client.post("/v1/batches", data='{"requests": [', headers={
        **ALICE, "Content-Type": "application/json"})
    assert malformed.status_code == 400


def test_a_batch_whose_requests_are_not_a_list_is_refused_by_the_schema(client):
    response = client.post("/v1/batches", json={"requests": {"a": 1}}, headers=ALICE)
    assert response.status_code == 400
    assert "requests" in json.dumps(response.get_json()["error"])
