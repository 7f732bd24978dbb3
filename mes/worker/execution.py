"""Turn a job into one backend call, and the backend's answer into our result."""

from __future__ import annotations

from typing import Any, Callable

from mes.structured import repair
from mes.backends.ollama import Completion, OllamaClient
from mes.clock import SystemClock
from mes.errors import JobTimeout
from mes.jobs import Job, JobKind
from mes.registry import ModelSpec
from mes.worker.pull import pull_model

NS_PER_MS = 1_000_000


def call_backend(job: Job, spec: ModelSpec, backend: OllamaClient, clock: SystemClock,
                 should_stop: Callable[[], bool], on_text: Callable[[str], None] | None = None,
                 on_restart: Callable[[str], None] | None = None) -> dict:
    """Call the backend for the job's kind and shape the result.

    `on_text` sees each piece of generated text as it comes; `on_restart` hears that a new
    try (a format repair) starts, so the text streamed so far is to be dropped.
    """
    if job.kind is JobKind.LOAD:
        return shape_result(backend.load(spec.id, spec.keep_alive, options=dict(spec.runner_options)))
    if job.kind is JobKind.UNLOAD:
        return shape_result(backend.unload(spec.id))
    if job.kind is JobKind.PULL:
        return pull_model(job, spec, backend, clock, should_stop)
    if job.kind is JobKind.EMBED:
        return embed_result(backend.embed(
            spec.id, list(job.request.get("input") or []), options=dict(spec.runner_options),
            keep_alive=spec.keep_alive, truncate=job.request.get("truncate", True),
            dimensions=job.request.get("dimensions")))
    request = job.request
    remaining = job.deadline_at - clock.now()
    if remaining <= 0:
        raise JobTimeout("the job ran past its deadline")
    common = dict(options=backend_options(spec, request.get("options") or {}),
                  keep_alive=spec.keep_alive,
                  read_timeout_s=min(backend.read_timeout_s, remaining),
                  should_stop=should_stop, request_id=job.request_id, on_text=on_text)
    if request.get("format") is None:
        if request.get("messages"):
            completion = backend.chat(spec.id, repair.conversation(request), **common)
        else:
            completion = backend.generate(spec.id, request.get("prompt", ""),
                                          system=request.get("system"), **common)
        return shape_result(completion)

    tries = 0

    def call(messages, fmt):
        nonlocal tries
        tries += 1
        if tries > 1 and on_restart is not None:
            on_restart("format_repair")
        # Each attempt gets what is left of the deadline, not a fresh timeout.
        left = job.deadline_at - clock.now()
        if left <= 0:
            raise JobTimeout("the job ran past its deadline while repairing its output")
        return backend.chat(spec.id, messages, format=fmt,
                            **{**common, "read_timeout_s": min(backend.read_timeout_s, left)})

    final, value, attempts, completions = repair.generate_structured(
        request, spec.json_mode, spec.format_max_attempts, call)
    result = shape_result(repair.summed(completions, final))
    result.update(json=value, schema_valid=True, format_attempts=len(attempts))
    return result


def backend_options(spec: ModelSpec, requested: dict[str, Any]) -> dict[str, Any]:
    """Merge model defaults, the job's sampling options and the model's fixed runner options."""
    options = dict(spec.options)
    for key, value in requested.items():
        if key == "max_tokens":
            options["num_predict"] = min(int(value), spec.max_tokens)
        else:
            options[key] = value
    options.setdefault("num_predict", spec.max_tokens)
    # Runner options last: a job must never make the backend reload the model.
    options.update(spec.runner_options)
    return options


def embed_result(answer: dict[str, Any]) -> dict[str, Any]:
    """Shape an /api/embed answer as a job result: the vectors, their usage and timings."""
    return {
        "embeddings": answer.get("embeddings") or [],
        "done_reason": "stop",
        "usage": {"prompt_tokens": int(answer.get("prompt_eval_count") or 0),
                  "completion_tokens": 0},
        "timings": {"queue_ms": 0, "load_ms": round((answer.get("load_duration") or 0) / NS_PER_MS),
                    "prompt_ms": 0, "generate_ms": 0,
                    "total_ms": round((answer.get("total_duration") or 0) / NS_PER_MS)},
    }


def shape_result(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "done_reason": completion.done_reason,
        "usage": {"prompt_tokens": completion.prompt_eval_count,
                  "completion_tokens": completion.eval_count},
        "timings": {"queue_ms": 0,
                    "load_ms": round(completion.load_duration / NS_PER_MS),
                    "prompt_ms": round(completion.prompt_eval_duration / NS_PER_MS),
                    "generate_ms": round(completion.eval_duration / NS_PER_MS),
                    "total_ms": round(completion.total_duration / NS_PER_MS)},
    }

