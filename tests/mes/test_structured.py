import pytest

from mes.errors import InvalidSchema
from mes.structured.formats import check_format, check_output, extract_json

SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}


def test_valid_formats_pass():
    check_format(None)
    check_format("json")
    check_format(SCHEMA)


@pytest.mark.parametrize("fmt", ["xml", 3, [1], {"type": "objekt"}, {"properties": {"a": {"type": 5}}}])
def test_bad_formats_are_invalid_schema(fmt):
    with pytest.raises(InvalidSchema):
        check_format(fmt)


def test_deep_schema_is_refused():
    schema: dict = {"type": "object"}
    node = schema
    for _ in range(40):
        node["properties"] = {"a": {"type": "object"}}
        node = node["properties"]["a"]
    with pytest.raises(InvalidSchema) as info:
        check_format(schema)
    assert "nests" in info.value.message


@pytest.mark.parametrize("text", ['{"age": 3}', '```json\n{"age": 3}\n```',
                                  'Sure! Here it is: {"age": 3} Hope that helps.'])
def test_json_is_found_in_text(text):
    assert extract_json(text) == ({"age": 3}, True)


def test_output_is_validated():
    assert check_output('{"age": 3}', SCHEMA).valid
    bad = check_output('{"age": "three"}', SCHEMA)
    assert not bad.valid and bad.is_json and "age" in bad.errors[0]
    missing = check_output("no json here", SCHEMA)
    assert not missing.is_json and not missing.valid
    assert check_output('[1]', "json").valid is False
    assert check_output('{"a": 1}', "json").valid is True
