"""Turn a job into one backend call, and the backend's answer into our result."""

from __future__ import annotations

from typing import Any, Callable

from mes import structured
from mes.backends.ollama import Completion, OllamaClient
from mes.clock import SystemClock
from mes.errors import JobTimeout, OutputInvalid
from mes.jobs import Job, JobKind
from mes.registry import ModelSpec

NS_PER_MS = 1_000_000


def execute(job: Job, spec: ModelSpec, backend: OllamaClient, clock: SystemClock,
             should_stop: Callable[[], bool]) -> dict:
    """Call the backend for the job's kind and shape the result."""
    if job.kind is JobKind.LOAD:
        return shape_result(backend.load(spec.id, spec.keep_alive, options=dict(spec.runner_options)))
    if job.kind is JobKind.UNLOAD:
        return shape_result(backend.unload(spec.id))
    request = job.request
    fmt = request.get("format")
    system = request.get("system")
    native_format = fmt
    if fmt is not None and spec.json_mode == "prompt":
        # The model has no reliable native JSON mode: ask in the system prompt instead.
        native_format = None
        system = "\n\n".join(filter(None, [system, structured.prompt_instructions(fmt)]))
    remaining = job.deadline_at - clock.now()
    if remaining <= 0:
        raise JobTimeout("the job ran past its deadline")
    common = dict(options=backend_options(spec, request.get("options") or {}),
                  format=native_format, keep_alive=spec.keep_alive,
                  read_timeout_s=min(backend.read_timeout_s, remaining),
                  should_stop=should_stop,
                  request_id=job.request_id)
    if request.get("messages"):
        messages = list(request["messages"])
        if system:
            messages.insert(0, {"role": "system", "content": system})
        completion = backend.chat(spec.id, messages, **common)
    else:
        completion = backend.generate(spec.id, request.get("prompt", ""), system=system,
                                      **common)
    result = shape_result(completion)
    if fmt is not None:
        checked = structured.check_output(completion.text, fmt)
        result.update(json=checked.value, schema_valid=checked.valid, format_attempts=1)
        if not checked.valid:
            raise OutputInvalid("the model's output does not match the requested format",
                                {"errors": list(checked.errors), "text": completion.text})
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

