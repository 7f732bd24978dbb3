"""Get output that matches the requested format: native JSON mode, prompt fallback, repair.

Attempt 1 uses the model's json_mode: `native` sends the schema as Ollama's `format` (a
grammar on llama.cpp), `prompt` does not; both put the schema and instructions in the system
prompt. After a failed native attempt (invalid output, or
text that is not JSON at all, meaning the backend ignored `format`, ollama#17183) MES
falls back to prompt mode. Every retry shows the model its previous answer and the
validation errors. Usage and timings add up over all attempts; nothing is thrown away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from mes.structured import formats as structured
from mes.backends.ollama import Completion
from mes.errors import OutputInvalid

Call = Callable[[list[dict[str, str]], Any], Completion]


@dataclass
class Attempt:
    """Record one try: how JSON was asked for, what came back, and what was wrong."""

    mode: str
    text: str
    errors: list[str] = field(default_factory=list)


def conversation(request: dict[str, Any]) -> list[dict[str, str]]:
    """Return the job's input as chat messages (a prompt becomes one user message)."""
    messages = [dict(m) for m in request.get("messages") or []]
    if not messages:
        messages = [{"role": "user", "content": request.get("prompt", "")}]
    if request.get("system"):
        messages.insert(0, {"role": "system", "content": request["system"]})
    return messages


def with_instructions(messages: list[dict[str, str]], fmt: Any) -> list[dict[str, str]]:
    """Put the JSON instructions (and schema) in the system message, for prompt mode."""
    instructions = structured.prompt_instructions(fmt)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + instructions},
                *messages[1:]]
    return [{"role": "system", "content": instructions}, *messages]


def repair_message(errors: list[str]) -> dict[str, str]:
    """Ask the model to fix its last answer, quoting what was wrong."""
    listed = "\n".join(f"- {error}" for error in errors[:10])
    return {"role": "user", "content": "Your answer did not match the required JSON format:\n"
            f"{listed}\nReply again with only the corrected JSON document."}


def generate_structured(request: dict[str, Any], json_mode: str, max_attempts: int,
                        call: Call) -> tuple[Completion, Any, list[Attempt], list[Completion]]:
    """Run attempts until the output validates; raise OutputInvalid after the last one.

    `call(messages, format)` runs one backend chat and returns its completion.
    Returns the valid completion, its parsed JSON, the attempts and every completion.
    """
    fmt = request["format"]
    base = conversation(request)
    mode = json_mode
    history: list[dict[str, str]] = []
    attempts: list[Attempt] = []
    completions: list[Completion] = []
    for _ in range(max_attempts):
        # Native mode sends the schema as `format` and still says so in words: Ollama warns
        # that a model not told to answer in JSON may emit whitespace until max_tokens.
        messages = with_instructions(base, fmt) + history
        completion = call(messages, fmt if mode == "native" else None)
        completions.append(completion)
        checked = structured.check_output(completion.text, fmt)
        attempt = Attempt(mode, completion.text, list(checked.errors))
        attempts.append(attempt)
        if checked.valid:
            return completion, checked.value, attempts, completions
        if mode == "native" and not checked.is_json:
            attempt.errors.append("the backend ignored format: the output is not JSON")
        history += [{"role": "assistant", "content": completion.text},
                    repair_message(attempt.errors)]
        # A native attempt that failed will not do better the same way: ask in the prompt.
        mode = "prompt"
    last = attempts[-1]
    raise OutputInvalid(
        f"no output matched the requested format after {len(attempts)} attempts",
        {"errors": last.errors, "text": last.text, "format_attempts": len(attempts),
         "attempts": [attempt.__dict__ for attempt in attempts],
         "usage": total_usage(completions)})


def total_usage(completions: list[Completion]) -> dict[str, int]:
    """Add up token counts over attempts."""
    return {"prompt_tokens": sum(c.prompt_eval_count for c in completions),
            "completion_tokens": sum(c.eval_count for c in completions)}


def summed(completions: list[Completion], final: Completion) -> Completion:
    """Return the final completion with counts and durations added up over all attempts."""
    return Completion(
        text=final.text, done_reason=final.done_reason,
        prompt_eval_count=sum(c.prompt_eval_count for c in completions),
        eval_count=sum(c.eval_count for c in completions),
        total_duration=sum(c.total_duration for c in completions),
        load_duration=sum(c.load_duration for c in completions),
        prompt_eval_duration=sum(c.prompt_eval_duration for c in completions),
        eval_duration=sum(c.eval_duration for c in completions))
