"""Parse request bodies the way Ollama's handlers do, with Go's encoding/json error wording."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mes.engine import protocol as wire


class BadRequest(Exception):
    """Raise for a request Ollama would reject before scheduling it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InferenceRequest:
    """Hold one parsed generate/chat request."""

    kind: str  # "generate" or "chat"
    model: str  # as the client spelled it; echoed back in replies
    prompt: str | Sequence[Mapping[str, Any]]
    system: str | None
    options: Mapping[str, Any]
    format: str | Mapping[str, Any] | None
    stream: bool
    keep_alive: float
    keep_alive_given: bool
    raw: bool

    @property
    def empty(self) -> bool:
        """Return True for a load/unload request (empty prompt or no messages)."""
        return not self.prompt


@dataclass
class EmbedRequest:
    """Hold one parsed /api/embed (or legacy /api/embeddings) request."""

    model: str
    texts: list[str]
    options: Mapping[str, Any]
    truncate: bool
    dimensions: int
    keep_alive: float
    keep_alive_given: bool


def json_kind(value: Any) -> str:
    """Name VALUE's JSON type the way Go's unmarshal errors do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def field(body: Mapping[str, Any], key: str, types: tuple[type, ...], struct: str, go_type: str, default: Any) -> Any:
    """Return BODY[KEY] if it has one of TYPES (DEFAULT when missing or null), else raise BadRequest."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        # Same wording as Go's encoding/json, which is what Ollama answers with.
        raise BadRequest(f"json: cannot unmarshal {json_kind(value)} into Go struct field "
                         f"{struct}.{key} of type {go_type}")
    return value


def _object(body: Any, struct: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"json: cannot unmarshal {json_kind(body)} into Go value of type api.{struct}")
    return body


def _keep_alive(body: Mapping[str, Any], default: float) -> float:
    try:
        return wire.parse_keep_alive(body.get("keep_alive"), default)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def parse_request(kind: str, body: Any, default_keep_alive: float) -> InferenceRequest:
    """Validate a generate or chat BODY; raises BadRequest."""
    struct = "GenerateRequest" if kind == "generate" else "ChatRequest"
    body = _object(body, struct)
    model = field(body, "model", (str,), struct, "string", "")
    if not model:
        raise BadRequest(wire.ERR_MODEL_REQUIRED)
    options = field(body, "options", (dict,), struct, "map[string]interface {}", {})
    stream = field(body, "stream", (bool,), struct, "bool", True)
    raw = field(body, "raw", (bool,), struct, "bool", False)
    fmt = body.get("format")
    if fmt == "":
        fmt = None
    if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
        raise BadRequest(wire.err_invalid_format(fmt))
    keep_alive = _keep_alive(body, default_keep_alive)
    if kind == "generate":
        prompt: Any = field(body, "prompt", (str,), struct, "string", "")
        system = field(body, "system", (str,), struct, "string", None)
        if raw and system:
            raise BadRequest("raw mode does not support template, system, or context")
    else:
        prompt = field(body, "messages", (list,), struct, "[]api.Message", [])
        for message in prompt:
            if not isinstance(message, dict):
                raise BadRequest(f"json: cannot unmarshal {json_kind(message)} into Go struct field "
                                 "ChatRequest.messages of type api.Message")
            field(message, "role", (str,), "Message", "string", "")
            field(message, "content", (str,), "Message", "string", "")
        system = None
    keep_alive_given = body.get("keep_alive") is not None
    return InferenceRequest(kind, model, prompt, system, options, fmt, stream, keep_alive, keep_alive_given, raw)


def parse_embed(body: Any, default_keep_alive: float, legacy: bool = False) -> EmbedRequest:
    """Validate an /api/embed BODY (or a legacy /api/embeddings one with `prompt`); raises BadRequest."""
    struct = "EmbeddingRequest" if legacy else "EmbedRequest"
    body = _object(body, struct)
    model = field(body, "model", (str,), struct, "string", "")
    if not model:
        raise BadRequest(wire.ERR_MODEL_REQUIRED)
    options = field(body, "options", (dict,), struct, "map[string]interface {}", {})
    if legacy:
        prompt = field(body, "prompt", (str,), struct, "string", "")
        texts = [prompt] if prompt else []
    else:
        value = body.get("input")
        if isinstance(value, str):
            texts = [value] if value else []
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            texts = list(value)
        elif value is None:
            texts = []
        else:
            raise BadRequest("invalid input type")
    truncate = field(body, "truncate", (bool,), struct, "bool", True)
    dimensions = field(body, "dimensions", (int,), struct, "int", 0)
    keep_alive = _keep_alive(body, default_keep_alive)
    return EmbedRequest(model, texts, options, truncate, dimensions, keep_alive, body.get("keep_alive") is not None)
