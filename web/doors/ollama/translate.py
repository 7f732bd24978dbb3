"""Translate between Ollama's wire format and MES jobs: plain functions, no Flask.

Requests become job request bodies (the ones POST /v1/jobs takes); a job, or a job's events,
become Ollama's answers: NDJSON chunks `{"model", "created_at", "response" | "message",
"done": false}` and a final object with `done: true`, `done_reason` and the statistics, in
nanoseconds where MES keeps milliseconds.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from mes.errors import UnknownModel
from mes.jobs import Job, JobKind
from mes.registry import ModelRegistry
from web.doors.ollama.protocol import UNKNOWN_FIELDS

NS_PER_MS = 1_000_000
# Ollama's options that MES's job options take, and the name MES gives each.
OPTION_NAMES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                "seed": "seed", "stop": "stop", "num_predict": "max_tokens"}
# Request fields MES decides itself: the model's runner and residency are fixed per model.
DECIDED_BY_MES = ("keep_alive", "truncate", "shift")
_ZERO = re.compile(r"^[+-]?(0+(\.0*)?|\.0+)(ns|us|µs|ms|s|m|h)?$")
# What a name must look like to be listed in X-MES-Ignored (a header is Latin-1, and short).
_HEADER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HEADER_MAX_CHARS = 1024


def created_at(now: float) -> str:
    """Format epoch seconds as Ollama does: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resolve_model(name: str, registry: ModelRegistry) -> str:
    """Return the registry id a name means: "smollm2" is "smollm2:latest", as in Ollama."""
    if name in registry:
        return name
    if ":" not in name and f"{name}:latest" in registry:
        return f"{name}:latest"
    raise UnknownModel(f"model '{name}' not found", {"model": name})


def keep_alive_is_zero(value: Any) -> bool:
    """Tell whether a keep_alive (seconds, or a duration such as "0s") means "unload now"."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == 0
    return isinstance(value, str) and bool(value.strip()) and bool(_ZERO.match(value.strip()))


def operation(endpoint: str, wire: dict[str, Any]) -> JobKind | None:
    """Return LOAD or UNLOAD for a request with nothing to generate, else None."""
    empty = not wire.get("prompt") if endpoint == "generate" else not wire.get("messages")
    if not empty:
        return None
    return JobKind.UNLOAD if keep_alive_is_zero(wire.get("keep_alive")) else JobKind.LOAD


def job_options(options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Map Ollama options to MES job options; return them and the names that were ignored.

    Runner options (num_ctx, num_gpu, ...) are fixed per model, so a request never makes the
    backend reload it; sampling options that MES's jobs do not take are ignored too.
    """
    mapped, ignored = {}, []
    for name, value in options.items():
        if name == "stop" and isinstance(value, str):
            value = [value]
        if name == "num_predict" and isinstance(value, int) and value <= 0:
            ignored.append(name)  # -1 (no limit) and -2 (fill the context): the model's cap
        elif name in OPTION_NAMES and value is not None:
            mapped[OPTION_NAMES[name]] = value
        else:
            ignored.append(name)
    return mapped, ignored


def ignored_fields(wire: dict[str, Any], *, used: tuple[str, ...] = ()) -> list[str]:
    """Return the request fields that MES decides itself or does not know, in a stable order."""
    decided = [name for name in DECIDED_BY_MES if name in wire and name not in used]
    return decided + [name for name in wire.get(UNKNOWN_FIELDS, ()) if name not in decided]


def job_body(endpoint: str, wire: dict[str, Any], model: str) -> tuple[dict[str, Any], list[str]]:
    """Return the MES job request for a generate or chat request, and what was ignored."""
    body: dict[str, Any] = {"model": model}
    if endpoint == "generate":
        body["prompt"] = wire["prompt"]
        if wire.get("system"):
            body["system"] = wire["system"]
    else:
        body["messages"] = [{"role": m["role"], "content": m.get("content") or ""}
                            for m in wire["messages"]]
    options, ignored = job_options(wire.get("options") or {})
    if options:
        body["options"] = options
    if wire.get("format"):
        body["format"] = wire["format"]
    return body, ignored + ignored_fields(wire)


def embed_body(wire: dict[str, Any], model: str) -> tuple[dict[str, Any], list[str]]:
    """Return the MES embed job request for an /api/embed request, and what was ignored."""
    body: dict[str, Any] = {"model": model, "input": list(wire["input"])}
    for name in ("truncate", "dimensions"):
        if name in wire:
            body[name] = wire[name]
    ignored = list(wire.get("options") or {})  # an embedding's runner is the model's own
    return body, ignored + ignored_fields(wire, used=("truncate",))


def header_value(ignored: list[str]) -> str:
    """Return the X-MES-Ignored header: each ignored name once, in the order first met.

    A name that is not a plain word (letters, digits, "_", "." and "-") is left out, and the
    list stops at about a kilobyte, ending with "...".
    """
    names = [name for name in dict.fromkeys(ignored) if _HEADER_NAME.match(name)]
    value = ",".join(names)
    if len(value) <= HEADER_MAX_CHARS:
        return value
    return value[:HEADER_MAX_CHARS].rsplit(",", 1)[0] + ",..."


def _answer(endpoint: str, model: str, text: str, now: float) -> dict[str, Any]:
    if endpoint == "generate":
        return {"model": model, "created_at": created_at(now), "response": text}
    return {"model": model, "created_at": created_at(now),
            "message": {"role": "assistant", "content": text}}


def chunk(endpoint: str, model: str, text: str, now: float) -> dict[str, Any]:
    """Return one NDJSON chunk of streamed text."""
    return {**_answer(endpoint, model, text, now), "done": False}


def statistics(result: dict[str, Any]) -> dict[str, int]:
    """Return Ollama's final statistics from a job result (ms to ns; total counts queueing)."""
    timings, usage = result.get("timings") or {}, result.get("usage") or {}

    def ns(name: str) -> int:
        return int(timings.get(name) or 0) * NS_PER_MS

    return {"total_duration": ns("queue_ms") + ns("total_ms"), "load_duration": ns("load_ms"),
            "prompt_eval_count": int(usage.get("prompt_tokens") or 0),
            "prompt_eval_duration": ns("prompt_ms"),
            "eval_count": int(usage.get("completion_tokens") or 0),
            "eval_duration": ns("generate_ms")}


def answer_text(job: Job) -> str:
    """Return a succeeded job's text; with `format`, JSON that parses (the checked value)."""
    result = job.result or {}
    text = result.get("text") or ""
    if "json" not in result:
        return text
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(result["json"], ensure_ascii=False)
    return text


def final(endpoint: str, model: str, job: Job, now: float, *, text: str = "") -> dict[str, Any]:
    """Return the last object (`done: true` with statistics); `text` is "" once streamed."""
    done = {"done": True, "done_reason": (job.result or {}).get("done_reason") or "stop"}
    if endpoint == "chat":
        done = {"done_reason": done["done_reason"], "done": True}  # Ollama's field order
    return {**_answer(endpoint, model, text, now), **done, **statistics(job.result or {})}


def operation_answer(endpoint: str, model: str, kind: JobKind, now: float) -> dict[str, Any]:
    """Return Ollama's answer to a load or unload: done, with done_reason "load" or "unload"."""
    reason = "unload" if kind is JobKind.UNLOAD else "load"
    if endpoint == "chat":
        return {**_answer(endpoint, model, "", now), "done_reason": reason, "done": True}
    return {**_answer(endpoint, model, "", now), "done": True, "done_reason": reason}


def embed_answer(model: str, job: Job) -> dict[str, Any]:
    """Return the body of an /api/embed answer from a succeeded embed job."""
    result = job.result or {}
    stats = statistics(result)
    return {"model": model, "embeddings": result.get("embeddings") or [],
            "total_duration": stats["total_duration"], "load_duration": stats["load_duration"],
            "prompt_eval_count": stats["prompt_eval_count"]}


class StreamTranslator:
    """Turn a job's events into NDJSON chunks, one event at a time.

    NDJSON cannot take text back, so a `restart` after text was sent (a retried attempt)
    ends the stream with an in-band `{"error": ...}` line, which Ollama's clients raise.
    With `buffered` (a `format` request) nothing is sent until the checked answer is final,
    so format repairs never show.
    """

    def __init__(self, endpoint: str, model: str, *, buffered: bool):
        self.endpoint = endpoint
        self.model = model
        self.buffered = buffered
        self.sent_text = False
        self.ended = False

    def feed(self, event_type: str, data: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """Return the chunks one event becomes (often none)."""
        if self.buffered or self.ended:
            return []
        if event_type == "token" and data.get("text"):
            self.sent_text = True
            return [chunk(self.endpoint, self.model, data["text"], now)]
        if event_type == "restart" and self.sent_text:
            self.ended = True
            why = data.get("reason") or f"attempt {data.get('attempt')}"
            return [{"error": f"the job restarted ({why}) after part of its answer was sent; "
                              "the text so far is void, so this stream ends here"}]
        return []

    def finish(self, job: Job, now: float, failure: str | None = None) -> list[dict[str, Any]]:
        """Return the last chunks for a final job: its statistics, or an error line."""
        self.ended = True
        if failure is not None:
            return [{"error": failure}]
        text = answer_text(job)
        head = [chunk(self.endpoint, self.model, text, now)] if self.buffered and text else []
        return head + [final(self.endpoint, self.model, job, now)]
