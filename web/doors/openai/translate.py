"""Translate between OpenAI's wire format and MES jobs: requests in, answers and errors out.

Plain functions on plain data (validated wire dicts from protocol.py, Job records), so each
is tested on exact JSON without Flask. Streams are in web/doors/openai/chunks.py.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from mes.errors import InvalidRequest, MESError
from mes.jobs import Job, JobStatus
from mes.registry import ModelSpec
from web.schemas import METADATA_MAX_BYTES

# Wire options that are MES job options under the same name.
SAME_OPTIONS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
PRIORITY_HEADER = "X-MES-Priority"


def priority(wire: dict[str, Any], header: str | None) -> str:
    """Pick the lane: the X-MES-Priority header, else service_tier "flex" means batch."""
    if header is not None:
        if header not in ("interactive", "batch"):
            raise InvalidRequest(f"{PRIORITY_HEADER} must be 'interactive' or 'batch'",
                                 {"param": None})
        return header
    return "batch" if wire.get("service_tier") == "flex" else "interactive"


def job_metadata(wire: dict[str, Any]) -> dict[str, Any]:
    """Return the job's metadata: the request's, plus user and safety_identifier."""
    metadata = dict(wire.get("metadata") or {})
    for name in ("user", "safety_identifier"):
        if wire.get(name) is not None:
            if name in metadata:
                raise InvalidRequest(f"metadata must not hold '{name}' when '{name}' is given",
                                     {"param": "metadata"})
            metadata[name] = wire[name]
    if len(json.dumps(metadata)) > METADATA_MAX_BYTES:
        raise InvalidRequest(f"metadata (with user) must be at most {METADATA_MAX_BYTES} bytes "
                             "of JSON", {"param": "metadata"})
    return metadata


def job_options(wire: dict[str, Any]) -> dict[str, Any]:
    """Return the job's sampling options; max_completion_tokens wins over max_tokens."""
    options = {name: wire[name] for name in SAME_OPTIONS if wire.get(name) is not None}
    max_tokens = wire.get("max_completion_tokens") or wire.get("max_tokens")
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if wire.get("stop"):
        options["stop"] = list(wire["stop"])
    return options


def job_format(response_format: dict[str, Any] | None) -> Any:
    """Return MES's format for a response_format: "json", a JSON Schema, or None for text."""
    if not response_format or response_format["type"] == "text":
        return None
    if response_format["type"] == "json_object":
        return "json"
    return response_format["json_schema"].get("schema") or "json"


def _common(wire: dict[str, Any], priority_header: str | None) -> dict[str, Any]:
    body = {"model": wire["model"], "priority": priority(wire, priority_header),
            "metadata": job_metadata(wire)}
    options = job_options(wire)
    if options:
        body["options"] = options
    return body


def message_text(content: str | list[dict[str, str]]) -> str:
    """Join a message's text parts (a string stays as it is)."""
    return content if isinstance(content, str) else "\n".join(part["text"] for part in content)


def chat_request(wire: dict[str, Any], priority_header: str | None = None) -> dict[str, Any]:
    """Translate a chat completions request into an MES job request."""
    body = _common(wire, priority_header)
    body["messages"] = [{"role": "system" if m["role"] == "developer" else m["role"],
                         "content": message_text(m["content"])} for m in wire["messages"]]
    fmt = job_format(wire.get("response_format"))
    if fmt is not None:
        body["format"] = fmt
    return body


def completion_request(wire: dict[str, Any], priority_header: str | None = None
                       ) -> dict[str, Any]:
    """Translate a completions request into an MES job request."""
    return {**_common(wire, priority_header), "prompt": wire["prompt"][0]}


def embedding_request(wire: dict[str, Any], priority_header: str | None = None
                      ) -> dict[str, Any]:
    """Translate an embeddings request into an MES embed job request."""
    body = {"model": wire["model"], "input": list(wire["input"]),
            "priority": priority(wire, priority_header), "metadata": job_metadata(wire)}
    if wire.get("dimensions") is not None:
        body["dimensions"] = wire["dimensions"]
    return body


def finish_reason(result: dict[str, Any]) -> str:
    """Map MES's done_reason: "length" stays, anything else is "stop"."""
    return "length" if result.get("done_reason") == "length" else "stop"


def usage(result: dict[str, Any]) -> dict[str, int]:
    """Return OpenAI's usage from a job result."""
    counts = result.get("usage") or {}
    prompt, completion = counts.get("prompt_tokens") or 0, counts.get("completion_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def content_text(result: dict[str, Any]) -> str:
    """Return the answer's text; for structured output, the validated JSON as text."""
    if "json" in result:
        return json.dumps(result["json"], ensure_ascii=False)
    return result.get("text") or ""


def service_tier(job: Job) -> str:
    """Name the job's lane as OpenAI's service_tier."""
    return "flex" if job.priority == "batch" else "default"


def chat_completion(job: Job) -> dict[str, Any]:
    """Translate a succeeded job into a chat.completion."""
    result = job.result or {}
    return {"id": job.id, "object": "chat.completion", "created": int(job.created_at),
            "model": job.model,
            "choices": [{"index": 0, "message": {"role": "assistant",
                                                 "content": content_text(result),
                                                 "refusal": None},
                         "logprobs": None, "finish_reason": finish_reason(result)}],
            "usage": usage(result), "service_tier": service_tier(job)}


def text_completion(job: Job) -> dict[str, Any]:
    """Translate a succeeded job into a text_completion."""
    result = job.result or {}
    return {"id": job.id, "object": "text_completion", "created": int(job.created_at),
            "model": job.model,
            "choices": [{"text": content_text(result), "index": 0, "logprobs": None,
                         "finish_reason": finish_reason(result)}],
            "usage": usage(result)}


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """Return a vector as floats, or as base64 of little-endian float32s."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embedding_list(job: Job, encoding_format: str = "float") -> dict[str, Any]:
    """Translate a succeeded embed job into OpenAI's embedding list."""
    result = job.result or {}
    prompt = (result.get("usage") or {}).get("prompt_tokens") or 0
    return {"object": "list",
            "data": [{"object": "embedding", "index": index,
                      "embedding": encode_vector(vector, encoding_format)}
                     for index, vector in enumerate(result.get("embeddings") or [])],
            "model": job.model, "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


def model_entry(spec: ModelSpec) -> dict[str, Any]:
    """Translate a registry model into OpenAI's model object."""
    return {"id": spec.id, "object": "model", "created": 0, "owned_by": spec.family.name}


def model_list(specs: list[ModelSpec]) -> dict[str, Any]:
    """Translate the registry into OpenAI's model list."""
    return {"object": "list", "data": [model_entry(spec) for spec in specs]}


def _classes(base: type[MESError]):
    yield base
    for sub in base.__subclasses__():
        yield from _classes(sub)


# MES's error codes and their statuses, from the one hierarchy in mes/errors.py.
STATUS_OF_CODE = {cls.code: cls.http_status for cls in reversed(list(_classes(MESError)))}
# Where the door answers differently: OpenAI's SDK knows 404 for a model, 400 for a size.
DOOR_STATUS = {"unknown_model": 404, "model_not_found": 404, "payload_too_large": 400,
               "unsupported_media_type": 400}
DOOR_CODE = {"unauthorized": "invalid_api_key", "unknown_model": "model_not_found",
             "rate_limited": "rate_limit_exceeded"}


def wire_error(status: int, code: str | None, message: str,
               param: str | None = None) -> tuple[int, dict[str, Any]]:
    """Return the door's status and OpenAI's error body for an MES error code."""
    status = DOOR_STATUS.get(code or "", status)
    kind = ("requests" if status == 429 else "server_error" if status >= 500
            else "invalid_request_error")
    return status, {"error": {"message": message, "type": kind, "param": param,
                              "code": DOOR_CODE.get(code or "", code)}}


def job_error(job: Job, waited_s: float | None = None) -> tuple[int, dict[str, Any]]:
    """Return the status and error body for a job that did not succeed (504 if not final)."""
    if not job.status.is_final:
        return wire_error(504, "wait_timeout", f"job {job.id} is still {job.status.value} "
                          f"after {waited_s or 0:.0f} s; it goes on: read it with "
                          f"GET /v1/jobs/{job.id}")
    error = job.error or {}
    code = error.get("code") or ("cancelled" if job.status is JobStatus.CANCELLED
                                 else job.status.value)
    message = f"job {job.id} {job.status.value}: {error.get('message') or code}"
    return wire_error(STATUS_OF_CODE.get(code, 500), code, message)
