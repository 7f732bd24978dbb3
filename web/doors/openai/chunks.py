"""Translate a job's event stream into OpenAI's stream: chunks as SSE `data:` lines, then [DONE].

What openai-python's Stream parses (src/openai/_streaming.py): each SSE event's data as JSON,
except `[DONE]`, which ends the stream; any data holding an "error" key raises APIError in
the middle of the stream. Comment lines are skipped, which makes them our heartbeats; a bare
`retry:` or `id:` field would be parsed as an empty JSON document, so none is sent.

MES's `restart` event (a retry after a failure, or a format repair) has no OpenAI
counterpart, and text already sent cannot be taken back. So:
- a request with a response_format is buffered: the validated JSON comes in one chunk at
  the end, after any repairs;
- a restart before any text was sent changes nothing and is passed over;
- a restart after text was sent ends the stream with an error (code `stream_restarted`);
  the caller then closes the event stream, which cancels the job.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator

from mes.jobs import Job, JobStatus
from mes.store.events import Event
from web import sse
from web.doors.openai.translate import (content_text, finish_reason, job_error, usage,
                                        wire_error)

DONE = "data: [DONE]\n\n"


def data(body: dict[str, Any]) -> str:
    """Return one SSE event holding a JSON body (json.dumps escapes newlines: one line)."""
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"


class Chunks:
    """Build the chunks of one streamed answer: chat.completion.chunk or text_completion."""

    def __init__(self, job: Job, *, chat: bool, include_usage: bool):
        self.chat = chat
        self.include_usage = include_usage
        self.head = {"id": job.id, "object": "chat.completion.chunk" if chat else
                     "text_completion", "created": int(job.created_at), "model": job.model}

    def _chunk(self, choices: list[dict[str, Any]], usage_counts: Any = None) -> str:
        body = {**self.head, "choices": choices}
        if self.include_usage:
            body["usage"] = usage_counts  # null on every chunk but the last, as OpenAI sends
        return data(body)

    def _choice(self, text: str | None, finish: str | None, role: bool = False) -> dict:
        if not self.chat:
            return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def opening(self) -> list[str]:
        """Return what a chat stream opens with: the assistant's role and empty content."""
        return [self._chunk([self._choice("", None, role=True)])] if self.chat else []

    def text(self, text: str) -> str:
        """Return a chunk carrying the next piece of text."""
        return self._chunk([self._choice(text, None)])

    def finish(self, reason: str) -> str:
        """Return the chunk carrying the finish_reason."""
        return self._chunk([self._choice(None if self.chat else "", reason)])

    def usage(self, counts: dict[str, int]) -> str:
        """Return the last chunk of a stream with include_usage: no choices, the counts."""
        return self._chunk([], counts)


def restart_error(job: Job) -> dict[str, Any]:
    """Return the error that ends a stream whose job started over after sending text."""
    return wire_error(500, "stream_restarted", f"job {job.id} started over (a retry after a "
                      "failure) after part of its text was sent, which cannot be taken back; "
                      "the stream ends here and the job is cancelled: send the request again")[1]


def stream_chunks(events: Iterable[Event | None], job: Job, final: Callable[[], Job], *,
                  chat: bool, include_usage: bool = False) -> Iterator[str]:
    """Yield the SSE text of OpenAI's stream for a job's events (None: a heartbeat is due).

    `final` returns the job as stored once its `done` event has come.
    """
    chunks = Chunks(job, chat=chat, include_usage=include_usage)
    buffered = job.request.get("format") is not None
    sent_text = opened = False
    for event in events:
        if not opened:
            # Only once the event stream has started: a client gone before then still
            # cancels its job when the stream is closed.
            opened = True
            yield from chunks.opening()
        if event is None:
            yield sse.comment("ping")
        elif event.type == "token" and not buffered and event.data.get("text"):
            sent_text = True
            yield chunks.text(event.data["text"])
        elif event.type == "restart" and sent_text and not buffered:
            yield data(restart_error(job))
            return
        elif event.type == "done":
            done = final()
            if done.status is not JobStatus.SUCCEEDED:
                yield data(job_error(done)[1])
                return
            result = done.result or {}
            if buffered:
                yield chunks.text(content_text(result))
            yield chunks.finish(finish_reason(result))
            if include_usage:
                yield chunks.usage(usage(result))
            yield DONE
            return
