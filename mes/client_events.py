"""Read a job's event stream (Server-Sent Events) for MESClient: typed events and reconnects.

Needs only `requests`, like the client. A dropped connection is resumed with Last-Event-ID,
so a reader sees every event once, in order, whatever the network does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import requests


@dataclass(frozen=True)
class StreamEvent:
    """Hold one event of a job's stream: its id, type and data."""

    id: str | None
    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusEvent(StreamEvent):
    """Say the job changed state (`data["status"]`, `attempt`, `position` while queued)."""

    @property
    def status(self) -> str:
        """Return the state the job is now in."""
        return self.data.get("status", "")


@dataclass(frozen=True)
class TokenEvent(StreamEvent):
    """Carry the next piece of generated text."""

    @property
    def text(self) -> str:
        """Return the piece of text."""
        return self.data.get("text", "")


@dataclass(frozen=True)
class RestartEvent(StreamEvent):
    """Say a new try starts over: drop the text received so far."""


@dataclass(frozen=True)
class DoneEvent(StreamEvent):
    """End the stream; `job` is the final job as GET /v1/jobs/{id} shows it."""

    @property
    def job(self) -> dict[str, Any]:
        """Return the final job."""
        return self.data


TYPES = {"status": StatusEvent, "token": TokenEvent, "restart": RestartEvent, "done": DoneEvent}


def parse_sse(lines: Iterable[str]) -> Iterator[StreamEvent]:
    """Turn SSE lines into events; comments (heartbeats) and retry fields are skipped."""
    event_id, kind, data = None, None, []
    for line in lines:
        if line == "":
            if kind is not None or data:
                payload = json.loads("\n".join(data)) if data else {}
                cls = TYPES.get(kind or "message", StreamEvent)
                yield cls(event_id, kind or "message", payload)
            event_id, kind, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)


def follow(open_first: Callable[[], requests.Response],
           reopen: Callable[[str, str | None], requests.Response],
           max_reconnects: int = 10) -> Iterator[StreamEvent]:
    """Yield a stream's events until `done`, reconnecting after the last id seen.

    `open_first` opens the stream; `reopen(job_id, last_id)` resumes it.
    """
    response = open_first()
    job_id = response.headers.get("X-MES-Job-ID")
    last_id: str | None = None
    reconnects = 0
    while True:
        try:
            with response:
                for event in parse_sse(response.iter_lines(decode_unicode=True)):
                    last_id = event.id or last_id
                    reconnects = 0
                    yield event
                    if isinstance(event, DoneEvent):
                        return
        except (requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError):
            if job_id is None:
                raise
        # The stream ended before done (a dropped connection, a restarted web server).
        reconnects += 1
        if job_id is None or reconnects > max_reconnects:
            raise requests.exceptions.ConnectionError(
                f"the event stream of {job_id or 'the job'} kept ending before done")
        response = reopen(job_id, last_id)
