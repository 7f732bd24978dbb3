"""Describe the shapes of the door's answers, as OpenAI's API reference gives them.

web/doors/openai/translate.py builds the answers as plain dicts; these schemas document them
in /openapi.json, and the unit tests load every answer translate.py builds through them, so
the document and the answers cannot drift apart.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate


class Answer(Schema):
    """Refuse fields an answer should not have (these schemas check translate.py's output)."""

    class Meta:
        unknown = RAISE


class Usage(Answer):
    """Shape token counts."""

    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)


class AssistantMessage(Answer):
    """Shape the answer's message."""

    role = fields.String(required=True, validate=validate.Equal("assistant"))
    content = fields.String(required=True, metadata={
        "description": "The text; with response_format json_object or json_schema, the JSON "
                       "text that the core validated against it."})
    refusal = fields.String(required=True, allow_none=True)


FINISH = validate.OneOf(["stop", "length"])


class ChatChoice(Answer):
    """Shape one chat choice."""

    index = fields.Integer(required=True)
    message = fields.Nested(AssistantMessage, required=True)
    logprobs = fields.Raw(required=True, allow_none=True)
    finish_reason = fields.String(required=True, validate=FINISH)


class Completed(Answer):
    """Shape what both kinds of completion hold; the id is the MES job's id."""

    id = fields.String(required=True, metadata={"description": "The MES job's id."})
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    usage = fields.Nested(Usage, required=True)


class ChatCompletion(Completed):
    """Shape a chat.completion."""

    object = fields.String(required=True, validate=validate.Equal("chat.completion"))
    choices = fields.List(fields.Nested(ChatChoice), required=True)
    service_tier = fields.String(required=True, validate=validate.OneOf(["default", "flex"]))


class TextChoice(Answer):
    """Shape one completion choice."""

    text = fields.String(required=True)
    index = fields.Integer(required=True)
    logprobs = fields.Raw(required=True, allow_none=True)
    finish_reason = fields.String(required=True, validate=FINISH)


class TextCompletion(Completed):
    """Shape a text_completion."""

    object = fields.String(required=True, validate=validate.Equal("text_completion"))
    choices = fields.List(fields.Nested(TextChoice), required=True)


class EmbeddingUsage(Answer):
    """Shape an embedding's token counts."""

    prompt_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)


class Embedding(Answer):
    """Shape one vector: floats, or base64 of little-endian float32s."""

    object = fields.String(required=True, validate=validate.Equal("embedding"))
    index = fields.Integer(required=True)
    embedding = fields.Raw(required=True, metadata={"oneOf": [
        {"type": "array", "items": {"type": "number"}}, {"type": "string"}]})


class EmbeddingList(Answer):
    """Shape the answer of POST /openai/v1/embeddings."""

    object = fields.String(required=True, validate=validate.Equal("list"))
    data = fields.List(fields.Nested(Embedding), required=True)
    model = fields.String(required=True)
    usage = fields.Nested(EmbeddingUsage, required=True)


class Model(Answer):
    """Shape one model of the registry."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("model"))
    created = fields.Integer(required=True, metadata={
        "description": "Always 0: the registry keeps no creation date."})
    owned_by = fields.String(required=True, metadata={"description": "The model's family."})


class ModelList(Answer):
    """Shape the answer of GET /openai/v1/models."""

    object = fields.String(required=True, validate=validate.Equal("list"))
    data = fields.List(fields.Nested(Model), required=True)


class ErrorDetail(Answer):
    """Shape OpenAI's error object."""

    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    code = fields.String(required=True, allow_none=True)


class Error(Answer):
    """Shape every error of the door: {"error": {"message", "type", "param", "code"}}."""

    error = fields.Nested(ErrorDetail, required=True)
