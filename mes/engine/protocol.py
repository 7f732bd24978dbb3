"""Ollama wire shapes: error texts, durations, timestamps and response bodies.

Field names and orders follow ollama/ollama docs/api.md and server/routes.go.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from mes.engine.config import ModelSpec

FOREVER = math.inf

ERR_MODEL_REQUIRED = "model is required"
ERR_MISSING_BODY = "missing request body"
# Two spaces after the period, exactly as Ollama's scheduler words it.
ERR_SERVER_BUSY = "server busy, please try again.  maximum pending requests exceeded"
ERR_SIMULATED = "simulated failure"
ERR_SIMULATED_MID_STREAM = "simulated mid-stream failure"
ERR_PULL_NOT_FOUND = "pull model manifest: file does not exist"

NDJSON = "application/x-ndjson"
JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
# Go's time.Time caps out near 292 years past now; Ollama shows that for "forever".
_FOREVER_DELTA = timedelta(days=292 * 365)


def err_model_not_found(name: str) -> str:
    """Return Ollama's 404 text for a model that is not in the catalogue."""
    return f'model "{name}" not found, try pulling it first'


def err_invalid_format(fmt: Any) -> str:
    """Return Ollama's text for a `format` that is neither "json" nor a schema."""
    return f'invalid format: "{fmt}"; expected "json" or a valid JSON Schema'


def parse_duration(text: str) -> float:
    """Parse a Go duration string ("5m", "1h30m", "-1s", "250ms") or bare seconds into seconds."""
    raw = text.strip()
    sign = -1.0 if raw.startswith("-") else 1.0
    body = raw.lstrip("+-")
    try:
        return sign * float(body)  # OLLAMA_KEEP_ALIVE also accepts a plain number of seconds
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def parse_keep_alive(value: Any, default: float) -> float:
    """Turn a keep_alive value (None, seconds, or duration string) into seconds; negative = forever."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    return FOREVER if seconds < 0 else seconds


def rfc3339(epoch: float) -> str:
    """Format a Unix time like Go's time.Time JSON in UTC ("2024-06-04T14:38:31.837530Z")."""
    stamp = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_rfc3339() -> str:
    """Return the current time as an RFC 3339 string."""
    return rfc3339(time.time())


def expires_rfc3339(expires_epoch: float) -> str:
    """Format an expiry time, mapping "never" to a date ~292 years ahead as Ollama does."""
    if math.isinf(expires_epoch):
        return (datetime.now(timezone.utc) + _FOREVER_DELTA).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return rfc3339(expires_epoch)


def details(spec: ModelSpec) -> dict[str, Any]:
    """Return the `details` object of tags/ps/show entries."""
    return {
        "parent_model": "",
        "format": "gguf",
        "family": spec.family,
        "families": [spec.family],
        "parameter_size": spec.parameter_size,
        "quantization_level": spec.quantization_level,
    }


def tag_entry(spec: ModelSpec, modified_at: float) -> dict[str, Any]:
    """Return one entry of GET /api/tags."""
    return {
        "name": spec.name,
        "model": spec.name,
        "modified_at": rfc3339(modified_at),
        "size": spec.size,
        "digest": spec.digest,
        "details": details(spec),
    }


def ps_entry(spec: ModelSpec, expires_epoch: float, context_length: int = 2048) -> dict[str, Any]:
    """Return one entry of GET /api/ps."""
    return {
        "name": spec.name,
        "model": spec.name,
        "size": spec.size,
        "digest": spec.digest,
        "details": details(spec),
        "expires_at": expires_rfc3339(expires_epoch),
        "size_vram": spec.size,
        "context_length": context_length,
    }


def show_body(spec: ModelSpec, modified_at: float, described: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the body of POST /api/show; DESCRIBED (template, license, model_info) comes from a model file."""
    if described:
        template = described.get("template", "")
        return {
            "license": described.get("license", ""),
            "modelfile": f'# Modelfile generated by "ollama show"\nFROM {spec.name}\nTEMPLATE """{template}"""\n',
            "parameters": "",
            "template": template,
            "details": details(spec),
            "model_info": dict(described.get("model_info", {})),
            "capabilities": ["completion"],
            "modified_at": rfc3339(modified_at),
        }
    return {
        "license": "",
        "modelfile": f'# Modelfile generated by "ollama show"\nFROM {spec.name}\nTEMPLATE "{{{{ .Prompt }}}}"\n',
        "parameters": 'stop                           "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": details(spec),
        "model_info": {
            "general.architecture": spec.family,
            "general.basename": spec.name.split(":")[0],
            "general.file_type": 2,
            "general.quantization_version": 2,
            f"{spec.family}.context_length": 4096,
        },
        "capabilities": ["completion"],
        "modified_at": rfc3339(modified_at),
    }


@dataclass
class Stats:
    """Hold the metrics of one finished generation (durations in nanoseconds)."""

    done_reason: str
    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int

    def fields(self) -> dict[str, Any]:
        """Return the final-object fields in Ollama's order."""
        return {
            "total_duration": self.total_duration,
            "load_duration": self.load_duration,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration,
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration,
        }


def _reply(kind: str, model: str, text: str, done: bool) -> dict[str, Any]:
    # generate carries text in "response", chat in an assistant "message"; keys in Ollama's order.
    body: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if kind == "chat":
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    body["done"] = done
    return body


def chunk(kind: str, model: str, text: str) -> dict[str, Any]:
    """Return one streamed, not-done object for /api/generate or /api/chat."""
    return _reply(kind, model, text, False)


def final(kind: str, model: str, stats: Stats, text: str = "", context: list[int] | None = None) -> dict[str, Any]:
    """Return the done object; TEXT is the whole reply when not streaming, else empty."""
    body = _reply(kind, model, text, True)
    body["done_reason"] = stats.done_reason
    if kind == "generate" and context is not None:
        body["context"] = context
    body.update(stats.fields())
    return body


def lifecycle_reply(kind: str, model: str, reason: str) -> dict[str, Any]:
    """Return the single object answering a load ("load") or unload ("unload") request."""
    body: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if kind == "chat":
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    body["done"] = True
    body["done_reason"] = reason
    return body


def context_tokens(text: str) -> list[int]:
    """Return stand-in token ids for TEXT (the deprecated `context` field)."""
    return [int.from_bytes(hashlib.blake2s(w.encode(), digest_size=4).digest(), "big") % 128_000 for w in text.split()]


def progress(status: str, digest: str | None = None, total: int | None = None,
             completed: int | None = None) -> dict[str, Any]:
    """Return one /api/pull progress object; empty fields are left out, as Go's omitempty does."""
    body: dict[str, Any] = {"status": status}
    if digest:
        body["digest"] = digest
    if total:
        body["total"] = total
    if completed:
        body["completed"] = completed
    return body


def pulling(digest: str) -> str:
    """Return the status of a layer download ("pulling 8eeb52dfb3bb")."""
    return f"pulling {digest.removeprefix('sha256:')[:12]}"


def pull_epilogue() -> list[dict[str, Any]]:
    """Return the progress objects that follow the downloads, ending with success."""
    return [progress("verifying sha256 digest"), progress("writing manifest"),
            progress("removing any unused layers"), progress("success")]


def embed_reply(model: str, vectors: list[list[float]], total_ns: int, load_ns: int,
                prompt_eval_count: int) -> dict[str, Any]:
    """Return the body of POST /api/embed."""
    body: dict[str, Any] = {"model": model, "embeddings": vectors}
    if vectors:
        body.update(total_duration=total_ns, load_duration=load_ns, prompt_eval_count=prompt_eval_count)
    return body
