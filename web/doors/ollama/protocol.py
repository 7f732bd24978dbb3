"""Validate Ollama's wire requests: /api/generate, /api/chat, /api/embed and /api/show.

Field names and defaults are those of Ollama's api/types.go (docs/api.md). Like Ollama's own
JSON decoder, a request may carry fields this door does not know, and null where a field is
absent; those are dropped (and reported, see translate.py). What MES cannot honour at all
(images, tools, raw prompts, thinking, log probabilities) is refused with a 400 that names it,
never dropped in silence, since the answer would not be what the client asked for.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from mes.errors import InvalidRequest

UNKNOWN_FIELDS = "_unknown"  # the key under which a body's unknown field names travel

# Fields that ask for what MES cannot do; a falsy value ([], "", false) asks for nothing.
UNSUPPORTED = ("images", "tools", "suffix", "template", "context", "raw", "think", "logprobs",
               "top_logprobs")


class Flag(fields.Boolean):
    """Take only JSON true or false, as Ollama's decoder does (not 0, 1 or "true")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def count(**kwargs) -> fields.Integer:
    """Return a field for a JSON integer (2.5 and "2" are refused, as Go refuses them)."""
    return fields.Integer(strict=True, allow_none=True, **kwargs)


class WireSchema(Schema):
    """Accept what Ollama's decoder accepts: unknown fields are left out, null means absent."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1),
                          error_messages={"required": "model is required"})
    options = fields.Dict(keys=fields.String(), allow_none=True)
    keep_alive = fields.Raw(allow_none=True)


class CompletionSchema(WireSchema):
    """Hold the fields /api/generate and /api/chat share."""

    format = fields.Raw(allow_none=True)
    stream = Flag(allow_none=True, load_default=True)
    truncate = Flag(allow_none=True)
    shift = Flag(allow_none=True)
    think = fields.Raw(allow_none=True)
    logprobs = Flag(allow_none=True)
    top_logprobs = count()

    @validates("format")
    def known_format(self, value, **kwargs):
        """Take "json", a JSON Schema object, or nothing ("" or null)."""
        if value not in (None, "", "json") and not isinstance(value, dict):
            raise ValidationError('invalid format: expected "json" or a JSON schema object')


class GenerateSchema(CompletionSchema):
    """Validate the body of POST /api/generate."""

    prompt = fields.String(allow_none=True)
    system = fields.String(allow_none=True)
    suffix = fields.String(allow_none=True)
    template = fields.String(allow_none=True)
    context = fields.List(fields.Integer(strict=True), allow_none=True)
    raw = Flag(allow_none=True)
    images = fields.List(fields.Raw(), allow_none=True)


class MessageSchema(Schema):
    """Validate one chat message (unknown keys such as `thinking` are left out)."""

    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True,
                         validate=validate.OneOf(["system", "user", "assistant", "tool"]))
    content = fields.String(allow_none=True, load_default="")
    images = fields.List(fields.Raw(), allow_none=True)
    tool_calls = fields.List(fields.Raw(), allow_none=True)


class ChatSchema(CompletionSchema):
    """Validate the body of POST /api/chat."""

    messages = fields.List(fields.Nested(MessageSchema), allow_none=True)
    tools = fields.List(fields.Raw(), allow_none=True)


class EmbedSchema(WireSchema):
    """Validate the body of POST /api/embed: `input` is a string or a list of strings."""

    input = fields.Raw(allow_none=True)
    truncate = Flag(allow_none=True)
    dimensions = count(validate=validate.Range(min=1))

    @validates("input")
    def text_input(self, value, **kwargs):
        """Take a string or a list of strings, as Ollama does ("invalid input type" otherwise)."""
        if value is None or isinstance(value, str):
            return
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValidationError("invalid input type")


class ShowSchema(Schema):
    """Validate the body of POST /api/show; `name` is the older spelling of `model`."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    verbose = Flag(allow_none=True)


def unknown_fields(schema: Schema, raw: dict[str, Any]) -> list[str]:
    """Return the fields of a raw body that the schema does not declare, in body order."""
    return [name for name in raw if name not in schema.fields]


def load(schema: Schema, raw: Any) -> dict[str, Any]:
    """Validate a raw body; return its fields without the nulls, plus `_unknown`."""
    if not isinstance(raw, dict):
        raise InvalidRequest("the request body must be a JSON object")
    data = {key: value for key, value in schema.load(raw).items() if value is not None}
    data[UNKNOWN_FIELDS] = unknown_fields(schema, raw)
    return data


def refuse_unsupported(data: dict[str, Any]) -> None:
    """Refuse, naming them, the fields that ask for something MES cannot give."""
    asked = [name for name in UNSUPPORTED if data.get(name)]
    for message in data.get("messages") or ():
        asked += [f"messages.{name}" for name in ("images", "tool_calls") if message.get(name)]
    if asked:
        names = sorted(set(asked), key=asked.index)
        raise InvalidRequest(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not "
                             "supported by MES (text generation only, no tools, images, raw "
                             "prompts or thinking)", {"unsupported": names})


def load_generate(raw: Any) -> dict[str, Any]:
    """Return a checked /api/generate request."""
    data = load(GenerateSchema(), raw)
    refuse_unsupported(data)
    return data


def load_chat(raw: Any) -> dict[str, Any]:
    """Return a checked /api/chat request."""
    data = load(ChatSchema(), raw)
    refuse_unsupported(data)
    return data


def load_embed(raw: Any) -> dict[str, Any]:
    """Return a checked /api/embed request, its input always a list."""
    data = load(EmbedSchema(), raw)
    given = data.get("input")
    data["input"] = [] if given in (None, "") else [given] if isinstance(given, str) else given
    return data


def load_show(raw: Any) -> str:
    """Return the model an /api/show request names."""
    data = load(ShowSchema(), raw)
    model = data.get("model") or data.get("name")
    if not model:
        raise InvalidRequest("model is required")
    return model
