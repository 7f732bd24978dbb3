"""Validate OpenAI's wire format: chat completions, completions and embeddings requests.

Field types are strict, as OpenAI's own are: "0.5" is not a number and 1 is not a boolean.
A parameter MES cannot honour is marked `refused`: it is refused with its name (never
dropped), except for null and its neutral values (n=1, logprobs=false, tools=[] ...), which
mean the same as leaving it out; /openapi.json lists them as the field's enum.
The answers' shapes live in web/doors/openai/answers.py.
"""

from __future__ import annotations

import numbers

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

MAX_STOP = 16      # MES's own limit on stop sequences (OpenAI allows 4)
MAX_INPUTS = 2048  # OpenAI's limit on inputs to one embeddings request
UNSUPPORTED = "is not supported: "  # errors.py answers these with code unsupported_parameter


class Number(fields.Float):
    """Load a JSON number only: no strings, no booleans."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValidationError("must be a number")
        return super()._deserialize(value, attr, data, **kwargs)


class Int(fields.Integer):
    """Load a JSON integer only: no strings, no booleans, no 1.5."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("must be an integer")
        return super()._deserialize(value, attr, data, **kwargs)


class Bool(fields.Boolean):
    """Load true and false only: not 1, not "true"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


class Strings(fields.Field):
    """Load a string or a list of strings as a list (stop, prompt, input)."""

    def __init__(self, *, max_items: int, min_chars: int = 0, max_chars: int | None = None,
                 too_many: str | None = None, **kwargs):
        item = {"type": "string", "minLength": min_chars,
                **({"maxLength": max_chars} if max_chars else {})}
        doc = {"oneOf": [item, {"type": "array", "items": item, "minItems": 1,
                                "maxItems": max_items}]}
        super().__init__(metadata=doc, **kwargs)
        self.max_items, self.min_chars, self.max_chars = max_items, min_chars, max_chars
        self.too_many = too_many or f"must hold at most {max_items} strings"

    def _deserialize(self, value, attr, data, **kwargs):
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values:
            raise ValidationError("must be a string or a non-empty list of strings")
        if len(values) > self.max_items:
            raise ValidationError(self.too_many)
        for text in values:
            if not isinstance(text, str):
                raise ValidationError("token arrays are not supported: send text")
            if len(text) < self.min_chars:
                raise ValidationError("strings must not be empty")
            if self.max_chars and len(text) > self.max_chars:
                raise ValidationError(f"strings may be at most {self.max_chars} characters")
        return values


TEXT_PART = {"type": "object", "properties": {"type": {"type": "string"},
                                              "text": {"type": "string"}}}


class Content(fields.Field):
    """Load a message's content: a string, or a list of text parts (other parts refused)."""

    def __init__(self, **kwargs):
        doc = {"nullable": True, "oneOf": [{"type": "string"},
                                           {"type": "array", "items": TEXT_PART}]}
        super().__init__(metadata=doc, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be a string or a list of content parts")
        errors = {}
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str) and set(part) <= {"type", "text"}:
                continue
            errors[index] = ([UNSUPPORTED + f"{kind} content parts (MES models take text)"]
                             if isinstance(kind, str) and kind != "text"
                             else ['must be {"type": "text", "text": "..."}'])
        if errors:
            raise ValidationError(errors)
        return value


def refused(field: fields.Field, *neutral, why: str) -> fields.Field:
    """Mark a parameter MES cannot honour: only null and the neutral values pass."""
    accepted = [*([None] if field.allow_none else []), *neutral]
    field.metadata.update(enum=accepted, description=f"MES cannot honour other values: {why}.")
    field.refused = (tuple(accepted), why)
    return field


class WireSchema(Schema):
    """Refuse unknown fields ("Unrecognized request argument"), and refused values by name."""

    class Meta:
        unknown = RAISE

    @validates_schema
    def refuse_unsupported(self, data, **kwargs):
        """Refuse, by name, every parameter set to something MES cannot honour."""
        for name, field in self.fields.items():
            accepted, why = getattr(field, "refused", ((), ""))
            if why and name in data and data[name] not in accepted:
                raise ValidationError(UNSUPPORTED + why, name)


class StreamOptions(WireSchema):
    """Validate stream_options."""

    include_usage = Bool(allow_none=True)
    include_obfuscation = Bool(allow_none=True)  # OpenAI pads chunks with it; MES never does


class JsonSchemaFormat(WireSchema):
    """Validate response_format.json_schema."""

    name = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"))
    description = fields.String(allow_none=True)
    schema = fields.Dict(allow_none=True)
    strict = Bool(allow_none=True)  # MES validates (and repairs) against the schema either way


class ResponseFormat(WireSchema):
    """Validate response_format: text, json_object or json_schema."""

    type = fields.String(required=True, validate=validate.OneOf(
        ["text", "json_object", "json_schema"]))
    json_schema = fields.Nested(JsonSchemaFormat, allow_none=True)

    @validates_schema
    def schema_with_its_type(self, data, **kwargs):
        """Require json_schema exactly when the type is json_schema."""
        if (data["type"] == "json_schema") != (data.get("json_schema") is not None):
            raise ValidationError("give json_schema with type json_schema, and only then",
                                  "json_schema")


NO_TOOLS = "MES models answer in text; tools are not offered"
TEXT_ONLY = "MES models take and give text"
ONE_CHOICE = "MES answers with one choice per request"
NO_LOGPROBS = "the backend returns no log probabilities"


class ChatMessage(WireSchema):
    """Validate one chat message; tool and function messages are refused."""

    role = refused(fields.String(required=True, validate=validate.OneOf(
        ["system", "developer", "user", "assistant", "tool", "function"])),
        "system", "developer", "user", "assistant", why=NO_TOOLS)
    content = Content(required=True, allow_none=False)
    name = refused(fields.String(allow_none=True), why="MES messages carry no names")
    refusal = refused(fields.String(allow_none=True), why=TEXT_ONLY)
    tool_calls = refused(fields.List(fields.Dict(), allow_none=True), [], why=NO_TOOLS)
    tool_call_id = refused(fields.String(allow_none=True), why=NO_TOOLS)
    function_call = refused(fields.Dict(allow_none=True), why=NO_TOOLS)
    audio = refused(fields.Dict(allow_none=True), why=TEXT_ONLY)


class Sampling(WireSchema):
    """Validate what chat completions and completions share: model, sampling, tier, stream."""

    model = fields.String(required=True, validate=validate.Length(1, 200))
    temperature = Number(allow_none=True, validate=validate.Range(0, 2))
    top_p = Number(allow_none=True, validate=validate.Range(0, 1))
    max_tokens = Int(allow_none=True, validate=validate.Range(1, 1_000_000))
    stop = Strings(allow_none=True, max_items=MAX_STOP, min_chars=1, max_chars=200)
    seed = Int(allow_none=True)
    presence_penalty = Number(allow_none=True, validate=validate.Range(-2, 2))
    frequency_penalty = Number(allow_none=True, validate=validate.Range(-2, 2))
    stream = Bool(allow_none=True, load_default=False)
    stream_options = fields.Nested(StreamOptions, allow_none=True)
    n = refused(Int(allow_none=True), 1, why=ONE_CHOICE)
    user = fields.String(allow_none=True, validate=validate.Length(max=256))
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(1, 64)),
                           values=fields.String(validate=validate.Length(max=512)),
                           allow_none=True, validate=validate.Length(max=16))
    service_tier = fields.String(allow_none=True, validate=validate.OneOf(
        ["auto", "default", "flex", "priority"]))
    logit_bias = refused(fields.Dict(keys=fields.String(), values=Number(), allow_none=True),
                         {}, why="the backend takes no token biases")

    @validates_schema
    def stream_options_with_stream(self, data, **kwargs):
        """Refuse stream_options without stream: true, as OpenAI does."""
        if data.get("stream_options") is not None and not data.get("stream"):
            raise ValidationError("is only allowed when stream is true", "stream_options")


class ChatCompletionRequest(Sampling):
    """Validate the body of POST /openai/v1/chat/completions."""

    messages = fields.List(fields.Nested(ChatMessage), required=True,
                           validate=validate.Length(min=1))
    max_completion_tokens = Int(allow_none=True, validate=validate.Range(1, 1_000_000))
    response_format = fields.Nested(ResponseFormat, allow_none=True)
    logprobs = refused(Bool(allow_none=True), False, why=NO_LOGPROBS)
    top_logprobs = refused(Int(allow_none=True), 0, why=NO_LOGPROBS)
    tools = refused(fields.List(fields.Dict(), allow_none=True), [], why=NO_TOOLS)
    tool_choice = refused(fields.Raw(allow_none=True), "none", why=NO_TOOLS)
    parallel_tool_calls = Bool(allow_none=True)  # says nothing without tools
    functions = refused(fields.List(fields.Dict(), allow_none=True), [], why=NO_TOOLS)
    function_call = refused(fields.Raw(allow_none=True), "none", why=NO_TOOLS)
    audio = refused(fields.Dict(allow_none=True), why=TEXT_ONLY)
    modalities = refused(fields.List(fields.String(), allow_none=True), ["text"], why=TEXT_ONLY)
    prediction = refused(fields.Dict(allow_none=True), why="predicted outputs are not offered")
    reasoning_effort = refused(fields.String(allow_none=True),
                               why="MES models take no reasoning settings")
    verbosity = refused(fields.String(allow_none=True), why="MES models take no verbosity setting")
    web_search_options = refused(fields.Dict(allow_none=True), why="MES models do not search")
    store = Bool(allow_none=True)  # MES keeps every job for its retention time either way
    safety_identifier = fields.String(allow_none=True, validate=validate.Length(max=256))


class CompletionRequest(Sampling):
    """Validate the body of POST /openai/v1/completions (one prompt, as text)."""

    prompt = Strings(required=True, max_items=1, min_chars=1,
                     too_many="MES takes one prompt per request")
    suffix = refused(fields.String(allow_none=True), why="the backend does not fill in the middle")
    echo = refused(Bool(allow_none=True), False, why="the answer holds the completion only")
    best_of = refused(Int(allow_none=True), 1, why=ONE_CHOICE)
    logprobs = refused(Int(allow_none=True), why=NO_LOGPROBS)


class EmbeddingRequest(WireSchema):
    """Validate the body of POST /openai/v1/embeddings (text inputs only)."""

    model = fields.String(required=True, validate=validate.Length(1, 200))
    input = Strings(required=True, max_items=MAX_INPUTS, min_chars=1)
    encoding_format = fields.String(load_default="float",
                                    validate=validate.OneOf(["float", "base64"]))
    dimensions = Int(allow_none=True, validate=validate.Range(1, 65536))
    user = fields.String(allow_none=True, validate=validate.Length(max=256))
